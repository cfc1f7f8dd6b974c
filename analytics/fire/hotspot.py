"""Far fires as points of light: flames too small to have a colour.

At 2.5–4 km a straw fire's flames are 1–3 px tall on a 1280-px tower frame. Blended into the field and
through the camera's chroma subsampling (JPEG, H.264: colour at half resolution) such a flame is a whitish
or yellowish point whose colour fails the flame rules (``colour``), and at working size it is one diluted
pixel. What still shows is brightness, at full resolution: a flame is a *source* of light, so its point is
brighter than everything around it (a ring of pixels a few pixels out: a bright field's edge, or a large
bright surface, has pixels as bright as itself in that ring), and it is *new*: brighter than the
background of this preset there. Only ground far enough to make a flame sub-resolved is searched: with a
pose, ``geometry.far_band``: from below the lowest row the sky may reach (the horizon with the pose's tilt
uncertainty: stars and aircraft lights stay out) down to where a ``flame_m`` flame spans ``max_px`` pixels,
so the band follows the zoom; without one, ``band_share`` of the frame height below the horizon. Nothing
above the band's top row counts, not even by the ``reach`` a point may sway.

``SpotFinder`` gives those points, per frame, as blobs in aligned full-resolution pixels; the scene model
(``video``) tracks them and judges them by what a far fire does over seconds and what look-alikes do:
it stays put (a vehicle's headlight moves), it is there in nearly every frame (a beacon turns), it is not
a known night light (``nightmap``) nor under a low sun's glint (``sun``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from analytics.fire.motion import ema_alpha

PAD = 8
"""Rows read above and below the band (registration moves it by a few pixels)."""


@dataclass(frozen=True)
class SpotParams:
    flame_m: float = 3.0
    max_px: float = 4.0
    """Ground where a flame of ``flame_m`` spans under ``max_px`` pixels is searched for points (about 900 m
    and beyond at a 55° field of view on a 1280-px frame, 5 km at 10°)."""
    band_share: float = 0.06
    """Without a pose: the share of the frame height below the horizon searched."""
    reach: int = 2
    ring: int = 5
    """Outer radius (pixels) of the ring a point must outshine; its inner radius is ``ring − 2``."""
    contrast: float = 0.05
    """log grey above the brightest pixel of its ring."""
    new: float = 0.06
    """How much more the point leads its ring than the background there did (log grey)."""
    min_grey: float = 60.0
    """A source of light is brighter than this (grey levels): at night, dark fields' sensor noise is not."""
    recent_tau_s: float = 1.5
    settle_s: float = 4.0
    """The model's first seconds, when every pixel learns what it usually does ..."""
    rising_tau_s: float = 120.0
    """... and after them, how slowly a pixel learns while its recent lead is up (a new point)."""
    min_share: float = 0.35
    noise_k: float = 3.5
    bg_tau_s: float = 20.0
    max_blobs: int = 12


