"""The camera's own motion and noise, removed before any temporal cue.

- ``Aligner``: a tower mast sways (0.3–3 px at 1280×720); every frame is registered to the scene's
  background by phase correlation (``cv2.phaseCorrelate``, sub-pixel, robust to gain changes) and
  shifted back, so a textured edge does not "move" or "flicker" because the mast did.
- ``NoiseModel``: how much each pixel's illumination-free brightness change varies when nothing happens
  (sensor noise, JPEG blocking, leaves, residual sway on edges), as an exponentially weighted running
  variance with a time constant in seconds; a change is real when it exceeds k·σ of *that* pixel.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

COARSE = 24
"""Cell size (working pixels) of the illumination field removed from the change image."""


class Aligner:
    """Registers frames to a reference by phase correlation on a half-size copy."""

    def __init__(self, shape: tuple[int, int]) -> None:
        h, w = shape
        self.size = (max(16, w // 2), max(16, h // 2))
        self.window = cv2.createHanningWindow(self.size, cv2.CV_32F)

        self.reference: np.ndarray | None = None

    def set_reference(self, grey: np.ndarray) -> None:
        """The picture frames are registered to (the background, refreshed about once a second)."""
        self.reference = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)

    def shift(self, grey: np.ndarray) -> tuple[float, float, float]:
        """(dx, dy, response): ``grey`` is the reference moved by (dx, dy) working pixels."""
        b = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)
        (dx, dy), response = cv2.phaseCorrelate(self.reference, b, self.window)
        return 2 * dx, 2 * dy, response


def undo_shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` moved back by (dx, dy), edges replicated."""
    if abs(dx) < 0.05 and abs(dy) < 0.05:
        return image
    m = np.float32([[1, 0, -dx], [0, 1, -dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def log_brightness(grey: np.ndarray) -> np.ndarray:
    """log(1 + grey): a change of light multiplies brightness, so it adds a constant here."""
    return cv2.log(grey + 1.0)


def local_change(log_now: np.ndarray, log_bg: np.ndarray, clip: float = 0.6) -> np.ndarray:
    """Change against the background with the slowly varying light field (exposure steps, drifting
    cloud shadows) taken out: the difference minus its own coarse (COARSE-cell) smooth version."""
    d = log_now - log_bg
    h, w = d.shape
    small = cv2.resize(np.clip(d, -clip, clip), (max(1, w // COARSE), max(1, h // COARSE)),
                       interpolation=cv2.INTER_AREA)
    return d - cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def ema_alpha(dt_s: float, tau_s: float) -> float:
    """Weight of a new sample in an exponential average with time constant ``tau_s``, for any frame gap."""
    return 1.0 - math.exp(-max(dt_s, 0.0) / tau_s)


class NoiseModel:
    """Per-pixel running variance of the change image, plus what a residual registration error of
    ``slack`` pixels makes on that pixel's edge (ε·|∇ log I|): a high-contrast field boundary shimmers
    after alignment where a flat field does not."""

    def __init__(self, shape: tuple[int, int], floor: float, slack: float = 0.35) -> None:
        self.floor, self.slack = floor, slack
        self.var = np.full(shape, 4 * floor * floor, np.float32)
        """Starts cautious (2× the floor) until the first seconds have taught it the scene."""
        self.edge = np.zeros(shape, np.float32)

    def set_edges(self, *backgrounds: np.ndarray) -> None:
        """Recompute the registration term from the background image(s) whose change is measured (cheap;
        done about once a second)."""
        edge = np.zeros_like(self.var)
        for bg in backgrounds:
            gx = cv2.Sobel(bg, cv2.CV_32F, 1, 0, ksize=3) * 0.125
            gy = cv2.Sobel(bg, cv2.CV_32F, 0, 1, ksize=3) * 0.125
            edge += gx * gx + gy * gy
        self.edge = edge * (self.slack * self.slack)

    def moving(self, change: np.ndarray, k: float) -> np.ndarray:
        """Pixels whose change exceeds k·σ (and the floor), as a 0/1 uint8 mask."""
        limit = np.maximum((self.var + self.edge) * (k * k), self.floor * self.floor)
        return (change * change > limit).astype(np.uint8)

    def update(self, change: np.ndarray, alpha: float, keep: np.ndarray) -> None:
        """Learn from pixels where nothing is being tracked (``keep`` 255); a fire must not teach the
        model that fire is normal."""
        cv2.accumulateWeighted(np.minimum(change * change, 1.0), self.var, alpha, keep)
