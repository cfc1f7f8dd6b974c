"""What a candidate's brightness does over time: flame flicker, periodic lights, common-mode changes.

- ``flame_band_energy`` (Töreyin et al. 2006, fire-detection.md §1.3): the red channel of each pixel
  through the half-band high-pass ``{−1/4, 1/2, −1/4}``; at 10–25 fps that band (fs/4–fs/2, i.e.
  2.5–12.5 Hz) is where flames flicker. Measured as *energy*, on the blob's *boundary* pixels (those
  flame-coloured in some frames and not in others), against the same energy in the ring around the blob;
  the per-pixel median over time keeps a single passing edge (one spike) from counting.
- ``periodicity``: share of the spectral power of the detrended, on/off (above or below the median)
  brightness in its strongest line; a rotating beacon or a lamp beating with the mains is one line, a
  flame is broadband.
- ``common_mode``: how much successive changes of the blob repeat one spatial pattern; a lamp dimming,
  a beacon turning or a cloud shadow changes every pixel of the blob together, a flame's tongues each go
  their own way.
- ``time_share``: the share of a span of *time* something was seen in, the same at 1 and at 25 fps and
  over a tower's irregular bursts (persistence is asked in seconds, never in frames); ``looked_share``: how
  much of that span the camera was looking at all (a verdict is not given on one look after a gap).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

SLOT_S = 0.25
"""Time slot of ``time_share``: at 4 fps and below each frame has its own; above, a slot's frames share it."""

MIN_PERIOD_SAMPLES = 20
MIN_PERIOD_S = 9.5
"""A line is told from a step (a light switched on, a fire lit) only over this long: 20 samples at 2 fps."""
MAX_GAP_S = 1.5
"""A gap in the samples longer than this (between a tower's bursts, an outage) ends a stretch a period is
looked for in: 1 fps, with some jitter, is the slowest rate a camera sends."""
BAND_MIN_FPS = 9.5
"""Below this the high-passed band lies under 2.4 Hz: flicker cannot be told from slow change."""


def flame_band_energy(red: np.ndarray, hot: np.ndarray, noise_floor: float = 4.0) -> float:
    """Share of boundary pixels flickering in the flame band. ``red``: (T, h, w) uint8 red channel of an
    aligned burst around the blob; ``hot``: (T, h, w) bool, flame-coloured."""
    if red.shape[0] < 8:
        return 0.0
    x = red.astype(np.float32)
    d = 0.5 * x[1:-1] - 0.25 * (x[:-2] + x[2:])
    energy = np.median(d * d, axis=0)
    share = hot.mean(axis=0)
    boundary = (share > 0.05) & (share < 0.95)
    if boundary.sum() < 3:
        return 0.0
    outside = share == 0
    ref = float(np.median(energy[outside])) if outside.sum() >= 8 else 0.0
    limit = max(9.0 * ref, noise_floor * noise_floor)
    return float((energy[boundary] > limit).mean())


def periodicity(series: np.ndarray) -> float:
    """Peak share of the power spectrum (DC and linear trend removed) of an evenly sampled series."""
    n = series.size
    if n < MIN_PERIOD_SAMPLES:
        return 0.0  # too few bins: noise alone puts a third of the power near some peak
    t = np.arange(n, dtype=np.float64)
    y = series.astype(np.float64) - np.polyval(np.polyfit(t, series, 1), t)
    # on/off against the median: a beacon's short bright pulses become a square wave whose power sits in
    # its fundamental, instead of spreading over harmonics folded by a low frame rate
    y = np.where(y > np.median(y), 1.0, -1.0)
    y -= y.mean()
    power = np.abs(np.fft.rfft(y * np.hanning(n)))[1:] ** 2
    total = float(power.sum())
    if total <= 1e-9:
        return 0.0
    # a line falls between bins: count the peak with its neighbours
    i = int(power.argmax())
    return float(power[max(0, i - 1):i + 2].sum() / total)