def band_rows(height: int, k: int, top: float, bottom: float) -> tuple[int, int]:
    """The band's first and end rows: whole working rows (multiples of ``k``), with ``PAD`` rows of the frame
    above and below them, for any requested rows (a horizon above or below the frame, a far end past its
    foot). The band keeps at least 4 working rows below its first (8 rows at 1280 px), even when the requested
    end is at or above it (a narrow zoom, where a flame is resolved before the tilt uncertainty ends); it is
    empty only when its first row is at the frame's foot."""
    low, high = -(-PAD // k) * k, (height - PAD) // k * k
    first = -(-min(max(_row(top), low), high) // k) * k
    return first, min(max(_row(bottom), first + 4 * k), high) // k * k


def _row(value: float) -> int:
    """A row as an integer; an undefined one (NaN) above the frame."""
    return -1 if math.isnan(value) else int(min(max(value, -1.0), 1e9))


def full_size(band: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """A working-size mask blown up to ``shape`` full-resolution pixels: the frame's last ``width % k``
    columns (and rows), which no working pixel covers whole, take the last working pixel's value."""
    rows, cols = shape
    big = np.repeat(np.repeat(band, k, axis=0), k, axis=1)[:rows, :cols]
    return np.pad(big, ((0, rows - big.shape[0]), (0, cols - big.shape[1])), mode="edge")


class SpotFinder:
    """Bright new points in the far band of one camera at one preset."""

    def __init__(self, width: int, height: int, k: int, top: float, bottom: float, params: SpotParams) -> None:
        self.p, self.k, self.width = params, k, width
        self.top, self.bottom = band_rows(height, k, top, bottom)
        r, inner = params.ring, params.ring - 2
        ring = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        ring[r - inner + 1:r + inner, r - inner + 1:r + inner] = 0
        self.kernel = ring
        self.mean: np.ndarray | None = None
        """Each pixel's usual lead over its ring (log grey), as an exponentially weighted mean ..."""
        self.var = np.zeros(0, np.float32)
        """... and variance: a textured field's peaks come and go with sway and JPEG, a flat field's do not."""
        self.recent = np.zeros(0, np.float32)
        """The lead over the last second or two: a weak far flame is a point in some frames only."""
        self.age_s = 0.0
        self._lead: np.ndarray | None = None
        self._hot: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return self.bottom - self.top

    def find(self, frame: np.ndarray, shift: tuple[float, float], dt_s: float
             ) -> list[tuple[tuple[int, int, int, int], int]]:
        """(box x, y, w, h in aligned full-resolution pixels, bright pixels) of each new point."""
        self._hot = None
        if self.rows <= 0:
            return []
        grey = self._aligned(frame, shift)
        # in log grey, a point's lead over its ring does not change when light changes (a cloud shadow
        # leaving a field, an exposure step): only a new source of light makes a new point. The best lead
        # within ``reach`` pixels: registration is good to a fraction of a pixel by day, but to a pixel or
        # so in a dark, noisy night picture, and a source of a pixel or less falls on one pixel or another
        # as the mast sways
        reach = np.ones((2 * self.p.reach + 1, 2 * self.p.reach + 1), np.uint8)
        raw = np.maximum(grey - cv2.dilate(grey, self.kernel), -0.3)
        raw[:PAD] = -0.3  # above the band (perhaps sky): no source is taken from there
        lead = cv2.dilate(raw, reach)[PAD:PAD + self.rows]
        self._lead = lead
        if self.mean is None:
            self.mean, self.var, self.age_s = lead.copy(), np.full_like(lead, self.p.new ** 2), 0.0
            self.recent = lead.copy()
            return []
        alpha = ema_alpha(dt_s, self.p.recent_tau_s)
        cv2.accumulateWeighted(lead, self.recent, alpha)
        if self.age_s < self.p.settle_s:
            return []  # what is a point in the model's first seconds was there before: it is learnt
        # the recent lead averages some frames: its noise is the pixel's own, that much smaller (sway
        # errors are not independent from frame to frame: never counted below ``min_share`` of it)
        share = max(math.sqrt(alpha / (2 - alpha)), self.p.min_share)
        limit = np.maximum(self.p.new, (self.p.noise_k * share) * np.sqrt(self.var))
        bright = cv2.dilate(grey, reach)[PAD:PAD + self.rows] > math.log1p(self.p.min_grey)
        hot = (self.recent > self.p.contrast) & (self.recent - self.mean > limit) & bright
        self._hot = hot.astype(np.uint8) * 255
        if not hot.any():
            return []
        k = self.k
        h, w = hot.shape
        pooled = hot[:h // k * k, :w // k * k].reshape(h // k, k, w // k, k).any(axis=(1, 3)).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(pooled, np.ones((3, 3), np.uint8)))
        blobs = []
        for i in np.argsort(-stats[1:, 4])[:self.p.max_blobs] + 1:
            x, y, bw, bh, _ = stats[i]
            part = hot[y * k:(y + bh) * k, x * k:(x + bw) * k]
            ys, xs = np.nonzero(part)
            if xs.size == 0:
                continue
            box = (int(x * k + xs.min()), int(self.top + y * k + ys.min()),
                   int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
            blobs.append((box, int(xs.size)))
        return blobs

    def learn(self, keep: np.ndarray, dt_s: float) -> None:
        """Update the background where nothing is tracked (``keep``: working-size 0/255 mask of the frame)."""
        if self._lead is None or self.mean is None or self.rows <= 0:
            return
        mask = full_size(keep[self.top // self.k:self.bottom // self.k], self.k, self._lead.shape)
        self.age_s += dt_s
        # a running mean over the young model's first seconds, then exponential; once the model has
        # settled, around a point found now (tracked or not yet) only slowly: a new flame must not teach the
        # pixel that its lead is noise, but a light judged no fire is learnt in a minute or two
        young = self.age_s <= self.p.settle_s
        alpha = dt_s / (self.age_s + 1.0) if young else ema_alpha(dt_s, self.p.bg_tau_s)
        if young:
            mask[:] = 255
        rising = np.zeros_like(mask)
        if not young and self._hot is not None:
            rising = cv2.dilate(self._hot, np.ones((5, 5), np.uint8)) & mask
            mask = mask & ~rising
        d = self._lead - self.mean
        for weight, where in ((alpha, mask), (ema_alpha(dt_s, self.p.rising_tau_s), rising)):
            cv2.accumulateWeighted(d * d, self.var, weight, where)
            cv2.accumulateWeighted(self._lead, self.mean, weight, where)

    def _aligned(self, frame: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
        """log(1 + grey) of the band and PAD rows each side, moved back by the registration shift
        (full-resolution pixels)."""
        dx, dy = shift
        y0 = self.top - PAD
        crop = cv2.cvtColor(frame[y0:self.bottom + PAD], cv2.COLOR_BGR2GRAY).astype(np.float32)
        m = np.float32([[1, 0, -dx], [0, 1, -dy]])
        moved = cv2.warpAffine(crop, m, (crop.shape[1], crop.shape[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        return cv2.log(moved + 1.0)
