"""Smoke: what a far straw fire (or one behind a shelterbelt) shows first.

A block turns to smoke when a *grey veil* covers it: it moves, loses colour (saturation) against the
background — or, over a sky that had none (grey sky, haze), changes brightness towards some grey — and
loses edge energy against a long-term background (Töreyin thesis ch. 4); and the change is what a grey
layer of some opacity makes (``_grey_layer``: harvester dust is brown, a lorry red, a shadow keeps its
colour). A plume stands on a fixed base (the ground, or the top of a tree line near the horizon) and
grows upwards; fog, cloud and dust do not stand still at their foot and rise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from analytics.fire import dust, temporal
from analytics.fire.motion import ema_alpha

BLOCK = 8
"""Smoke block size in working pixels (16 px of a 1280 px frame)."""
FINE = 4
"""Block size where the pose says the range is far (and in the sky near the horizon): a far fire's young plume
is a few metres wide, 5–10 px at 3 km, and fills no BLOCK block enough to count."""
_VEIL = np.array([1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0], np.float32)[:, None]


@dataclass(frozen=True)
class SmokeParams:
    motion_t: float = 4.0
    """Grey levels a pixel must change (gain-compensated) to count as moving, at most: where the pixel is quiet
    less will do (``motion_k``)."""
    motion_k: float = 3.0
    motion_min: float = 2.0
    """A pixel also counts as moving when its change exceeds this many times its own usual |change| (learnt
    outside the tracks in play), but never less than ``motion_min`` grey levels. A grey sky is far quieter than
    land (its usual |change| after JPEG is ≈ 0.5–1 grey level, where 4 is 6–8 times its noise): the thinning top
    of a plume over it, the part that climbs, changes it by 2–4 levels only (tuning shelterbelt 7000–7008)."""
    gain_error: float = 0.1
    """Share of an exposure change (the row's gain against the background, minus 1) its compensation may miss: the
    sky takes the land's gain (tuning shelterbelt 7005 at 10 fps: a +17 % step under the grey sky turned the sky
    band by 2–4 levels, and with ``motion_min`` alone its fragments climbed and paged 3 s later)."""
    clip_step: float = 0.05
    """Change of the land's exposure gain against the background from which sky rows are asked whether they clip
    (`_gains`). Tuning shelterbelt, tractor and dust 7000–7008 at 2 fps played the same with it as without."""
    max_saturation: float = 0.35
    washout: float = 0.06
    """Saturation a block's pixels must lose against a coloured background."""
    overcast: float = 0.08
    """Sky less saturated than this is overcast or hazy: smoke over it can only change its brightness."""
    band: float = 0.12
    """Share of the frame height above the horizon searched for rising smoke."""
    base_above: float = 0.05
    """A plume's foot may be this share of the frame height above the horizon (behind a tree line)."""
    bg_tau_s: float = 20.0
    energy_tau_s: float = 60.0
    """The long-term background of edge energy."""
    window_s: float = 6.0
    confirm_s: float = 2.0
    alone: float = 0.45
    """Confidence of young smoke alone: below the alert threshold (0.5)."""
    strong: float = 0.6
    strong_s: float = 5.0
    """Smoke that has kept its base and risen steadily for this long stands on its own ..."""
    rising_s: float = 2.0
    rising_growth: float = 1.5
    """... as does a veil standing at the horizon or above whose top has climbed steadily for ``rising_s``
    while its area grew this much (smoke showing over a tree line: its foot and its fire hidden, only its
    slow upward growth to go by; on open land the fire itself shows)."""
    foot_share: float = 0.15
    """Share of the field under a veil standing in the sky that must change for its colour to be judged."""
    min_aspect: float = 0.25
    """A plume's height over its width at least this (a flat haze band is not one)."""
    fine_sway: float = 3.0
    """In FINE blocks a pixel counts as turned only when its change exceeds ``motion_t`` plus this many times what
    its own usual |deviation| from the background exceeds the strip's median pixel's: a tree line, field edges and
    a textured horizon swaying with the mast (what registration leaves) and flickering with JPEG change that much
    all the time, a new veil does not; the field's own noise is the median's (gated on it whole, a far plume of
    a few grey levels was lost: tuning far fire 7000). Learnt from |grey − background|, a far plume thickening
    slower than the background follows it is learnt as sway (open; learnt from look to look instead, session 13,
    it lost tuning far fire 7000 by 3 s and let a near fire's veil reach over its flame: reverted).
    (The same test on a block's edge energy against its own usual deviation also lost a far plume: not used.)"""
    fine_range_m: float = 1500.0
    """Beyond this ground range (and above the horizon) veils are also looked for in FINE blocks: a plume's
    width in pixels falls with the range (a 15 m plume spans 16 px at about 1.2 km with a 55° lens)."""


