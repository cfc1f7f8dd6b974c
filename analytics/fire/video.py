"""The per-camera, per-preset video detector: colour candidates kept only when they behave like fire.

Colour rules alone flag sunsets, red lorries and straw in low sun (Celik & Ma report 31.5 % false
alarms); what removes those is behaviour over time (fire-detection.md §1.2–1.6). Every window and
threshold here is in **seconds** (frames carry their capture time), valid from 1 to 25 fps:

1. each frame is registered to the background by phase correlation (mast sway) — ``motion``;
2. change is measured in log brightness with the light field removed (exposure, cloud shadows) and
   called motion only above k·σ of each pixel's own running noise;
3. flame candidates: moving pixels passing Chen 2004 and Celik 2009 (``colour``), re-measured at full
   resolution; tracks must persist (seen over a share of the *time* of ``confirm_s``: ``temporal.time_share``,
   the same at 1 and 25 fps and over bursts); far fires, whose flames
   are too small to keep their colour, as new, still, steady points of light (``hotspot``);
4. what rejects look-alikes by what they are: a rigid mover's steady ground speed at the range the pose
   gives (vehicles, walkers); a ghost's edge, in the background and not in the frame (ground a vehicle
   uncovered); dust by its veil's own colour, soil's, and a machine kept a mover while it drives in its dust
   (``dust``); a light's common-mode and periodic brightness (lamps, beacons, cloud
   shadows over foliage) — ``temporal``; known night lights — ``nightmap``; the glint band under a low
   sun — ``sun``; and where the frame rate allows (≥ 9.5 fps, e.g. a tower's 2 s bursts), Töreyin's
   flame-band flicker energy on boundary pixels;
5. smoke (``smoke``): a grey veil that washes out colour and edges against a long-term background,
   standing on a fixed base and rising slowly.

A far point of light alone is listed below the alert threshold: it pages when smoke over it, another
tower's crossing bearing (``fusion``) or its growth into a resolved flame corroborates it.

Frames are worked on at about 640 px wide, flame colour at full resolution (small far fires).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from analytics.fire import dust, geometry, sun, temporal
from analytics.fire.colour import ColourParams, flame_mask, land_means
from analytics.fire.dust import DustParams
from analytics.fire.hotspot import SpotFinder, SpotParams
from analytics.fire.motion import Aligner, NoiseModel, ema_alpha, local_change, log_brightness, undo_shift
from analytics.fire.nightmap import NightMap
from analytics.fire.smoke import BLOCK, SmokeModel, SmokeParams

log = logging.getLogger(__name__)

WORK_WIDTH = 640
DEFAULT_GAP_S = 0.5
"""Frame gap assumed for frames without a capture time (the towers' default 2 fps)."""


@dataclass(frozen=True)
class VideoParams:
    colour: ColourParams = field(default_factory=ColourParams)
    smoke: SmokeParams = field(default_factory=SmokeParams)
    spot: SpotParams = field(default_factory=SpotParams)
    bg_tau_s: float = 8.0
    """Time constant of the background (log brightness)."""
    noise_tau_s: float = 15.0
    noise_k: float = 3.5
    noise_floor: float = 0.05
    """Smallest change (log brightness, ≈ 5 %) that can count as motion."""
    chroma_shift: float = 0.03
    """Smallest |Δr| + |Δg| of chromaticity against the background that counts as new colour (above that,
    k·σ of the pixel's own chromaticity noise)."""
    chroma_min_sum: float = 90.0
    """R + G + B below which chromaticity is too noisy to use."""
    above_envelope: float = 0.1
    """Log brightness above the pixel's upper envelope that counts as new light."""
    envelope_decay: float = 0.01
    """How fast (log brightness per second) a pixel's upper envelope forgets a bright moment."""
    confirm_s: float = 3.5
    """A flame track is judged once it has been seen over this long ..."""
    hit_share: float = 0.6
    """... in at least this share of the time of that span (``temporal.time_share``) ..."""
    looked_share: float = 0.5
    """... once the camera has looked over at least this share of it (``temporal.looked_share``): after a gap
    (between bursts, an outage) the first look alone gives no verdict, neither fire nor rejection."""
    history_s: float = 12.0
    """Frames kept (at most 4 a second) for the common-mode and periodicity cues."""
    forget_s: float = 3.0
    min_flame_px: int = 6
    """Full-resolution pixels (fire-detection.md §1.5: ≥ 3 for thermal; a little more for colour)."""
    max_speed_mps: float = 0.35
    """A track whose centre moves steadily faster than this (at the range the pose gives), without
    growing, is a vehicle or a walker."""
    max_speed_diag_s: float = 0.12
    """The same without a pose: box diagonals per second."""
    max_front_mps: float = 1.2
    """A box edge running steadily faster than this is not a straw fire's front."""
    max_front_heights_s: float = 0.3
    """The same without a pose, in box heights per second (a flame is about as tall as its front moves
    in 3 s or more)."""
    max_common: float = 0.8
    max_periodic: float = 0.7
    burst_s: float = 1.5
    """Span of ≥ BAND_MIN_FPS frames needed to measure flicker."""
    min_flicker: float = 0.12
    flicker_valid_s: float = 12.0
    """How long a burst's flicker verdict stands for its track (a tower bursts every 10 s)."""
    settle_s: float = 2.0
    """A smoke track first seen sooner than this after the model started was there before it: it cannot be
    seen to rise from its fire, so it does not stand on its own; nor, while it is in view, does any other
    veil (a piece of that old cloud drifting off looks like a new plume)."""
    ghost_ratio: float = 0.5
    """A flame track whose outline (of what changed) has less than this share of the edge energy the
    background has along it is a *ghost*: ground a vehicle stood on when the model learnt it, revealed when
    it drove off (a flame's edge is in the frame, not in the background). It stays one until the frame has
    more than 1/ghost_ratio of the background's edge there."""
    ghost_change: float = 0.15
    """|log| change of B, G or R (exposure removed), and beyond the pixel's noise, that makes a pixel of the
    box one that changed."""
    spot_share: float = 0.75
    """A far point of light must be seen over this share of the time of ``confirm_s`` (a fire burns on; a
    beacon turns, noise comes and goes). One seen less, once judged, is rejected: its pixels are learnt, and
    it is gone ``forget_s`` after it was last seen (it is judged again, on each frame, while it is seen)."""
    spot_stray_px: float = 2.0
    """Full-resolution pixels a far point's centre may stray, typically, from where it mostly is."""
    spot_confidence: float = 0.4
    """A far point judged a fire, alone: listed as a fire event for an operator to see, but below the alert
    threshold (0.5), with ``spot_growth`` more when it grows. Many lights pass every test a point can have (a
    lamp switched on at dusk that the night map has not learnt, a parked car's headlights, a glint off a
    window, a lamp's reflection in water), so a point pages only when corroborated: by another tower whose
    bearing crosses it (``fusion``: 1 − 0.6² = 0.64), by smoke over it (``_corroborated``), or by growing
    into a flame the colour path resolves (a flame track, which takes its place)."""
    spot_growth: float = 0.05
    unsettled_growth: float = 1.2
    """A flame track that was there when the model started (first seen within ``settle_s``: it was not seen to
    appear) and does not grow this much over its recent window, steadily (``_spreads``), nor show flame flicker,
    is listed at most at ``unsettled_cap`` while the noise model is young (``noise_tau_s`` after the start): what
    shimmers then may be noise the model has not learnt yet. Under a low sun ahead sunlit stubble is flame-orange
    and its edges shimmer with the sway; patches of autumn leaves under fast cloud shadows shimmer in colour and
    brightness. A fire's line spreads. It is not vetoed: a model starts afresh on a worker's restart, a view jump
    or a return to a preset, with a fire maybe already burning, which another tower or smoke over it can
    still page, and which pages alone once the noise model is ``noise_tau_s`` old."""
    unsettled_cap: float = 0.45
    """Highest confidence of such a track: listed, below the alert threshold (0.5), as unsettled smoke."""
    clock_step_s: float = 5.0
    """A frame older than the last by more than this is not a late frame but the clock stepped back (an NTP
    correction): the model starts again from it, with a warning. Later frames are dropped as out of order."""
    mover_gap_s: float = 6.0
    """A flame track born within this long of a mover's (a track found ``_rigid``) last sighting, where its
    course leads it by then, continues it: it takes the mover's hits, so its motion is judged over the whole
    path. A rejected mover's pixels are learnt; it falls apart, is forgotten, and what shows of it again (its
    front, the ground it uncovered) would be judged afresh as a still new light."""
    dust_veil: DustParams = field(default_factory=lambda: DustParams(going=False))
    """A flame track whose box and its surroundings (grown by its size each way, at least 8 working pixels)
    changed as a veil of soil's colour does is dust, not flame light (``SceneModel._dust``)."""
    dust_cloud: DustParams = field(default_factory=lambda: DustParams(max_past=1.3, max_miss=0.45, going=False))
    """A mover's verdict stands while the change around its box (grown 3 times its size each way, at least 16
    working pixels) goes towards soil's colour (a looser fit: its dust, and the soil its wheels turn up and
    its body uncovers), not towards flame light or a grey smoke."""
    exposure_step: float = 0.05
    """Change of the land's exposure (log) within ``exposure_step_s`` that is a step: a flame track born in it gets
    no credit for its own life (``Track.stepped``)."""
    exposure_step_s: float = 1.0
    """How long an exposure step takes at most (a camera's auto-exposure settles within about a second; its drift
    over the day, and a tower scene's ±6 % over 17 s, moves the exposure by no more than 0.025 in that time)."""
    reset_shift: float = 12.0
    """Working pixels: a larger jump, or a lost correlation, means the camera moved: start again."""
    ground_light: float = 0.13
    """Log brightness the ground around a flame track (its box grown by its size each way) must have changed by
    since before the track was born for ``SceneModel._lit_with_ground`` to ask whether the track is that change of
    light and no more (a cloud shadow moving off, the exposure drifting). A young fire's own light and smoke change
    its ground too: by up to 0.115 on the tuning fires 7000–7008 (windy 7007 0.10, low sun 7003 and 7004 0.10–0.115),
    where the look-alikes of tuning 8000–8019 that paged had 0.14–0.53."""
    ground_tint: float = 0.25
    """A change of light (a shadow, the exposure) changes the ground's red and all its light (blue + red, log) alike:
    the two changes differ by less than this share of the larger (the look-alikes that paged on 8000–8019: at most
    0.2). A fire's smoke over sunlit stubble turns the ground grey-blue (tuning low-sun fire 0: red +0.24, all the
    light +0.47)."""
    ground_before_s: float = 1.0
    """"Before the track was born" ends this long before its birth: a fire shows for a moment before its blob passes
    the colour rules (tuning night fire 7001: its ignition's frame was taken for its ground's light before it)."""
    ground_contrast: float = 0.03
    """How far (log) the track's contrast against that ground, in red or in all its light, may rise above the most it
    had before the track was born and still be the same patch lit as its ground is: a flame adds light of its own."""


@dataclass(frozen=True)
class Candidate:
    track: int
    cue: str
    """flame or smoke"""
    box: tuple[int, int, int, int]
    """x, y, w, h in full-resolution pixels of the frame as received."""
    confidence: float


@dataclass
class Track:
    id: int
    cue: str
    first_t: float
    hits: deque = field(default_factory=lambda: deque(maxlen=320))
    """(t, box in aligned full-resolution pixels, area), one per frame seen (``history_s`` at 25 fps)."""
    flicker: tuple[float, float] | None = None
    """(t, share) of the last burst analysed."""
    rejected: bool = False
    """Judged, and found not to be fire (its pixels may then become background)."""
    ghost: bool = False
    """Found to be ground a vehicle uncovered. The verdict stands while its pixels are learnt into the
    background (what is left of it shrinks and wanders: neither side's edge then stands out), until the
    frame's edge along its outline clearly outweighs the background's (a fire lit on that ground)."""
    edges: deque = field(default_factory=deque)
    """(t, edge ratio) of the looks at its outline over the last ``confirm_s`` (``SceneModel._ghost``)."""
    mover: bool = False
    """Last judged a vehicle or a walker (``SceneModel._rigid``)."""
    block: int = BLOCK
    """A smoke track's block size (working pixels) when last found (``smoke.FINE``: a narrow veil far away)."""
    stepped: bool = False
    """Born while the camera's exposure stepped (``SceneModel._in_step``): its periodicity is asked over the whole
    ring, not only over its own life (``SceneModel._flame``)."""
    lit: bool = False
    """Found to be a patch lit as the ground around it is (``SceneModel._lit_with_ground``); the verdict stands
    once the ring holds nothing from before its birth."""

    def last_box(self) -> tuple[int, int, int, int]:
        return self.hits[-1][1]

    def recent(self, since: float) -> list[tuple]:
        return [h for h in self.hits if h[0] >= since]


_ids = itertools.count(1)


class SceneModel:
    """What one camera at one preset has seen: background, noise, recent frames, tracks."""

    def __init__(self, width: int, height: int, horizon: float | None, params: VideoParams,
                 pose: geometry.Pose | None = None, nights: NightMap | None = None) -> None:
        self.p, self.pose, self.nights = params, pose, nights
        self.width, self.height = width, height
        self.k = max(1, round(width / WORK_WIDTH))
        self.ww, self.wh = width // self.k, height // self.k
        self.horizon = height * 0.35 if horizon is None else horizon
        self.flame_top = int(min(max(self.horizon + 0.008 * height, 0), height - 8))
        self.aligner = Aligner((self.wh, self.ww))
        far_row = None if pose is None else geometry.range_row(pose, width, height, params.smoke.fine_range_m)
        self.smoke = SmokeModel(params.smoke, self.k, self.horizon, height, far_row)
        self.far_rows = self._far_band(params.spot)
        self.spots = SpotFinder(width, height, self.k, *self.far_rows, params.spot)
        self.noise = NoiseModel((self.wh, self.ww), params.noise_floor)
        self.chroma_noise = NoiseModel((self.wh - self.flame_top // self.k, self.ww), params.chroma_shift)
        self._chroma = np.zeros((self.wh - self.flame_top // self.k, self.ww), np.float32)
        self.t: float | None = None
        self.log_bg: np.ndarray | None = None
        self.slow: deque[tuple[float, np.ndarray]] = deque()
        """(t, aligned blue and red channels) at most 4 a second, over history_s."""
        self.looks: deque[float] = deque()
        """The capture time of every frame over history_s: what a track's hits are a share of."""
        self.burst: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        """(t, aligned red channel, flame-colour mask) over the last burst_s, all frames."""
        self.tracks: list[Track] = []
        self.movers: list[Track] = []
        """Flame tracks last judged movers and forgotten within ``mover_gap_s`` (``_continued``)."""
        self.shift = (0.0, 0.0)
        self._edges_t = 0.0
        self.started = 0.0
        self._sun_cache: tuple[int, bool, tuple[float, float] | None] | None = None
        self._bg_cache: tuple[float, tuple[np.ndarray, ...]] | None = None
        self._small = self._colour = np.zeros((0, 0), np.uint8)
        """The last frame, aligned, at working size, and its flame-colour mask (land rows)."""
        self._gain: np.ndarray | None = None
        """The exposure gain per channel of the last frame over the land (found when first asked)."""
        self._behind = 0.0
        """The land's median log change against the background left after the last frame's learning (``_expose``)."""
        self.exposure: deque[tuple[float, float]] = deque()
        """(t, the land's exposure, log, since the model started) over ``exposure_step_s``."""

    def _far_band(self, spot: SpotParams) -> tuple[float, float]:
        """(top, bottom) rows searched for far points (``hotspot``)."""
        if self.pose is None:
            return self.flame_top, self.horizon + spot.band_share * self.height
        top, bottom = geometry.far_band(self.pose, self.width, self.height, spot.flame_m, spot.max_px)
        return max(top, self.flame_top), bottom

    def far_range_m(self) -> tuple[float, float] | None:
        """(far, near) ground range in metres the far band searches, with a pose: its far end is the mast
        height over tan(tilt error) (115 × the mast at 0.5°), so a low mast does not reach far fires."""
        if self.pose is None:
            return None
        return tuple(geometry.row_range(self.pose, self.width, self.height, row) for row in self.far_rows)

    # -- one frame ---------------------------------------------------------------------------------------

    def stepped_back(self, t: float) -> bool:
        """Whether a frame at ``t`` means the clock stepped back (``clock_step_s``)."""
        return self.t is not None and self.t - t > self.p.clock_step_s

    def process(self, frame: np.ndarray, t: float, when: dt.datetime | None = None) -> list[Candidate]:
        stepped = self.stepped_back(t)
        if self.t is not None and t <= self.t and not stepped:
            return []  # out of order or repeated: nothing to learn from it
        small = cv2.resize(frame, (self.ww, self.wh), interpolation=cv2.INTER_AREA) if self.k > 1 else frame
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        if self.log_bg is None or stepped:
            self._start(small, grey, t)  # (a clock stepped back would otherwise blind it until it caught up)
            return []
        dx, dy, response = self.aligner.shift(grey)
        if max(abs(dx), abs(dy)) > self.p.reset_shift or response < 0.02:
            self._start(small, grey, t)  # the view jumped: the preset moved without telling us
            return []
        self.shift = (dx, dy)
        if abs(dx) >= 0.05 or abs(dy) >= 0.05:
            small = undo_shift(small, dx, dy)
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        dt_s, self.t = t - self.t, t
        log_now = log_brightness(grey)
        behind = self._expose(log_now, t)
        change = local_change(log_now, self.log_bg)
        wtop = self.flame_top // self.k
        colour = flame_mask(small[wtop:], land_means(small[wtop:]), self.p.colour)
        self._small, self._colour, self._gain = small, colour, None
        moving = self._new_light(small, log_now, change, t)
        flames = self._flame_blobs(frame, small, moving, colour)
        smokes = self.smoke.blobs(small, grey, t)
        self._observe("flame", flames, t)
        self._observe("spot", self._far_points(frame, dt_s), t)
        self._observe("smoke", smokes, t)
        self._remember(t, small, colour)
        if self.nights is not None and self._night(when):
            self.nights.observe(grey, when)
        keep = self._keep_mask(t)
        alpha = ema_alpha(dt_s, self.p.bg_tau_s)
        cv2.accumulateWeighted(log_now, self.log_bg, alpha, keep)
        self._behind = (1.0 - alpha) * behind  # (what of it the background has still to learn)
        lowered = self.envelope - self.p.envelope_decay * dt_s
        np.copyto(self.envelope, np.maximum(lowered, log_now), where=keep > 0)
        # a running mean over the model's age at first (a fresh model learns its noise fast), then exponential
        learn = max(ema_alpha(dt_s, self.p.noise_tau_s), dt_s / (t - self.started + dt_s))
        self.noise.update(change, learn, keep)
        self.chroma_noise.update(self._chroma, learn, keep[self.flame_top // self.k:])
        self.smoke.update(small, grey, dt_s, keep)
        self.spots.learn(keep, dt_s)
        if t - self._edges_t >= 1.0:
            self.noise.set_edges(self.log_bg)
            self.aligner.set_reference(cv2.exp(self.log_bg) - 1.0)
            self._edges_t = t
        return self._decide(t, when)

    def _expose(self, log_now: np.ndarray, t: float) -> float:
        """The land's median log change against the background (the camera's exposure as the background has not
        yet learnt it); the exposure's level, as it moved since the last frame, is kept over ``exposure_step_s``
        (``_in_step``)."""
        wtop = self.flame_top // self.k
        behind = float(np.median(log_now[wtop::4, ::4] - self.log_bg[wtop::4, ::4]))
        level = (self.exposure[-1][1] if self.exposure else 0.0) + behind - self._behind
        self.exposure.append((t, level))
        # the newest level from before the window stays: at 1 fps or slower, the frame before is all there is
        while len(self.exposure) > 1 and self.exposure[1][0] <= t - self.p.exposure_step_s:
            self.exposure.popleft()
        return behind

    def _in_step(self) -> bool:
        """Whether the exposure moved by ``exposure_step`` or more within the last ``exposure_step_s``. A flame track
        born then gets no credit for its own life (``Track.stepped``): an exposure step up over bright stubble gives
        birth to small flame tracks (R crosses the colour rules' bounds, the land brightens beyond the upper envelope
        in one frame), and the memory under a track in play, which does not learn, keeps the light of before the
        step, so the step reads as new light in its box for as long as it lives (tuning tractor 7000, +25 % at 19 s:
        asked for periodicity over its own life, (1016, 478) grew from 24 to 216 px and paged at 22.5 s). Asked over
        the whole ring, its step up reads as a line, and it is rejected as before."""
        levels = [level for _, level in self.exposure]
        return bool(levels) and max(levels) - min(levels) >= self.p.exposure_step  # (none: no frame measured yet)

    def _start(self, small: np.ndarray, grey: np.ndarray, t: float) -> None:
        self.log_bg = log_brightness(grey)
        self._behind = 0.0
        self.exposure.clear()
        self.envelope = self.log_bg + self.p.noise_floor
        self.noise = NoiseModel(grey.shape, self.p.noise_floor)
        self.chroma_noise = NoiseModel((grey.shape[0] - self.flame_top // self.k, grey.shape[1]), self.p.chroma_shift)
        self.noise.set_edges(self.log_bg)
        self.aligner.set_reference(grey)
        self._edges_t = t
        self.started = t
        self.smoke.start(small, grey)
        self.spots.mean = None
        self.slow.clear()
        self.looks.clear()
        self.burst.clear()
        self.tracks.clear()
        self.movers.clear()
        self._bg_cache = None
        self.t = t

    def _new_light(self, small: np.ndarray, log_now: np.ndarray, change: np.ndarray, t: float) -> np.ndarray:
        """0/1 mask (land rows) of pixels where flame light may have appeared:

        - the pixel's *chromaticity* (r, g = R, G over R + G + B) moved away from the background's: a cloud
          shadow or an exposure step scales a pixel and leaves it unchanged, a flame on a green or dark
          field or on orange stubble does not (ignored on dark pixels, whose chromaticity is noise); or
        - it is brighter than the background beyond its own noise *and* above its upper envelope (how
          bright it has been lately): a flame adds light, a shadow moving off lit leaves does not.
        """
        wtop = self.flame_top // self.k
        if self._bg_cache is None or t - self._bg_cache[0] >= 1.0:
            self._bg_cache = (t, _chromaticity(self.smoke.colour[wtop:]))
            self.chroma_noise.set_edges(*self._bg_cache[1][:2])
        _, (bg_r, bg_g, _) = self._bg_cache
        r, g, total = _chromaticity(small[wtop:])
        self._chroma = np.abs(r - bg_r) + np.abs(g - bg_g)
        shifted = (self.chroma_noise.moving(self._chroma, self.p.noise_k) > 0) & (total > self.p.chroma_min_sum)
        up = change[wtop:]
        above = log_now[wtop:] - self.envelope[wtop:] > self.p.above_envelope
        brighter = (self.noise.moving(change, self.p.noise_k)[wtop:] > 0) & (up > 0) & above
        return (shifted | brighter).astype(np.uint8)

    def _flame_blobs(self, frame: np.ndarray, small: np.ndarray, moving: np.ndarray, colour: np.ndarray
                     ) -> list[tuple]:
        """Moving flame-coloured blobs: found at working size (Töreyin: colour only where there is motion),
        measured at full resolution inside each blob's box, so a small far fire keeps its pixels.
        ``moving`` and ``colour`` cover the land rows only."""
        wtop = self.flame_top // self.k
        near_motion = cv2.dilate(moving, np.ones((3, 3), np.uint8))
        mask = cv2.dilate(colour & (near_motion * 255), np.ones((3, 3), np.uint8))
        if not mask.any():
            return []
        means = land_means(small[wtop:])
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sx, sy = round(self.shift[0] * self.k), round(self.shift[1] * self.k)
        blobs = []
        for x, y, w, h, _ in sorted(stats[1:].tolist(), key=lambda s: -s[4])[:20]:
            x0, y0 = x * self.k, (y + wtop) * self.k
            fx0, fy0 = max(x0 + sx, 0), max(y0 + sy, 0)  # the same place in the frame as received
            crop = frame[fy0:fy0 + h * self.k, fx0:fx0 + w * self.k]
            fine = flame_mask(crop, means, self.p.colour)
            area = cv2.countNonZero(fine)
            if area < self.p.min_flame_px:
                continue
            bx, by, bw, bh = cv2.boundingRect(fine)
            blobs.append(((fx0 - sx + bx, fy0 - sy + by, bw, bh), area))
        return blobs

    def _far_points(self, frame: np.ndarray, dt_s: float) -> list[tuple]:
        """New bright points in the far band (``hotspot``), except where a flame track already is (judged a
        fire or not: a lamp whose flame track was rejected must not come back as a point)."""
        shift = (self.shift[0] * self.k, self.shift[1] * self.k)
        flames = [tr.last_box() for tr in self.tracks if tr.cue == "flame"]
        return [(box, area) for box, area in self.spots.find(frame, shift, dt_s)
                if not any(_near(box, f) for f in flames)]

    def _observe(self, cue: str, blobs: list[tuple], t: float) -> None:
        """Blobs (box, area) — smoke's (box, area, block size) — joined to the tracks near them, or new tracks."""
        mine = [tr for tr in self.tracks if tr.cue == cue]
        for box, area, *block in blobs:
            track = next((tr for tr in mine if _near(tr.last_box(), box)), None)
            if track is None:
                track = self._continued(box, t) if cue == "flame" else Track(next(_ids), cue, t)
                track.stepped = cue == "flame" and self._in_step()
                self.tracks.append(track)
                mine.append(track)
            if track.hits and track.hits[-1][0] == t:  # two blobs of one fire: one box around both
                _, seen, seen_area = track.hits[-1]
                track.hits[-1] = (t, _union([(t, seen, 0), (t, box, 0)]), seen_area + area)
                track.block = max([track.block, *block])  # (found in coarse blocks too: a coarse veil)
                continue
            track.hits.append((t, box, area))
            if block:  # the block size of the veil this track was found in now, not of another track's near it
                track.block = block[0]
        gone = [tr for tr in self.tracks if tr.hits[-1][0] <= t - self.p.forget_s]
        self.movers = [tr for tr in self.movers + [tr for tr in gone if tr.mover]
                       if tr.hits[-1][0] > t - self.p.mover_gap_s]
        self.tracks = [tr for tr in self.tracks if tr.hits[-1][0] > t - self.p.forget_s]

    def _continued(self, box: tuple[int, int, int, int], t: float) -> Track:
        """A new flame track, or, born where a forgotten mover's course leads it by now (its last box moved on
        at its steady velocity), that mover's continuation: a new track with its hits (``mover_gap_s``). Not
        anywhere on its path: a fire lit behind a passing tractor is judged as its own track."""
        for mover in self.movers:
            recent = mover.recent(t - self.p.history_s)
            ts = np.array([h[0] for h in recent])
            boxes = np.array([h[1] for h in recent], np.float64)
            ahead = boxes[-1].copy()
            if ts[-1] > ts[0]:
                ahead[:2] += [np.polyfit(ts, boxes[:, i], 1)[0] * (t - ts[-1]) for i in (0, 1)]
            if _near(tuple(int(v) for v in ahead), box):
                self.movers.remove(mover)
                return Track(next(_ids), "flame", mover.first_t, deque(mover.hits, maxlen=mover.hits.maxlen))
        return Track(next(_ids), "flame", t)

    def _remember(self, t: float, small: np.ndarray, colour: np.ndarray) -> None:
        if not self.slow or t - self.slow[-1][0] >= 0.24:
            self.slow.append((t, small[:, :, ::2].copy()))  # blue and red: a flame on stubble changes
            # colour more than brightness (it removes blue), a lamp scales both
        while self.slow and self.slow[0][0] < t - self.p.history_s:
            self.slow.popleft()
        self.looks.append(t)
        while self.looks[0] < t - self.p.history_s:
            self.looks.popleft()
        if self.burst and t - self.burst[-1][0] > 1.0 / temporal.BAND_MIN_FPS:
            self.burst.clear()  # a gap: a new burst starts here
        self.burst.append((t, small[:, :, 2].copy(), colour))
        while self.burst and self.burst[0][0] < t - self.p.burst_s - 0.3:
            self.burst.popleft()

    def _keep_mask(self, t: float) -> np.ndarray:
        """Where the background and noise may learn: everywhere but the boxes of tracks that are still
        in play (seen within ``forget_s`` and not rejected; a small fire is missed in some frames).
        A rejected look-alike is learnt as normal; a fire and its smoke never become background."""
        keep = np.full((self.wh, self.ww), 255, np.uint8)
        for track in self.tracks:
            if track.rejected:
                continue  # (tracks not seen for forget_s are already gone)
            x, y, w, h = track.last_box()
            keep[max(y // self.k - 2, 0):(y + h) // self.k + 3, max(x // self.k - 2, 0):(x + w) // self.k + 3] = 0
        return keep

    # -- decisions ------------------------------------------------------------------------------------------

    def _decide(self, t: float, when: dt.datetime | None) -> list[Candidate]:
        found, points, fine = [], set(), []
        bursting = self._bursting(t)
        glint = self._sun(when)[1]
        for track in self.tracks:
            if track.hits[-1][0] != t:
                continue
            if track.cue == "flame":
                if bursting:
                    track.flicker = (t, self._flicker(track.last_box()))
                confidence = self._flame(track, t, when, glint)
            elif track.cue == "spot":
                confidence = self._spot(track, t, when, glint)
                points.add(track.id)
            else:
                settled = not any(tr.cue == "smoke" and tr.first_t - self.started < self.p.settle_s
                                  for tr in self.tracks)
                confidence = self.smoke.confidence(track.recent(t - self.p.smoke.window_s), t - track.first_t,
                                                   settled, track.block)
            if track.cue != "spot":  # (a far point sets its own verdict: one seen too rarely is not a look-alike)
                track.rejected = confidence is None and self._judged(track, t)
            if confidence is not None:
                x, y, w, h = track.last_box()
                sx, sy = round(self.shift[0] * self.k), round(self.shift[1] * self.k)
                cue = "smoke" if track.cue == "smoke" else "flame"  # a far point is a flame too small to see
                candidate = Candidate(track.id, cue, (x + sx, y + sy, w, h), round(confidence, 3))
                # a veil found only in FINE blocks is no detection of its own (horizon texture makes such veils:
                # listed, they crossed other towers' bearings elsewhere, session 11); it only backs a point at its foot
                (fine if track.cue == "smoke" and track.block < BLOCK else found).append(candidate)
        return _corroborated(found, points, BLOCK * self.k, fine)

    def _sun(self, when: dt.datetime | None) -> tuple[bool, tuple[float, float] | None]:
        """(night, glint band) from the pose and time; the sun moves little in a minute, so cached."""
        if self.pose is None or when is None:
            return False, None
        minute = int(when.timestamp() // 60)
        if self._sun_cache is None or self._sun_cache[0] != minute:
            self._sun_cache = (minute, sun.is_night(self.pose.lat, self.pose.lon, when),
                               sun.glint_columns(self.pose, self.width, when))
        return self._sun_cache[1:]

    def _night(self, when: dt.datetime | None) -> bool:
        return self._sun(when)[0]

    def _there_before(self, track: Track) -> bool:
        """Whether the track was there when the model started: first seen within ``settle_s`` of it."""
        return track.first_t - self.started < self.p.settle_s

    def _judged(self, track: Track, t: float) -> bool:
        if track.cue == "smoke":
            return t - track.first_t >= self.p.smoke.confirm_s
        return t - track.first_t >= self.p.confirm_s and self._looked_enough(t)

    def _looked_enough(self, t: float) -> bool:
        """Whether the camera looked over ``looked_share`` of the last ``confirm_s`` seconds."""
        return temporal.looked_share(self.looks, t - self.p.confirm_s, t) >= self.p.looked_share

    def _seen_enough(self, track: Track, t: float, share: float | None = None) -> bool:
        """Whether the track is old enough to judge (``confirm_s``), the camera looked over enough of that time
        and the track was seen over ``share`` of it."""
        share = self.p.hit_share if share is None else share
        return self._judged(track, t) and self._seen_share(track, t) >= share

    def _seen_share(self, track: Track, t: float) -> float:
        """The share of the last ``confirm_s`` seconds the track was seen in."""
        return temporal.time_share((h[0] for h in track.hits), self.looks, t - self.p.confirm_s)

    def _flame(self, track: Track, t: float, when: dt.datetime | None, glint: tuple[float, float] | None
               ) -> float | None:
        if not self._seen_enough(track, t):
            return None
        recent = track.recent(t - self.p.history_s)
        growth = temporal.growth(recent)
        # a machine raising dust keeps its mover verdict while it drives in its dust: its box jumps about with
        # the dust at its foot, and a fit over those jumps is no steady course (nor, often, one too fast)
        track.mover = self._rigid(recent) or (track.mover and self._dust(track, 3.0, 16, self.p.dust_cloud))
        if track.mover:
            return None  # a vehicle or a walker
        if self._ghost(track, t):
            return None  # ground a vehicle stood on when the model started: the background was the odd one
        if self._dust(track, 1.0, 8, self.p.dust_veil):
            return None  # a veil of soil's colour, lit like the soil: a machine's dust, not flame light
        if not self._under_smoke(track) and self._lit_with_ground(track):
            return None  # its ground's light changed (a cloud shadow moved off) and it with it: no light of its own
        box = _union(recent)
        common, periodic = self._light_like(box, None if track.stepped else track.first_t)  # (since: its own life)
        if common > self.p.max_common or periodic > self.p.max_periodic:
            return None  # a lamp, a beacon, a cloud shadow: the whole blob brightens and dims together
        if self.nights is not None and self._night(when) and self.nights.known(tuple(v // self.k for v in box)):
            return None  # a light that is there every night
        flicker = None
        if track.flicker is not None and t - track.flicker[0] <= self.p.flicker_valid_s:
            flicker = track.flicker[1]
            if flicker < self.p.min_flicker:
                return None  # the camera could see flame flicker here, and there was none
        x, _, w, _ = track.last_box()  # where it is now: what it covered while it grew is no matter here
        if flicker is None and sun.under_glint(glint, x, x + w):
            return None  # under a low sun its glint shimmers and swells; only flame flicker tells a fire there
        confidence = 0.6 + 0.1 * min(1.0, max(0.0, growth - 1.0)) + 0.15 * (1 - common)
        if flicker is not None:
            confidence += 0.2 * min(1.0, flicker / 0.4)
        if flicker is None and self._unsettled(track, t) and not _spreads(recent, growth, self.p.unsettled_growth):
            return min(self.p.unsettled_cap, confidence)  # stubble or leaves shimmering, or a fire burning already
        return min(0.97, confidence)

    def _dust(self, track: Track, grow: float, margin: int, params: DustParams) -> bool:
        """Whether what changed in and around the track's box (grown ``grow`` times its size each way, at least
        ``margin`` working pixels) is a layer of dust (``dust.around_is_dust``)."""
        if self._gain is None:
            land = slice(self.flame_top // self.k, None)
            self._gain = ((self._small[land].reshape(-1, 3).mean(axis=0) + 1)
                          / (self.smoke.colour[land].reshape(-1, 3).mean(axis=0) + 1)).astype(np.float32)
        return dust.around_is_dust(self._small, self.smoke.colour, self._gain,
                                   tuple(v // self.k for v in track.last_box()), grow, margin, params)

    def _under_smoke(self, track: Track) -> bool:
        """Whether a smoke track in play touches the flame track's box: the plume over a fire veils and lights its
        ground too, beyond the smoke track's box (held-out low-sun fire 7029, session 18: its flame, under its
        plume, was judged lit with its ground at 17.0 s and never paged)."""
        box = track.last_box()
        return any(other.cue == "smoke" and not other.rejected and _near(other.last_box(), box)
                   for other in self.tracks)

    def _lit_with_ground(self, track: Track) -> bool:
        """Whether the track is only its ground's change of light: the ground around its box (grown by its size each
        way) brightened or dimmed by ``ground_light`` since before the track was born (``ground_before_s`` before its
        birth), and the box's contrast against that ground (log: its brightest tenth against the ground's median, in
        red and in blue + red) has not risen by ``ground_contrast`` above the most it was then. Under a track in play
        the background does not learn (``_keep_mask``), so a patch the background learnt in a cloud's shadow, or at
        another exposure, reads as new light for as long as its track lives once the shadow moves off: autumn leaves,
        stubble under a low sun, flame-coloured themselves. A flame's light is its own: its tongues' contrast rises (a
        lit patch whose red clips, or whose dark blue sits on the sensor's floor, *falls* against a brightening
        ground: no light of its own either). Asked on the slow ring's samples (aligned, ``_remember``); with none from
        before the birth left, the verdict stands."""
        times = np.array([ts for ts, _ in self.slow])
        before, now = times < track.first_t - self.p.ground_before_s, times >= times[-1] - 1.0
        if before.sum() < 2 or now.all():
            return track.lit
        x, y, w, h = (v // self.k for v in track.last_box())
        grow = max(w, h, 2)
        y0, x0 = max(y - grow, self.flame_top // self.k), max(x - grow, 0)
        y1, x1 = y + h + grow, x + w + grow
        step = max(1, -(-max(y1 - y0, x1 - x0) // GROUND_PX))  # (a large box: every step-th pixel says as much)
        inner = np.zeros((y1 - y0, x1 - x0), np.uint8)
        inner[y - y0:y - y0 + max(h, 1), x - x0:x - x0 + max(w, 1)] = 1
        around = cv2.dilate(inner, np.ones((3, 3), np.uint8)) == 0
        for other in self.tracks:  # a fire's light and smoke are no change of its ground's light
            if other is not track and not other.rejected:
                ox, oy, ow, oh = (v // self.k for v in other.last_box())
                around[max(oy - y0, 0):max(oy + oh + 1 - y0, 0), max(ox - x0, 0):max(ox + ow + 1 - x0, 0)] = False
        samples = np.stack([s[y0:y1:step, x0:x1:step] for _, s in self.slow])  # (samples, rows, columns, blue and red)
        inner = inner[::step, ::step][:samples.shape[1], :samples.shape[2]] > 0
        around = around[::step, ::step][:samples.shape[1], :samples.shape[2]]
        if not inner.any() or around.sum() < 8:
            return track.lit
        red = samples[..., 1].astype(np.float32)
        light = red + samples[..., 0]  # (red, and all the light; order statistics first, then the log: the same)
        ground = np.log1p(np.stack([np.percentile(v[:, around], 50, axis=1, method="lower") for v in (red, light)], 1))
        tongues = np.log1p(np.stack([np.percentile(v[:, inner], 90, axis=1, method="lower") for v in (red, light)], 1))
        contrast = tongues - ground  # (samples, red and blue + red): a flame's tongues are the box's brightest tenth
        change = np.median(ground[now], axis=0) - np.median(ground[before], axis=0)  # (red, all the light)
        # a change of light scales red and all the light alike; smoke over sunlit stubble turns the ground grey-blue
        alike = abs(change[0] - change[1]) < self.p.ground_tint * np.abs(change).max()
        lit = alike and np.abs(change).max() >= self.p.ground_light
        # its own light: red, or all its light, risen against its ground beyond the most it had before its birth
        own = (np.median(contrast[now], axis=0) - contrast[before].max(axis=0)).max()
        track.lit = bool(lit and own < self.p.ground_contrast)
        return track.lit

    def _unsettled(self, track: Track, t: float) -> bool:
        """A track there at the model's start, and a noise model still young."""
        return self._there_before(track) and t - self.started < self.p.noise_tau_s

    def _ghost(self, track: Track, t: float) -> bool:
        """Whether the track is a ghost: it becomes one on one look (its outline's edge under ``ghost_ratio``
        of the background's) and stays one until the frame's edge has outweighed the background's by
        1/ghost_ratio over most (``hit_share``) of the last ``confirm_s`` seconds: one frame's edge (a
        vehicle passing over the ghost, a JPEG burst) does not lift it."""
        ratio = self._edge_ratio(track.last_box())
        if ratio is None:
            return track.ghost
        track.edges.append((t, ratio))
        since = t - self.p.confirm_s
        while track.edges[0][0] <= since:
            track.edges.popleft()
        outlined = [ts for ts, r in track.edges if r > 1 / self.p.ghost_ratio]
        lifted = temporal.time_share(outlined, self.looks, since) >= self.p.hit_share
        track.ghost = ratio < self.p.ghost_ratio or (track.ghost and not lifted)
        return track.ghost

    def _spot(self, track: Track, t: float, when: dt.datetime | None, glint: tuple[float, float] | None
              ) -> float | None:
        """A far point of light (``hotspot``): a fire when it stays where it appeared, is there nearly all the
        time, does not blink with a period, is not a known night light and is not under a low sun's glint."""
        if not self._judged(track, t):
            return None
        if self._seen_share(track, t) < self.p.spot_share:
            track.rejected = True  # it comes and goes (a twinkle, a glint, noise): learnt, forgotten once unseen
            return None
        recent = track.recent(t - self.p.history_s)
        box = _union(recent)
        x, _, w, _ = track.last_box()
        track.rejected = (self._rigid(recent)  # a headlight, a walker's lamp: it moves
                          or self._wanders(recent)
                          # a beacon, asked over the point's own life (before it, a fire's series holds the
                          # ground it was lit on: a step, read as a period); a point's lead over its ring is
                          # the same whatever the exposure, so no step gives birth to one (cf. ``Track.stepped``).
                          # So a beacon switched on in view is told only once 9.5 s old (MIN_PERIOD_S): listed
                          # (0.4) until then, if seen often enough
                          or self._light_like(box, track.first_t)[1] > self.p.max_periodic
                          or (self.nights is not None and self._night(when)
                              and self.nights.known(tuple(v // self.k for v in box)))
                          or sun.under_glint(glint, x, x + w))  # glints on wet stubble are bright points too
        if track.rejected:
            return None
        return self.p.spot_confidence + self.p.spot_growth * min(1.0, max(0.0, temporal.growth(recent) - 1.0))

    def _wanders(self, recent: list[tuple]) -> bool:
        """A point whose centre strays by more than ``spot_stray_px`` from where it mostly is: not one
        source fixed on the ground (noise peaks of a textured field picked up one after another)."""
        centres = np.array([_centre(b) for _, b, _ in recent])
        stray = np.abs(centres - np.median(centres, axis=0)).max(axis=1)
        return float(np.median(stray)) > self.p.spot_stray_px

    def _rigid(self, recent: list[tuple]) -> bool:
        """Something driving or walking: the box's centre moves steadily (a significant linear trend, not
        a fire's wandering) while its width does not keep up. A fire line spreading one way moves its
        centre at half the speed its width grows; a vehicle, even one half hidden, moves without growing."""
        if len(recent) < 4:
            return False
        ts = np.array([h[0] for h in recent])
        if ts[-1] - ts[0] < 1.0:
            return False
        boxes = np.array([h[1] for h in recent], np.float64)
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        widening, _ = _trend(ts, boxes[:, 2])
        if boxes[:, 0].min() <= 2 or (boxes[:, 0] + boxes[:, 2]).max() >= self.width - 2:
            # cut by the frame's edge: what shows of a vehicle entering or leaving grows or shrinks, so
            # follow its inner edge instead of its centre
            inner = boxes[:, 0] + boxes[:, 2] if boxes[:, 0].min() <= 2 else boxes[:, 0]
            centres[:, 0], widening = inner, 0.0
        if self._fast_edge(ts, boxes):
            return True
        (vx, sx), (vy, sy) = (_trend(ts, centres[:, i]) for i in (0, 1))
        speed_px = float(np.hypot(vx, vy))
        moved = speed_px * (ts[-1] - ts[0])
        if moved < 3.0 * max(float(np.hypot(sx, sy)), 0.5) or abs(widening) > 0.7 * speed_px:
            return False
        x, y, w, h = recent[-1][1]
        if self.pose is not None:
            rng = geometry.ground_range(self.pose, self.width, self.height, x + w / 2, y + h)
            if rng is not None:
                return speed_px * rng / geometry.focal_px(self.pose, self.width) > self.p.max_speed_mps
        diag = float(np.mean([np.hypot(b[2], b[3]) for _, b, _ in recent]))
        return speed_px / max(diag, 1.0) > self.p.max_speed_diag_s

    def _fast_edge(self, ts: np.ndarray, boxes: np.ndarray) -> bool:
        """An edge of the box running steadily faster than a straw fire's front spreads (``max_front_mps``,
        or ``max_front_heights_s`` flame heights a second without a pose): a vehicle or a walker coming out
        of where it stood when the model started looks like a fire growing one way, but too fast."""
        h = float(np.median(boxes[:, 3]))
        x, y, w, _ = boxes[-1]
        scale = 1.0 / max(h, 1.0)
        limit = self.p.max_front_heights_s
        if self.pose is not None:
            rng = geometry.ground_range(self.pose, self.width, self.height, x + w / 2, y + h)
            if rng is not None:
                scale, limit = rng / geometry.focal_px(self.pose, self.width), self.p.max_front_mps
        for edge in (boxes[:, 0], boxes[:, 0] + boxes[:, 2]):
            v, spread = _trend(ts, edge)
            if abs(v) * (ts[-1] - ts[0]) >= 3.0 * max(spread, 0.5) and abs(v) * scale > limit:
                return True
        return False

    def _edge_ratio(self, box: tuple[int, int, int, int]) -> float | None:
        """The frame's colour-edge energy over the background's along the outline of what changed in the box
        (None when nothing flame-coloured changed). Under ``ghost_ratio`` the box is a *ghost*: ground a
        vehicle stood on when the model learnt the background, revealed since it drove off: the background
        has the vehicle's edge and the frame has none (the ground joins the field around it); a flame is the
        other way round, its edge is in the frame and the field behind it had none there. Colour edges of
        log colour, so exposure does not count; an edge of the field itself is in both and weighs on neither
        side."""
        x, y, w, h = (v // self.k for v in box)
        y0, x0 = max(y - 2, 0), max(x - 2, 0)
        part = (slice(y0, y + h + 2), slice(x0, x + w + 2))
        now = np.log1p(self._small[part].astype(np.float32))
        bg = np.log1p(self.smoke.colour[part])
        gain = np.median(now.reshape(-1, 3), axis=0) - np.median(bg.reshape(-1, 3), axis=0)
        noise = np.sqrt(self.noise.var[part] + self.noise.edge[part]) * self.p.noise_k  # sway on field edges
        wtop = self.flame_top // self.k
        coloured = _rows(self._colour, y0 - wtop, y0 - wtop + now.shape[0])[:, part[1]] > 0
        changed = (coloured & (np.abs(now - bg - gain).max(axis=2) > np.maximum(noise, self.p.ghost_change))
                   ).astype(np.uint8)
        if changed.sum() < 2:
            return None  # (what changed is not the flame-coloured part: the vehicle itself, beside it)
        square = np.ones((3, 3), np.uint8)
        outline = (cv2.dilate(changed, square) - cv2.erode(changed, square)) > 0
        return float(_edges(now)[outline].mean() / max(float(_edges(bg)[outline].mean()), 1e-6))

    def _light_like(self, box: tuple[int, int, int, int], since: float | None = None) -> tuple[float, float]:
        """(common-mode share, periodicity) of the blob's brightness over the slow ring; periodicity only over the
        ring's samples from ``since`` on (a flame track's birth: before it, a fire's series holds the ground it was
        lit on, and the one step up reads as a line, a "period", at 2 fps as at 25 fps)."""
        if len(self.slow) < 6:
            return 1.0, 0.0
        x, y, w, h = (v // self.k for v in box)
        y0, x0 = max(y - 1, 0), max(x - 1, 0)
        stack = np.log1p(np.stack([s[y0:y + h + 2, x0:x + w + 2] for _, s in self.slow]).astype(np.float32))
        common, used = temporal.common_mode(stack)
        if used < 2:
            return 1.0, 0.0
        series = stack[..., 1].reshape(stack.shape[0], -1).max(axis=1)  # the brightest red
        times = np.array([ts for ts, _ in self.slow])
        mine = times >= (times[0] if since is None else since)
        return common, temporal.periodicity_in_time(times[mine], series[mine])

    def _bursting(self, t: float) -> bool:
        return len(self.burst) >= 8 and self.burst[-1][0] == t and t - self.burst[0][0] >= self.p.burst_s

    def _flicker(self, box: tuple[int, int, int, int]) -> float:
        x, y, w, h = (v // self.k for v in box)
        y0, x0 = max(y - 3, 0), max(x - 3, 0)
        y1, x1 = y + h + 4, x + w + 4
        wtop = self.flame_top // self.k
        red = np.stack([r[y0:y1, x0:x1] for _, r, _ in self.burst])
        hot = np.stack([_rows(c, y0 - wtop, y1 - wtop)[:, x0:x1] > 0 for *_, c in self.burst])
        if hot.shape[1:] != red.shape[1:]:
            return 0.0
        return temporal.flame_band_energy(red, hot)


class VideoDetector:
    """Scene models by (camera, preset); a new preset or frame size starts a new model. Night maps are
    kept per (camera, preset) across restarts of the scene model."""

    def __init__(self, params: VideoParams = VideoParams()) -> None:
        self.params = params
        self.scenes: dict[tuple[str, int | None], SceneModel] = {}
        self.nights: dict[tuple[str, int | None], NightMap] = {}
        self._clock: dict[str, float] = {}

    def process(self, camera: str, preset: int | None, frame: np.ndarray, horizon: float | None,
                at: dt.datetime | None = None, pose: geometry.Pose | None = None) -> list[Candidate]:
        """One frame; ``at`` is its capture time (aware). Without one, frames are taken to come at the
        towers' default 2 fps."""
        t = at.timestamp() if at is not None else self._clock.get(camera, 0.0) + DEFAULT_GAP_S
        self._clock[camera] = t
        key = (camera, preset)
        scene = self.scenes.get(key)
        h, w = frame.shape[:2]
        if scene is None or (scene.width, scene.height) != (w, h):
            k = max(1, round(w / WORK_WIDTH))
            nights = None
            if pose is not None:
                nights = self.nights.get(key)
                if nights is None or nights.grid != (max(1, (w // k) // 16), max(1, (h // k) // 16)):
                    nights = self.nights[key] = NightMap((h // k, w // k), pose.lon)
            scene = self.scenes[key] = SceneModel(w, h, horizon, self.params, pose, nights)
            _log_far_band(camera, preset, scene)
            for other in [k for k in self.scenes if k[0] == camera and k != key]:
                del self.scenes[other]  # the camera moved on: its other presets' models are stale
        elif scene.stepped_back(t):
            log.warning("camera %s preset %s: capture time stepped back %.1f s; its scene model starts again",
                        camera, preset, scene.t - t)
        return scene.process(frame, t, at)


# -- helpers ------------------------------------------------------------------------------------------------

FAR_FIRES_M = 4000.0
"""Far fires are looked for out to about this range (fire-detection.md: 2.5–4 km)."""


def _log_far_band(camera: str, preset: int | None, scene: SceneModel) -> None:
    far_near = scene.far_range_m()
    if far_near is None:
        return
    far, near = far_near
    if far < FAR_FIRES_M:
        log.warning("camera %s preset %s: far points searched from %.0f m to only %.0f m (mast %.0f m, tilt "
                    "error %.2f°); fires farther out are not seen as points", camera, preset, near, far,
                    scene.pose.mast_height_m, scene.pose.tilt_error_deg)
    else:
        log.info("camera %s preset %s: far points searched from %.0f m to %.0f m", camera, preset, near, far)


GROUND_PX = 32
"""Working pixels a side of the region ``SceneModel._lit_with_ground`` reads, at most: a larger box and its ground are
read every so many pixels (a box over much of the frame cost 0.2 s a frame read whole)."""

SPREAD_HITS = 4
"""Sightings a steady rise is fitted on at the least: through two or three a line fits almost exactly, and a box
flipping small → large reads as a rise (a young track, or 1 fps)."""


def _spreads(recent: list[tuple], growth: float, least: float) -> bool:
    """Whether a track grows as a fire's line spreads: by ``least`` (``temporal.growth``: the last third of its
    time over the first) *and* steadily, the straight-line trend of its area rising over its hits by more than
    the area's scatter about that line. A sunlit strip shimmering with the mast's sway flips between two sizes,
    and at 2 fps the medians of the two or three frames of a third read that as growth (tuning low sun 7008:
    1.45 at 5 s, its area's trend falling: it paged)."""
    if growth < least or len(recent) < SPREAD_HITS:
        return False
    ts = np.array([h[0] for h in recent])
    rise, scatter = _trend(ts, np.array([h[2] for h in recent], np.float64))
    return rise * (ts[-1] - ts[0]) > scatter


def _trend(ts: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(slope per second, residual standard deviation) of a straight-line fit."""
    slope, intercept = np.polyfit(ts, values, 1)
    return float(slope), float(np.std(values - (slope * ts + intercept)))


def _chromaticity(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r, g, R + G + B) of a BGR image: colour without brightness."""
    b, g, r = cv2.split(bgr.astype(np.float32))
    total = b + g + r
    inv = 1.0 / np.maximum(total, 1.0)
    return r * inv, g * inv, total


def _edges(image: np.ndarray) -> np.ndarray:
    """Colour edge strength: the summed squared Sobel gradients of the channels."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    return (gx * gx + gy * gy).sum(axis=2)


def _rows(mask: np.ndarray, top: int, bottom: int) -> np.ndarray:
    """Rows top..bottom of a mask that starts at some row of the frame, zero-padded where it has none."""
    out = np.zeros((bottom - top, mask.shape[1]), mask.dtype)
    a, b = max(top, 0), min(bottom, mask.shape[0])
    if b > a:
        out[a - top:b - top] = mask[a:b]
    return out


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes that overlap once each is grown by half its size."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    gx, gy = max(aw, bw) / 2 + 2, max(ah, bh) / 2 + 2
    return ax - gx < bx + bw and bx - gx < ax + aw and ay - gy < by + bh and by - gy < ay + ah


def _corroborated(found: list[Candidate], points: set[int], slack: int = 0, fine: list[Candidate] | None = None
                  ) -> list[Candidate]:
    """A far point of light under a plume this camera sees: two signs of one fire (its light, its smoke)
    that look-alikes do not give together, so they add up as independent witnesses, 1 − Π(1 − c). ``slack``:
    frame pixels a point may lie below a plume's base (a smoke block: the base is on the block grid, and at
    a far fire's foot its own light, bright and not grey, keeps that block from reading as veiled). ``fine``:
    veils found only in FINE blocks, which are not candidates themselves and only back a point at their foot."""
    plumes = [c for c in found if c.cue == "smoke"] + (fine or [])
    if not points or not plumes:
        return found
    out = []
    for c in found:
        over = [p.confidence for p in plumes if c.track in points and _under(c.box, p.box, slack)]
        if over:
            c = replace(c, confidence=round(1 - (1 - c.confidence) * (1 - max(over)), 3))
        out.append(c)
    return out


def _under(point: tuple[int, int, int, int], plume: tuple[int, int, int, int], slack: int = 0) -> bool:
    """A point at a plume's foot: within its columns (grown by a quarter of its width each side: smoke
    leans with the wind) and between its top and a quarter of its height (at least ``slack``) below its base."""
    x, y = _centre(point)
    px, py, pw, ph = plume
    return px - pw / 4 <= x <= px + pw * 5 / 4 and py <= y <= py + ph + max(ph / 4, slack)


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _union(recent: list[tuple]) -> tuple[int, int, int, int]:
    x0 = min(b[0] for _, b, _ in recent)
    y0 = min(b[1] for _, b, _ in recent)
    x1 = max(b[0] + b[2] for _, b, _ in recent)
    y1 = max(b[1] + b[3] for _, b, _ in recent)
    return x0, y0, x1 - x0, y1 - y0