def common_mode(stack: np.ndarray, min_change: float = 0.05) -> tuple[float, int]:
    """(median |cosine| between successive change patterns, pairs used) of a (T, h, w) log-brightness
    stack. A lamp dimming, a beacon turning or a cloud shadow passing changes the blob by one fixed
    pattern scaled up and down (cosine near 1); flames change different pixels each time, and a fire
    that lights up or spreads changes new pixels at its front."""
    if stack.shape[0] < 4:
        return 1.0, 0
    x = stack.reshape(stack.shape[0], -1).astype(np.float32)
    x = x[:, np.ptp(x, axis=0) > 2 * min_change]  # the pixels that change at all: a small fire in its box
    if x.shape[1] < 3:
        return 1.0, 0
    d = np.diff(x, axis=0)
    norms = np.linalg.norm(d, axis=1)
    strong = norms > min_change * np.sqrt(d.shape[1])
    pairs = strong[1:] & strong[:-1]
    if not pairs.any():
        return 1.0, 0
    cos = np.abs((d[1:] * d[:-1]).sum(axis=1)) / np.maximum(norms[1:] * norms[:-1], 1e-9)
    return float(np.median(cos[pairs])), int(pairs.sum())


def time_share(seen: Iterable[float], looked: Iterable[float], since: float, slot_s: float = SLOT_S) -> float:
    """Share of the time from ``since`` on that something was seen. ``looked``: the capture times of the
    frames (the camera looked), ``seen``: those in which it was there. Time is cut into ``slot_s`` slots;
    every slot the camera looked in weighs the same, as the share of its frames that saw the thing, so
    a 10 fps burst counts for its two seconds and not for its twenty frames, and a slot without frames (the
    gap between bursts, between two frames at 1 fps) counts for nothing."""
    looks = Counter(math.floor(ts / slot_s) for ts in looked if ts >= since)
    if not looks:
        return 0.0
    hits = Counter(math.floor(ts / slot_s) for ts in seen if ts >= since)
    return sum(min(hits[slot], n) / n for slot, n in looks.items()) / len(looks)


def growth(hits: Sequence[tuple]) -> float:
    """How much a track grew over its ``hits`` ((t, box, area), in time order): the median area of the last
    third of their *time span* over that of the first third. Thirds of the time, not of the frames: a burst
    at one end would otherwise fill that end's third with its own frames."""
    t0, t1 = hits[0][0], hits[-1][0]
    third = (t1 - t0) / 3
    first = [a for t, _, a in hits if t <= t0 + third]
    last = [a for t, _, a in hits if t >= t1 - third]
    return float(np.median(last) / max(float(np.median(first)), 1.0))


def looked_share(looked: Iterable[float], since: float, until: float, max_gap_s: float = MAX_GAP_S) -> float:
    """Share of the time from ``since`` to ``until`` the camera was looking: each frame covers the time back to
    the one before it when that gap is at most ``max_gap_s`` (1 fps is looking all the time; the 8 s between a
    tower's bursts is not). ``looked``: capture times, in order."""
    if until <= since:
        return 0.0
    covered, before = 0.0, None
    for ts in looked:
        if before is not None and ts > since and ts - before <= max_gap_s:
            covered += min(ts, until) - max(before, since)
        before = ts
    return min(1.0, max(0.0, covered) / (until - since))


def periodicity_in_time(times: np.ndarray, series: np.ndarray) -> float:
    """``periodicity`` of a series sampled at the given times, over its longest stretch without a gap of
    more than ``MAX_GAP_S`` (a time before the one ahead of it also breaks it; a repeated one counts once):
    none when that stretch is shorter than ``MIN_PERIOD_S`` seconds, whatever the frame rate. Bridging a
    tower's 8 s between bursts with a straight line would make that line the strongest "period" of any
    series. Uneven sampling within the stretch (2 fps frames with a burst among them) is resampled,
    linearly, at its median gap: a spectrum needs even sampling."""
    times, series = np.asarray(times, np.float64), np.asarray(series, np.float64)
    again = np.concatenate(([False], np.diff(times) == 0))  # a capture time repeated: its first sample stands
    times, series = times[~again], series[~again]
    if times.size < 2:
        return 0.0
    gaps = np.diff(times)
    cuts = np.concatenate(([0], np.flatnonzero((gaps > MAX_GAP_S) | (gaps < 0)) + 1, [times.size]))
    a, b = max(itertools.pairwise(cuts), key=lambda ab: times[ab[1] - 1] - times[ab[0]])
    times, series = times[a:b], series[a:b]
    if times[-1] - times[0] < MIN_PERIOD_S:
        return 0.0
    step = float(np.median(np.diff(times)))
    grid = np.arange(times[0], times[-1] + step / 2, step)
    return periodicity(np.interp(grid, times, series))
