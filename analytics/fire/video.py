"""The per-camera, per-preset video detector: colour candidates kept only when they behave like fire.

Colour rules alone flag sunsets, red lorries and straw in low sun (Celik & Ma report 31.5 % false
alarms); what removes those is behaviour over consecutive frames (fire-detection.md §1.2–1.6):

- region of interest below the horizon (flames) or just above it (smoke rising from the ground);
- a background model per preset, gain-compensated for changing light, selectively updated, reset when
  the preset changes or the whole view jumps; a motion gate from it;
- flame tracks must persist (M of N frames), flicker (Töreyin: zero crossings of the high-passed red
  channel per pixel), not travel across the view (vehicles), and are scored higher when they grow;
- smoke tracks are grey blocks that move, lower the block's edge energy against the background,
  stand on the ground below the horizon and grow upwards (fog, cloud and dust do not).

Frames are worked on at about 640 px wide, flame colour at full resolution (small far fires).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from analytics.fire.colour import ColourParams, flame_mask, land_means

WORK_WIDTH = 640
SMOKE_CEILING = 0.45
BLOCK = 8
"""Smoke block size in working pixels."""


@dataclass(frozen=True)
class VideoParams:
    colour: ColourParams = field(default_factory=ColourParams)
    window: int = 12
    """Frames of history (red-channel ring, track decisions)."""
    persist_m: int = 6
    persist_n: int = 8
    """A track must be seen in M of the last N frames."""
    min_flame_px: int = 6
    """Full-resolution pixels (fire-detection.md §1.5: ≥ 3 for thermal; a little more for colour)."""
    motion_t: float = 10.0
    smoke_motion_t: float = 4.0
    min_moving: float = 0.12
    min_flicker: float = 0.15
    flicker_crossings: int = 3
    max_travel: float = 1.0
    """Centroid travel over the window, in box diagonals: more is a vehicle, not a fire."""
    smoke_max_saturation: float = 0.35
    smoke_washout: float = 0.06
    """Saturation a block's pixels must lose against the background to count as smoke."""
    smoke_band: float = 0.12
    """Share of the frame height above the horizon searched for rising smoke."""
    bg_alpha: float = 0.05
    reset_moving: float = 0.6
    """When more of the view than this changes at once the camera moved: start the model again."""


@dataclass(frozen=True)
class Candidate:
    track: int
    cue: str
    """flame or smoke"""
    box: tuple[int, int, int, int]
    """x, y, w, h in full-resolution pixels."""
    confidence: float


@dataclass
class _Track:
    id: int
    cue: str
    first_frame: int
    boxes: deque = field(default_factory=lambda: deque(maxlen=24))
    """(frame, box, area, moving share), hits only."""
    emitted: float = 0.0

    def last_box(self) -> tuple[int, int, int, int]:
        return self.boxes[-1][1]

    def hits_since(self, frame: int) -> int:
        return sum(1 for f, *_ in self.boxes if f > frame)


_ids = itertools.count(1)


