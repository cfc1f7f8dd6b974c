"""Hotspots in radiometric thermal frames (fire-detection.md §4).

No vendor publishes an alarm temperature for straw fires seen from a tower, and at 1–5 km a fire fills a
fraction of a pixel, so the test is contextual, like MODIS: a pixel is hot when it is above an absolute
floor and above its local background by max(margin, 3σ); a hotspot is at least 3 connected hot pixels
(the vendors' own design rule) seen in two consecutive frames at the same preset.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from analytics.fire.video import Candidate


@dataclass(frozen=True)
class ThermalParams:
    floor_k: float = 318.15
    """45 °C: nothing cooler is a fire, however cold the field around it."""
    margin_k: float = 10.0
    sigmas: float = 3.0
    window: int = 31
    """Side of the local background window, pixels."""
    min_pixels: int = 3
    persist: int = 2


Blob = tuple[tuple[int, int, int, int], int, float]


def hot_blobs(kelvin: np.ndarray, p: ThermalParams = ThermalParams()) -> list[Blob]:
    """(box, pixel count, peak K) of every hot region of one frame."""
    k = kelvin.astype(np.float32)
    mean = cv2.blur(k, (p.window, p.window), borderType=cv2.BORDER_REFLECT)
    square = cv2.blur(k * k, (p.window, p.window), borderType=cv2.BORDER_REFLECT)
    sigma = np.sqrt(np.maximum(square - mean * mean, 0))
    hot = (k >= p.floor_k) & (k - mean >= np.maximum(p.margin_k, p.sigmas * sigma))
    if not hot.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hot.astype(np.uint8), connectivity=8)
    blobs = []
    for label in range(1, count):
        x, y, w, h, area = stats[label].tolist()
        if area >= p.min_pixels:
            peak = float(k[y:y + h, x:x + w][labels[y:y + h, x:x + w] == label].max())
            blobs.append(((x, y, w, h), area, peak))
    return blobs


_ids = itertools.count(1)


class ThermalDetector:
    """Hotspots that persist at one camera and preset."""

    def __init__(self, params: ThermalParams = ThermalParams()) -> None:
        self.p = params
        self._seen: dict[tuple[str, int | None], list[tuple[int, int, tuple]]] = {}
        """(camera, preset) → (track id, frames seen in a row, box) of the last frame's hotspots."""

    def process(self, camera: str, preset: int | None, kelvin: np.ndarray) -> list[Candidate]:
        key = (camera, preset)
        for other in [k for k in self._seen if k[0] == camera and k != key]:
            del self._seen[other]
        before = self._seen.get(key, [])
        now, found = [], []
        for box, _, peak in hot_blobs(kelvin, self.p):
            match = next((b for b in before if _overlap(b[2], box)), None)
            track, run = (match[0], match[1] + 1) if match else (next(_ids), 1)
            now.append((track, run, box))
            if run >= self.p.persist:
                background = float(np.median(kelvin))
                excess = peak - background - self.p.margin_k
                confidence = min(0.95, 0.6 + 0.35 * min(1.0, max(excess, 0) / 60))
                found.append(Candidate(track, "hotspot", box, round(confidence, 3)))
        self._seen[key] = now
        return found


def _overlap(a: tuple, b: tuple, grow: int = 2) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax - grow < bx + bw and bx - grow < ax + aw and ay - grow < by + bh and by - grow < ay + ah
