"""Dust: what a harvester (or a lorry on a dirt road) raises, told from a fire's smoke by what it is.

Dust is soil lifted at ground level by a moving source. Two things an observer on a tower goes by:

- **its colour**: it is the soil's own tan or ochre, lit like the soil; straw smoke is a neutral grey,
  white or blue-grey. A veil's colour is not the colour the pixels show (that is the veil mixed with
  what lies behind it, and a brown veil over a blue sky can look grey), but the colour X of the layer
  itself: a veil of opacity a turns a background b into (1 − a)·b + a·X, so every veiled pixel moves
  from its background *along the line towards X*. Where the veil lies over different backgrounds (sky,
  green field, bare soil) those lines cross at X (``layer_colour``: their least-squares crossing).
  Dust's X is warm and saturated; smoke's is grey (``is_dust_colour``).
- **its flow**: its source travels. A straw fire's smoke rises from a line fixed on the ground and its
  flame track keeps its place (its box widens as the line spreads); a harvester's box travels with the
  machine, and jumps about with the dust at its foot and the soil it uncovers, so a straight-line fit of
  its course loses significance now and then. A flame track once judged a rigid mover keeps that verdict
  while what changes around it goes towards soil's colour (``around_is_dust`` with a looser fit,
  ``video.VideoParams.dust_cloud``): its dust and its wake, not flame light (bright, deep orange) nor a
  fire's grey smoke.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DustParams:
    min_change: float = 12.0
    """Colour change (grey levels, Euclidean over B, G, R) a pixel needs to tell the line it moved along."""
    max_pixels: int = 600
    """At most this many changed pixels (evenly picked) go into the crossing."""
    min_pixels: int = 30
    min_spread: float = 0.02
    """The lines' directions must differ this much (smallest over largest eigenvalue of their spread) for a
    crossing to exist: a veil over one uniform background moves all pixels one way, and says nothing of X."""
    max_miss: float = 0.35
    """The lines must pass X within this share (median) of their distance to it: a veil of one colour."""
    max_past: float = 1.05
    """The pixels must (median) stop short of X: a veil's opacity is at most 1 (with a little noise)."""
    going: bool = True
    """Whether a veil the background had learnt, going off, counts (smoke blobs); not around a flame track,
    where flame light and smoke brighten the soil and their lines, traced back, cross at a darker soil."""
    warm: float = 0.25
    """(R − B) / R of the layer colour from which it is soil's tan or ochre, not a grey, white or bluish smoke
    (straw smoke, even yellowish from smouldering, stays under about 0.15)."""
    max_warm: float = 0.6
    """... and up to this: beyond it is the deep orange of flame light, not soil."""
    max_bright: float = 235.0
    """A reflecting veil lit like the soil is not brighter than this in red: glowing flame light is."""
    max_saturation: float = 0.55
    """Pixels more saturated than this (HSV) are left out: flames at a fire's foot, not a veil."""


def layer_colour(now: np.ndarray, before: np.ndarray, p: DustParams = DustParams()) -> np.ndarray | None:
    """The colour (B, G, R) of a veil laid over ``before`` to give ``now`` (N×3 float arrays of the changed
    pixels), or of one that ``before`` had and ``now`` lost (a veil the background learnt, drifting off), as
    the least-squares crossing of the lines each pixel moved along; None when the lines do not cross well
    (one background, or changes of more than one kind: a machine driving, a shadow)."""
    fit = _fit(now, before, p)
    return None if fit is None else fit[0]