class SceneModel:
    """What one camera at one preset has seen: background, recent red channel, tracks."""

    def __init__(self, width: int, height: int, horizon: float | None, params: VideoParams) -> None:
        self.p = params
        self.width, self.height = width, height
        self.k = max(1, round(width / WORK_WIDTH))
        self.ww, self.wh = width // self.k, height // self.k
        horizon = height * 0.35 if horizon is None else horizon
        self.flame_top = int(min(max(horizon + 2, 0), height - 8))
        smoke_top = int(min(max(horizon - params.smoke_band * height, 0), height / 2)) // self.k
        self.smoke_top = smoke_top // BLOCK * BLOCK * self.k  # on the block grid
        self.horizon = horizon
        self.frames = 0
        self.bg: np.ndarray | None = None
        self.bg_saturation: np.ndarray | None = None
        self.bg_colour: np.ndarray | None = None
        self.bg_energy: np.ndarray | None = None
        self.red: deque[np.ndarray] = deque(maxlen=params.window)
        self.tracks: list[_Track] = []

    # -- one frame ---------------------------------------------------------------------------------------

    def process(self, frame: np.ndarray) -> list[Candidate]:
        small = cv2.resize(frame, (self.ww, self.wh), interpolation=cv2.INTER_AREA) if self.k > 1 else frame
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        energy = _block_energy(grey)
        if self.bg is None:
            self._start(grey, energy, small)
            return []
        wtop = self.flame_top // self.k
        gain = (float(grey[wtop:].mean()) + 1) / (float(self.bg[wtop:].mean()) + 1)
        diff = cv2.absdiff(grey, self.bg * gain)
        if float((diff[wtop:] > self.p.motion_t).mean()) > self.p.reset_moving:
            self._start(grey, energy, small)  # the view jumped: preset moved without telling us
            return []
        flames = self._flame_blobs(frame, small, diff)
        saturation = _saturation(small)
        smokes = self._smoke_blobs(small, saturation, grey - self.bg * gain, energy)
        self.frames += 1
        self._observe("flame", flames)
        self._observe("smoke", smokes)
        self.red.append(small[:, :, 2].copy())
        self._update_background(grey, small, saturation, energy, flames + smokes)
        return self._decide()

    def _start(self, grey: np.ndarray, energy: np.ndarray, small: np.ndarray) -> None:
        self.bg, self.bg_energy = grey.copy(), energy.copy()
        self.bg_saturation = _saturation(small)
        self.bg_colour = small.astype(np.float32)
        self.red.clear()
        self.red.append(small[:, :, 2].copy())
        self.tracks.clear()
        self.frames += 1

    def _flame_blobs(self, frame: np.ndarray, small: np.ndarray, diff: np.ndarray) -> list[tuple]:
        """Moving flame-coloured blobs: found at working size (Töreyin: colour only where there is motion),
        measured at full resolution inside each blob's box, so a small far fire keeps its pixels."""
        wtop = self.flame_top // self.k
        means = land_means(small[wtop:])
        moving = cv2.dilate((diff[wtop:] > self.p.motion_t).astype(np.uint8), np.ones((3, 3), np.uint8))
        mask = cv2.dilate(flame_mask(small[wtop:], means, self.p.colour) & (moving * 255), np.ones((3, 3), np.uint8))
        if not mask.any():
            return []
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        blobs = []
        for x, y, w, h, _ in sorted(stats[1:].tolist(), key=lambda s: -s[4])[:20]:
            x0, y0 = x * self.k, (y + wtop) * self.k
            crop = frame[y0:y0 + h * self.k, x0:x0 + w * self.k]
            fine = flame_mask(crop, means, self.p.colour)
            area = cv2.countNonZero(fine)
            if area < self.p.min_flame_px:
                continue
            fx, fy, fw, fh = cv2.boundingRect(fine)
            box = (x0 + fx, y0 + fy, fw, fh)
            blobs.append((box, area, float(moving[y:y + h, x:x + w].mean())))
        return blobs

    def _smoke_blobs(self, small: np.ndarray, saturation: np.ndarray, change: np.ndarray, energy: np.ndarray
                     ) -> list[tuple]:
        """Blocks turning to smoke: moving, washed out (less saturated than the background; cloud shadows
        darken a field but keep its saturation) and unsaturated now (arasharchor's S < 0.35)."""
        wtop = self.smoke_top // self.k
        now = saturation[wtop:]
        before = self.bg_saturation[wtop:]
        turned = ((now < self.p.smoke_max_saturation) & (before - now >= self.p.smoke_washout)
                  & (np.abs(change[wtop:]) > self.p.smoke_motion_t))
        share = _blocks(turned.astype(np.float32))
        btop, rows = wtop // BLOCK, share.shape[0]
        ratio = energy[btop:btop + rows] / np.maximum(self.bg_energy[btop:btop + rows], 1e-3)
        flat = self.bg_energy[btop:btop + rows] < 2.0  # sky or bare soil: nothing to lose
        blocks = ((share >= 0.3) & ((ratio < 0.9) | flat)).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(blocks, connectivity=8)
        horizon_block = (self.horizon / self.k - wtop) / BLOCK
        limit = 0.3 * blocks.size
        blobs = []
        for x, y, w, h, area in stats[1:].tolist():
            if area < 2 or area > limit or y + h <= horizon_block:
                continue  # a single block, fog over the view, or cloud that never reaches the ground
            part = (slice(wtop + y * BLOCK, wtop + (y + h) * BLOCK), slice(x * BLOCK, (x + w) * BLOCK))
            if not _grey_layer(small[part], self.bg_colour[part], turned[y * BLOCK:(y + h) * BLOCK,
                                                                         x * BLOCK:(x + w) * BLOCK]):
                continue  # the change is not a grey veil: dust, a vehicle, a shadow's colour
            scale = BLOCK * self.k
            box = (x * scale, self.smoke_top + y * scale, w * scale, h * scale)
            blobs.append((box, area, float(share[y:y + h, x:x + w].mean())))
        return blobs

    def _observe(self, cue: str, blobs: list[tuple]) -> None:
        mine = [t for t in self.tracks if t.cue == cue]
        for box, area, moving in blobs:
            track = next((t for t in mine if _near(t.last_box(), box)), None)
            if track is None:
                track = _Track(next(_ids), cue, self.frames)
                self.tracks.append(track)
                mine.append(track)
            if track.boxes and track.boxes[-1][0] == self.frames:
                continue  # two blobs of one fire: the track has this frame already
            track.boxes.append((self.frames, box, area, moving))
        oldest = self.frames - self.p.persist_n
        self.tracks = [t for t in self.tracks if t.boxes[-1][0] > oldest]

    def _update_background(self, grey: np.ndarray, small: np.ndarray, saturation: np.ndarray, energy: np.ndarray,
                           blobs: list[tuple]) -> None:
        keep = np.full(grey.shape, 255, np.uint8)
        for (x, y, w, h), _, _ in blobs:  # selective update: a fire and its smoke do not become background
            keep[y // self.k:(y + h) // self.k + 1, x // self.k:(x + w) // self.k + 1] = 0
        cv2.accumulateWeighted(grey, self.bg, self.p.bg_alpha, keep)
        cv2.accumulateWeighted(saturation, self.bg_saturation, self.p.bg_alpha / 3, keep)
        cv2.accumulateWeighted(small, self.bg_colour, self.p.bg_alpha / 3, keep)
        self.bg_energy += 0.02 * (energy - self.bg_energy)

    # -- decisions ------------------------------------------------------------------------------------------

    def _decide(self) -> list[Candidate]:
        found = []
        for track in self.tracks:
            if track.boxes[-1][0] != self.frames:
                continue
            if track.hits_since(self.frames - self.p.persist_n) < self.p.persist_m:
                continue
            confidence = self._flame(track) if track.cue == "flame" else self._smoke(track)
            if confidence is not None:
                found.append(Candidate(track.id, track.cue, track.last_box(), round(confidence, 3)))
        return found

    def _flame(self, track: _Track) -> float | None:
        recent = list(track.boxes)[-self.p.window:]
        if np.mean([m for *_, m in recent]) < self.p.min_moving or _travel(recent) > self.p.max_travel:
            return None
        flicker = self._flicker(track.last_box())
        if flicker < self.p.min_flicker:
            return None
        growth = _growth(recent)
        return min(0.97, 0.55 + 0.25 * min(1.0, flicker / 0.5) + (0.12 if growth >= 1.1 else 0.0))

    def _smoke(self, track: _Track) -> float | None:
        recent = list(track.boxes)[-self.p.window:]
        if _travel(recent) > self.p.max_travel:
            return None
        first, last = recent[0][1], recent[-1][1]
        if abs((first[1] + first[3]) - (last[1] + last[3])) > 2 * BLOCK * self.k:
            return None  # smoke stands on its fire; cloud and dust do not
        rising = first[1] - last[1]
        growth = _growth(recent)
        if rising < BLOCK * self.k and not (growth >= 1.3 and rising > 0):
            return None
        if growth < 1.0 or last[3] < last[2]:
            return None  # a young plume is a growing column, taller than wide; a haze band along the horizon is not
        # Smoke alone stays below the alert threshold (0.5): dust, fog and cloud still pass these tests now and
        # then (see the benchmark); a flame, a hotspot, a satellite pixel or a second tower make it an alert.
        return min(SMOKE_CEILING, 0.3 + 0.1 * min(1.0, growth - 1) + 0.05 * min(1.0, rising / (4 * BLOCK * self.k)))

    def _flicker(self, box: tuple[int, int, int, int]) -> float:
        """Share of the box's pixels whose red channel crosses zero after the high-pass often (Töreyin 2006)."""
        if len(self.red) < 6:
            return 0.0
        x, y, w, h = (v // self.k for v in box)
        stack = np.stack([r[y:y + h + 1, x:x + w + 1] for r in self.red]).astype(np.float32)
        hot = stack.max(axis=0) > self.p.colour.red_min
        if not hot.any():
            return 0.0
        high = stack[1:-1] - 0.5 * (stack[:-2] + stack[2:])
        sign = np.sign(np.where(np.abs(high) > 4, high, 0))
        crossings = (sign[1:] * sign[:-1] < 0).sum(axis=0)
        return float((crossings[hot] >= self.p.flicker_crossings).mean())


class VideoDetector:
    """Scene models by (camera, preset); a new preset or frame size starts a new model."""

    def __init__(self, params: VideoParams = VideoParams()) -> None:
        self.params = params
        self.scenes: dict[tuple[str, int | None], SceneModel] = {}

    def process(self, camera: str, preset: int | None, frame: np.ndarray, horizon: float | None
                ) -> list[Candidate]:
        key = (camera, preset)
        scene = self.scenes.get(key)
        h, w = frame.shape[:2]
        if scene is None or (scene.width, scene.height) != (w, h):
            scene = self.scenes[key] = SceneModel(w, h, horizon, self.params)
            for other in [k for k in self.scenes if k[0] == camera and k != key]:
                del self.scenes[other]  # the camera moved on: its other presets' models are stale
        return scene.process(frame)


# -- helpers ------------------------------------------------------------------------------------------------

def _block_energy(grey: np.ndarray) -> np.ndarray:
    """Mean |Laplacian| per BLOCK×BLOCK block: texture that semi-transparent smoke washes out."""
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1))
    return _blocks(lap)