class SmokeModel:
    def __init__(self, params: SmokeParams, k: int, horizon: float, height: int, far_row: float | None = None
                 ) -> None:
        """``far_row``: the frame row below which the ground is nearer than ``fine_range_m`` (from the pose;
        without one the horizon): above it veils are looked for in FINE blocks as well."""
        self.p, self.k = params, k
        self.horizon = horizon
        smoke_top = int(min(max(horizon - params.band * height, 0), height / 2)) // k
        self.top = smoke_top // BLOCK * BLOCK  # working rows, on the block grid
        self.base_min = (horizon - params.base_above * height) / k
        """The lowest a plume's base may sit, in working rows (upwards is smaller)."""
        self.fine_top = max(self.top, int(horizon / k) // FINE * FINE)
        far = horizon if far_row is None else far_row
        self.fine_rows = max(0, min(int(far / k), height // k) - self.fine_top) // FINE * FINE
        """Working rows from ``fine_top`` (the horizon: a far fire's plume stands on the land; in FINE blocks a
        tree line's crowns swaying against the sky make veils of their own) searched in FINE blocks too."""
        self.grey = self.saturation = self.colour = self.energy = self.fine_energy = None
        self.fine_dev = None
        """FINE rows' usual |grey − background| per pixel."""
        self.usual = None
        """The smoke region's usual |change| per pixel (``motion_k``)."""
        self.threshold = None
        """The |change| a pixel of the smoke region must exceed to move, from ``usual`` (with no exposure change)."""
        self._change: np.ndarray | None = None
        """The last frame's |change| over the smoke region, learnt into ``usual`` by ``update``."""
        self.seen = 0

    def start(self, small: np.ndarray, grey: np.ndarray) -> None:
        self.grey = grey.copy()
        self.saturation = _saturation(small)
        self.colour = small.astype(np.float32)
        self.energy = _block_energy(grey)
        self.fine_energy = _block_energy(self._fine(grey), FINE) if self.fine_rows else None
        if self.fine_rows:
            self.fine_dev = np.zeros_like(self._fine(grey))
        self.usual = np.full_like(grey[self.top:], self.p.motion_t / self.p.motion_k)  # (as before, until learnt)
        self._learnt_threshold()
        self._change = None
        self.seen = 1

    def _learnt_threshold(self) -> None:
        self.threshold = np.clip(self.p.motion_k * self.usual, self.p.motion_min, self.p.motion_t)

    def _threshold(self, gains: np.ndarray, region: slice) -> np.ndarray:
        """Per pixel, the |change| that is movement. While the background has not caught up with an exposure change
        its compensation may be off by a share of it (the sky takes the land's gain): that much is no veil either.
        (Most frames have no such change: then the learnt threshold as it is, not four passes over the region.)"""
        off = self.p.gain_error * np.abs(gains - 1)
        if float(off.max()) * 255 <= self.p.motion_min:
            return self.threshold
        unsure = off[:, None] * self.grey[region]
        return np.minimum(np.maximum(self.p.motion_k * self.usual, np.maximum(unsure, self.p.motion_min)),
                          self.p.motion_t)

    def _fine(self, image: np.ndarray) -> np.ndarray:
        return image[self.fine_top:self.fine_top + self.fine_rows]

    def update(self, small: np.ndarray, grey: np.ndarray, dt_s: float, keep: np.ndarray) -> None:
        alpha = ema_alpha(dt_s, self.p.bg_tau_s)
        self.seen += 1
        if self.fine_rows:
            self._learn_sway(grey, keep, max(alpha, 1 / self.seen))
        if self._change is not None:  # (a running mean over the first frames, as for the sway)
            cv2.accumulateWeighted(self._change, self.usual, max(alpha, 1 / self.seen), keep[self.top:])
            self._learnt_threshold()
            self._change = None
        cv2.accumulateWeighted(grey, self.grey, alpha, keep)
        cv2.accumulateWeighted(_saturation(small), self.saturation, alpha, keep)
        cv2.accumulateWeighted(small.astype(np.float32), self.colour, alpha, keep)
        e = ema_alpha(dt_s, self.p.energy_tau_s)
        keep_blocks = _blocks(keep.astype(np.float32)) > 254
        self.energy[keep_blocks] += e * (_block_energy(grey)[keep_blocks] - self.energy[keep_blocks])
        if self.fine_rows:
            keep_fine = _blocks(self._fine(keep).astype(np.float32), FINE) > 254
            self.fine_energy[keep_fine] += e * (_block_energy(self._fine(grey), FINE)[keep_fine]
                                                - self.fine_energy[keep_fine])

    def _learn_sway(self, grey: np.ndarray, keep: np.ndarray, alpha: float) -> None:
        """How much the FINE rows differ from their background as a rule, per pixel (a running mean over the
        first frames, then exponential with the background's own time constant)."""
        cv2.accumulateWeighted(np.abs(self._fine(grey) - self._fine(self.grey)), self.fine_dev, alpha,
                               self._fine(keep))

    def blobs(self, small: np.ndarray, grey: np.ndarray, t: float) -> list[tuple]:
        """(box in full-resolution pixels, area in full-resolution pixels, block size it was found in) of grey
        veils in the smoke region."""
        top = self.top
        region = slice(top, None)
        horizon = min(max(int(self.horizon / self.k), 0), grey.shape[0] - 1)  # (it may lie off the frame)
        gains = self._gains(grey, horizon)
        change = grey[region] - self.grey[region] * gains[top:, None]
        now = _saturation(small[region])
        before = self.saturation[region]
        unsaturated = now < self.p.max_saturation
        sky = np.zeros(now.shape, bool)
        sky[:max(0, horizon - top)] = True
        # over land smoke washes colour out; over a sky that had none (grey sky, haze) it can only darken or
        # lighten it towards its own grey, which the grey-veil test below checks
        washed = (before - now >= self.p.washout) | ((before < self.p.overcast) & sky)
        self._change = np.abs(change)
        # while the background has not caught up with an exposure change, its compensation may be off by a share of
        # it (the sky takes the land's gain): that much is no veil either
        moved = self._change > self._threshold(gains[top:], region)
        turned = unsaturated & washed & moved
        judged: list[tuple[int, int, int, int]] = []
        found = self._veils(small, grey, change, gains, turned, horizon, BLOCK, self.top, turned.shape[0],
                            self.energy, judged)
        if self.fine_rows:  # far away (and in the sky) a young plume is narrower than a block
            # a veil found in coarse blocks, or judged there by its colour (dust, not grey), is not looked for
            # again in fine ones: a part of it may pass there (distant dust backing a far point)
            coarse = [box for box, *_ in found] + judged
            # there, only beyond what the pixel's own sway and JPEG flicker make
            fine = slice(self.fine_top - top, self.fine_top - top + self.fine_rows)
            swayed = turned.copy()
            usual = float(np.median(self.fine_dev))  # (the strip's typical pixel: its noise and JPEG)
            swayed[fine] &= self._change[fine] > self.p.motion_t + self.p.fine_sway * np.maximum(
                self.fine_dev - usual, 0)
            found += [veil for veil in self._veils(small, grey, change, gains, swayed, horizon, FINE, self.fine_top,
                                                   self.fine_rows, self.fine_energy)
                      if not any(_overlap(veil[0], c) for c in coarse)]
        return found

    def _veils(self, small: np.ndarray, grey: np.ndarray, change: np.ndarray, gains: np.ndarray, turned: np.ndarray,
               horizon: int, block: int, top: int, rows: int, bg_energy: np.ndarray,
               judged: list[tuple[int, int, int, int]] | None = None) -> list[tuple]:
        """Grey veils in ``block``-sized blocks over ``rows`` working rows from ``top``: (box in full-resolution
        pixels, area in full-resolution pixels, block). ``change`` and ``turned`` start at the smoke region's top.
        ``judged`` gets the boxes of veils rejected by their colour (not grey, dust, a coloured foot)."""
        turned = turned[top - self.top:top - self.top + rows]
        change = change[top - self.top:]
        share = _blocks(turned.astype(np.float32), block)
        btop, n = top // block, share.shape[0]
        if block == FINE:
            energy, bg_energy = _block_energy(self._fine(grey), FINE)[:n], bg_energy[:n]
        else:
            energy, bg_energy = _block_energy(grey)[btop:btop + n], bg_energy[btop:btop + n]
        flat = bg_energy < 2.0  # sky or bare soil: nothing to lose
        veiled = share >= 0.3
        washed_out = veiled & ((energy / np.maximum(bg_energy, 1e-3) < 0.9) | flat)
        # FINE blocks are as small as a far fire's own light at the plume's foot, whose edges raise its block's
        # energy and whose colour is no grey: there a veiled block joins a veil that lost its texture next to
        # it, and the veil's colour is judged on the blocks that lost it
        blocks = (veiled if block == FINE else washed_out).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(blocks, connectivity=8)
        seeded = set(np.unique(labels[washed_out]).tolist())
        limit = 0.3 * blocks.size
        found = []
        for label, (x, y, w, h, area) in enumerate(stats.tolist()):
            bottom = top + (y + h) * block
            if label == 0 or label not in seeded or area < 2 or area > limit or bottom < self.base_min:
                continue  # a single block, fog over the view, or cloud that never comes down to the land
            part = (slice(top + y * block, top + (y + h) * block), slice(x * block, (x + w) * block))
            mask = turned[y * block:(y + h) * block, x * block:(x + w) * block]
            s = block * self.k
            if not self._grey_veil(small, change, gains, part, mask, washed_out[y:y + h, x:x + w], horizon,
                                   (x, y, w, h), block, top):
                if judged is not None:
                    judged.append((x * s, (top + y * block) * self.k, w * s, h * s))
                continue
            # the veil's top to the working pixel (it creeps up a few pixels a frame); its foot and sides on
            # the block grid, which holds them steady while the veil thins and thickens
            y0 = int(np.nonzero(mask.any(axis=1))[0][0])
            found.append(((x * s, (top + y * block + y0) * self.k, w * s, h * s - y0 * self.k), area * s * s,
                          block))
        return found

    def _grey_veil(self, small: np.ndarray, change: np.ndarray, gains: np.ndarray, part: tuple[slice, slice],
                   mask: np.ndarray, washed_out: np.ndarray, horizon: int, blocks: tuple[int, int, int, int],
                   block: int, top: int) -> bool:
        """Whether a veil's change (``mask`` in ``part``; ``washed_out``: its blocks that lost texture; ``blocks``:
        x, y, w, h in blocks from ``top``) is a grey one: not dust, a vehicle, a shadow's colour."""
        x, y, w, h = blocks
        seeds = np.repeat(np.repeat(washed_out, block, axis=0), block, axis=1)
        if not _grey_layer(small[part], self.colour[part], mask & seeds):
            return False  # the change is not a grey veil: dust, a vehicle, a shadow's colour
        if dust.veil_over_foot_is_dust(small, self.colour, gains, part[0], part[1], max(h, 3) * block):
            return False  # the layer's own colour, over sky and field alike, is soil's: a machine's dust
        bottom = top + (y + h) * block
        # (a veil that comes down onto the field as a coloured one: a machine's dust)
        return not (bottom <= horizon + block and self._coloured_foot(small, change, max(bottom, horizon) - top, x, w,
                                                                      h, block, top))

    def _gains(self, grey: np.ndarray, horizon: int) -> np.ndarray:
        """Exposure gain per working row: the land's mean ratio, except in sky rows that clip, which take their own
        median ratio. A bright sky clips, the more the nearer the horizon, so an exposure step up brightens the land
        but not the sky: compensated with the land's gain the whole sky band would darken as one grey veil. A plume
        covers a minority of a row's width and leaves its median alone.
        Where a camera clips is its own (a white level, a knee, JPEG): not a grey level but what the sky shows. A
        row clips when, at the land's gain, it would be brighter than the brightest sky row now is (it is held at
        the frame's ceiling), or it now is brighter than the brightest background row at that gain (the background
        held it: a step down after a clipped sky). Only while the land's exposure has changed by ``clip_step``:
        without a step a broad veil moves sky rows' medians just as clipping would, and would be compensated away
        (review of session 18: a veil over 60 % of the rows' width gave 30 of them their own gain)."""
        land = (float(grey[horizon:].mean()) + 1) / (float(self.grey[horizon:].mean()) + 1)
        gains = np.full(grey.shape[0], land, np.float32)
        if horizon > self.top and abs(land - 1) >= self.p.clip_step:
            sky = slice(self.top, horizon)
            now = np.median(grey[sky], axis=1)
            expected = np.median(self.grey[sky], axis=1) * gains[sky]
            clipped = (expected > now.max()) | (now > expected.max())
            gains[sky] = np.where(clipped, np.median((grey[sky] + 1) / (self.grey[sky] + 1), axis=1), gains[sky])
        return gains

    def _coloured_foot(self, small: np.ndarray, change: np.ndarray, land: int, x: int, w: int, h: int,
                       block: int = BLOCK, top: int | None = None) -> bool:
        """Whether, under a veil that stands in the sky, the field in the same columns changes too, and not as
        a veil does. Smoke from a fire behind a tree line leaves the field below the trees as it was, and a
        fire's smoke in the open veils the field evenly (each pixel brighter or darker much as its neighbours);
        under a harvester's dust (over a blue sky it cannot be told from a grey veil) the machine and its
        wake move: some pixels darker, some brighter, no one veil."""
        rows = slice(land, land + max(h * block, 3 * BLOCK))
        cols = slice(x * block, (x + w) * block)
        moved = np.abs(change[rows, cols]) > 2 * self.p.motion_t
        if moved.mean() < self.p.foot_share:
            return False
        top = self.top if top is None else top
        part = (slice(top + rows.start, top + rows.stop), cols)
        d = small[part][moved].astype(np.float32) - self.colour[part][moved]
        if float(np.abs(d.mean(axis=0)).mean()) < float(d.std(axis=0).mean()):
            return True  # incoherent: something moving on the field, not a veil over it
        return not _grey_layer(small[part], self.colour[part], moved)

    def confidence(self, recent: list[tuple], age_s: float, settled: bool = True, block: int = BLOCK
                   ) -> float | None:
        """A smoke track's confidence, or None when it does not behave like a plume. ``settled``: the track
        appeared after the scene model had learnt its background (not a veil that was there from the start,
        like a harvester's dust already drifting when the camera came to this preset); only such a track
        can stand on its own. ``block``: the block size the veil was last found in (FINE: a veil too narrow for
        BLOCK blocks, far away, which is only listed)."""
        if age_s < self.p.confirm_s or len(recent) < 3:
            return None
        first, last = recent[0][1], recent[-1][1]
        step = block * self.k
        if abs((first[1] + first[3]) - (last[1] + last[3])) > 2 * step:
            return None  # smoke stands on its fire; cloud and dust do not
        if _travel(recent) > 1.0:
            return None
        rising = first[1] - last[1]
        growth = temporal.growth(recent)
        far = step < BLOCK * self.k
        cut = (self.fine_top + FINE) * self.k  # within a FINE block of the horizon
        if far and last[1] <= cut and first[1] <= cut:
            # a veil on far land reaching the horizon all along: its rise goes on above, into the tree line and
            # the sky, which FINE blocks do not search; it stays listed (below), and it corroborates a far
            # point of light at its foot (``video._corroborated``)
            if last[3] < self.p.min_aspect * last[2] or growth < 0.8:
                return None
            return 0.3
        if rising < step / 2 and not (growth >= 1.3 and rising > 0):
            return None
        if growth < 1.0 or last[3] < self.p.min_aspect * last[2]:
            return None  # a young plume grows up; a haze band lies flat
        base = min(self.p.alone, 0.3 + 0.1 * min(1.0, growth - 1) + 0.05 * min(1.0, rising / (4 * step)))
        if not settled or far:
            return base  # (a veil on far land is narrower than a block elsewhere: listed, not paged, alone)
        span = recent[-1][0] - recent[0][0]
        if age_s >= self.p.strong_s and span >= 0.8 * self.p.window_s and rising >= 2 * step:
            return self.p.strong
        hidden_foot = last[1] + last[3] <= self.horizon + BLOCK * self.k  # over a tree line, not on open land
        if hidden_foot and span >= self.p.rising_s and rising >= step and growth >= self.p.rising_growth \
                and _climbs(recent):
            return self.p.strong  # a veil whose top climbs frame after frame from behind the trees
        return base


def _block_energy(grey: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Mean |Laplacian| per block: texture that semi-transparent smoke washes out."""
    return _blocks(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1)), block)


def _blocks(image: np.ndarray, block: int = BLOCK) -> np.ndarray:
    h, w = image.shape[0] // block, image.shape[1] // block
    return cv2.resize(image[:h * block, :w * block], (w, h), interpolation=cv2.INTER_AREA)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _saturation(bgr: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1]: (max − min) / max."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 1].astype(np.float32) * (1 / 255)


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


def _climbs(recent: list[tuple]) -> bool:
    """Whether the top edge rises as a significant straight-line trend (not one jump, not wandering)."""
    ts = np.array([h[0] for h in recent], np.float64)
    tops = np.array([h[1][1] for h in recent], np.float64)
    slope, intercept = np.polyfit(ts, tops, 1)
    spread = float(np.std(tops - (slope * ts + intercept)))
    drops = np.diff(tops)
    return bool(slope < 0 and -slope * (ts[-1] - ts[0]) >= 3.0 * max(spread, 1.0) and (drops <= 0).mean() >= 0.6)


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _travel(recent: list[tuple]) -> float:
    """Centre travel over the window, in mean box diagonals."""
    (x0, y0), (x1, y1) = _centre(recent[0][1]), _centre(recent[-1][1])
    diag = np.mean([np.hypot(b[2], b[3]) for _, b, *_ in recent])
    return float(np.hypot(x1 - x0, y1 - y0) / max(diag, 1.0))