def _fit(now: np.ndarray, before: np.ndarray, p: DustParams) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(X, the lines' directions, their backgrounds) for ``layer_colour``."""
    d = now - before
    size = np.linalg.norm(d, axis=1)
    keep = size >= p.min_change
    if keep.sum() < p.min_pixels:
        return None
    d, b, size = d[keep], before[keep], size[keep]
    if len(d) > p.max_pixels:
        pick = np.linspace(0, len(d) - 1, p.max_pixels).astype(int)
        d, b, size = d[pick], b[pick], size[pick]
    u = d / size[:, None]
    x = _crossing(u, b, p)
    if x is None:
        return None
    miss = _misses(u, b, x)
    inliers = miss <= 2.0 * max(float(np.median(miss)), 1.0)
    if inliers.sum() >= p.min_pixels and inliers.sum() < len(u):  # once more without the odd ones out
        x = _crossing(u[inliers], b[inliers], p)
        if x is None:
            return None
        u, b, size = u[inliers], b[inliers], size[inliers]
        miss = _misses(u, b, x)
    ahead = float((((x - b) * u).sum(axis=1) > 0).mean())
    if 0.2 < ahead < 0.8 or (ahead <= 0.2 and not p.going):
        return None  # some pixels took on the layer, others lost it: no one veil coming or going
    # coming, the pixels move from their background towards X; going (a veil the background had learnt
    # thins or drifts off), from X's mix towards what lies behind: either way they stop short of X
    reach = np.linalg.norm(x - (b if ahead >= 0.8 else b + u * size[:, None]), axis=1)
    if float(np.median(size / np.maximum(reach, 1.0))) > p.max_past:
        return None
    if float(np.median(miss / np.maximum(reach, 1.0))) > p.max_miss:
        return None
    return x, u, b


def is_dust_colour(x: np.ndarray | None, p: DustParams = DustParams()) -> bool:
    """Whether a layer colour (B, G, R) is soil's: warm (R ≥ G ≥ B) and saturated enough to be tan or ochre,
    and a reflecting veil's brightness (not beyond white)."""
    if x is None:
        return False
    b, g, r = (float(v) for v in x)
    if not (b >= 0.0 and r <= p.max_bright and r >= g >= b and r >= 40.0):
        return False
    return p.warm <= (r - b) / r <= p.max_warm


def veil_is_dust(now: np.ndarray, before: np.ndarray, mask: np.ndarray, p: DustParams = DustParams()) -> bool:
    """Whether the change over ``mask`` (images H×W×3, before exposure-compensated) is a layer of dust."""
    if not mask.any():
        return False
    c = now[mask].astype(np.float32)
    b = before[mask].astype(np.float32)
    top, low = c.max(axis=1), c.min(axis=1)
    calm = (top - low) <= p.max_saturation * np.maximum(top, 1.0)
    fit = _fit(c[calm], b[calm], p)
    return fit is not None and is_dust_colour(fit[0], p) and not _grey_explains(*fit)


def _grey_explains(x: np.ndarray, u: np.ndarray, b: np.ndarray) -> bool:
    """Whether some grey passes the lines (median) about as near as X does. Over backgrounds much alike the
    lines are nearly parallel and their crossing slides along them, towards the background's own colour: a
    grey smoke over tan stubble then seems tan. Dust only when no grey veil would do."""
    best = float(np.median(_misses(u, b, x)))
    v = _GREYS[:, None, :] - b[None]  # every grey at once: (greys, lines, 3)
    misses = np.linalg.norm(v - u[None] * (v * u[None]).sum(axis=2, keepdims=True), axis=2)
    return float(np.median(misses, axis=1).min()) <= 1.5 * best + 2.0


_GREYS = np.repeat(np.arange(30, 256, 5, dtype=np.float64)[:, None], 3, axis=1)
"""The greys ``_grey_explains`` tries (B = G = R)."""
SAMPLE = 4800
"""At most about this many pixels of a region are looked at (a regular grid over a larger one): ``_fit`` keeps
600 of the changed ones anyway, and a near fire's grown box is 100,000 pixels or more."""


def _sampled(rows: slice, cols: slice) -> tuple[slice, slice]:
    """``rows`` × ``cols`` thinned to a regular grid of at most about ``SAMPLE`` pixels."""
    area = max(rows.stop - rows.start, 0) * max(cols.stop - cols.start, 0)
    step = max(1, int(np.sqrt(area / SAMPLE)))
    return slice(rows.start, rows.stop, step), slice(cols.start, cols.stop, step)


def veil_over_foot_is_dust(small: np.ndarray, background: np.ndarray, gains: np.ndarray, rows: slice, cols: slice,
                           foot: int, p: DustParams = DustParams()) -> bool:
    """Whether a veil seen in ``rows`` × ``cols`` (working pixels) is dust, judged over the veil and ``foot``
    rows of what lies under it: dust is raised from the field and is densest there, and where it lies over
    both sky and field its layer colour shows (``layer_colour``). ``background`` is the colour background,
    ``gains`` the exposure gain of each working row."""
    part = _sampled(slice(rows.start, min(rows.stop + foot, small.shape[0])), cols)
    before = background[part] * gains[part[0], None, None]
    return veil_is_dust(small[part], before, np.ones(before.shape[:2], bool), p)


def around_is_dust(small: np.ndarray, background: np.ndarray, gain: np.ndarray, box: tuple[int, int, int, int],
                   grow: float = 1.0, margin: int = 8, p: DustParams = DustParams()) -> bool:
    """Whether what changed in and around a flame track's box (working pixels x, y, w, h; grown by ``grow``
    times its size each way, at least by ``margin``, so the veil is seen over more than one background) is a
    layer of dust: soil-coloured dust over a green field passes the flame colour rules, but it is a veil, lit
    like the soil, and its pixels all move towards one tan colour. ``gain``: the exposure gain per channel."""
    x, y, w, h = box
    gx, gy = max(round(grow * w), margin), max(round(grow * h), margin)
    part = _sampled(slice(max(y - gy, 0), min(y + h + gy, small.shape[0])),
                    slice(max(x - gx, 0), min(x + w + gx, small.shape[1])))
    before = background[part] * gain
    return veil_is_dust(small[part], before, np.ones(before.shape[:2], bool), p)


def _crossing(u: np.ndarray, b: np.ndarray, p: DustParams) -> np.ndarray | None:
    """The point nearest (least squares) to the lines b + t·u."""
    m = len(u) * np.eye(3) - u.T @ u
    rhs = b.sum(axis=0) - (u * (u * b).sum(axis=1, keepdims=True)).sum(axis=0)
    eig = np.linalg.eigvalsh(m)
    if eig[-1] <= 0 or eig[0] / eig[-1] < p.min_spread:
        return None
    return np.linalg.solve(m, rhs)


def _misses(u: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each line's distance from x."""
    v = x - b
    return np.linalg.norm(v - u * (v * u).sum(axis=1, keepdims=True), axis=1)