def _blocks(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    cut = image[:h * BLOCK, :w * BLOCK]
    return cv2.resize(cut, (w, h), interpolation=cv2.INTER_AREA)


_VEIL = np.array([1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0], np.float32)[:, None]


def _grey_layer(now: np.ndarray, before: np.ndarray, mask: np.ndarray, max_spread: float = 30.0) -> bool:
    """Whether the change is what a grey veil of some opacity a would make: now = (1 − a)·before + a·X with X
    grey. X = before + (now − before)/a is tried for a from 1 down to 1/8; harvester dust (brown), a red
    lorry or a shadow over coloured soil give no grey X."""
    if not mask.any():
        return False
    c = now[mask].astype(np.float32).mean(axis=0)
    b = before[mask].mean(axis=0)
    veil = b + (c - b) * _VEIL
    spread = veil.max(axis=1) - veil.min(axis=1)
    ok = (veil.min(axis=1) >= 30) & (veil.max(axis=1) <= 255)
    return bool((spread[ok] <= max_spread).any()) if ok.any() else False


def _saturation(bgr: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1]: (max − min) / max."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 1].astype(np.float32) * (1 / 255)


def _share(mask: np.ndarray, box: tuple[int, int, int, int], k: int) -> float:
    x, y, w, h = (v // k for v in box)
    part = mask[y:y + h + 1, x:x + w + 1]
    return float(part.mean()) if part.size else 0.0


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes that overlap once each is grown by half its size."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    gx, gy = max(aw, bw) / 2, max(ah, bh) / 2
    return ax - gx < bx + bw and bx - gx < ax + aw and ay - gy < by + bh and by - gy < ay + ah


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _travel(recent: list[tuple]) -> float:
    (x0, y0), (x1, y1) = _centre(recent[0][1]), _centre(recent[-1][1])
    diag = np.mean([np.hypot(b[2], b[3]) for _, b, *_ in recent])
    return float(np.hypot(x1 - x0, y1 - y0) / max(diag, 1.0))


def _growth(recent: list[tuple]) -> float:
    areas = [a for _, _, a, _ in recent]
    third = max(1, len(areas) // 3)
    return float(np.median(areas[-third:]) / max(np.median(areas[:third]), 1.0))
