"""What the learned fire verifier sees of one candidate crop: colour, texture and contrast with the surround.

The per-frame colour rules (``colour.flame_mask``) pass sunsets, lamps, red cars and warm interiors
(issue 14: 93 % of non-fire photos are candidates). What tells flames from those is more than the colour
of a pixel: a flame has a white-yellow core fading through orange to red at its ragged edge, a brightness
far above its surround, little fine texture inside but a strong, irregular boundary. These features
describe that for the flame-coloured pixels of a box and for the ring around it.

``FEATURE_VERSION`` names this exact list; the committed model records the version it was trained on and
``Verifier.load`` refuses a model whose version differs (a silently mismatched vector scores nonsense).
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from analytics.fire.colour import ColourParams, flame_mask, land_means

FEATURE_VERSION = "fv3"
CROP_SIDE = 64
"""Crops are resampled so their longer side is this many pixels: features do not depend on range."""
MARGIN = 0.5
"""The surround ring: the box grown by this share of its size on each side."""
WORK_WIDTH = 640
"""Photos are searched for candidates at about this width (the video detector's working size)."""
MIN_CANDIDATE_PX = 12
MAX_CANDIDATES = 5
RULES = ColourParams()

_LBP_BINS = 10
_GRAD_EDGES = np.array([0, 8, 24, 64, 1e9], np.float32)
_V_QUANTILES = (10, 50, 90)
_HUE_BINS = 6
_HUE_EDGES = np.array([0, 8, 16, 24, 32, 48, 256], np.float32)
_V_EDGES = np.array([0, 96, 160, 200, 230, 250, 256], np.float32)
_S_EDGES = np.array([0, 64, 128, 192, 256], np.float32)

NAMES: tuple[str, ...] = (
    *(f"{space}_{ch}_{stat}" for space, chans in (("bgr", "bgr"), ("hsv", "hsv"), ("ycc", "yrb"), ("lab", "lab"))
      for ch in chans for stat in ("mean", "std")),
    *(f"v_p{q}" for q in _V_QUANTILES),
    "white_core", "deep_red", "hue_spread", "red_clipped",
    *(f"s_p{q}" for q in _V_QUANTILES), *(f"hue_h{i}" for i in range(_HUE_BINS)),
    *(f"v_h{i}" for i in range(len(_V_EDGES) - 1)), *(f"hs_h{i}_s{j}" for i in range(3) for j in range(2)),
    "sv_corr", "rg_corr", "edge_minus_core_hue", "core_v_low_share",
    "fill", "aspect", "components", "ragged", "solidity",
    "ring_v", "ring_s", "contrast_v", "contrast_s", "contrast_rb",
    *(f"ring_v_p{q}" for q in _V_QUANTILES), *(f"ring_hue_h{i}" for i in range(_HUE_BINS)), "ring_flame_share",
    "land_y", "land_cb", "land_cr",
    *(f"grad_h{i}" for i in range(len(_GRAD_EDGES) - 1)), "grad_mean", "edge_grad", "orientation_entropy",
    "orientation_peak",
    *(f"lbp_{i}" for i in range(_LBP_BINS)),
    "lap_flame", "lap_ring", "canny_flame", "canny_ring", "v_top", "v_middle", "v_bottom",
)
N_FEATURES = len(NAMES)


def candidate_boxes(frame: np.ndarray, p: ColourParams = RULES, means: tuple[float, float, float] | None = None,
                    limit: int = MAX_CANDIDATES) -> list[tuple[int, int, int, int]]:
    """The per-frame stage on a whole still picture: boxes (x, y, w, h, full-resolution) of the largest
    flame-coloured regions, found at working size; nearby pixels are joined by a 5×5 dilation."""
    k = max(1.0, frame.shape[1] / WORK_WIDTH)
    small = cv2.resize(frame, (round(frame.shape[1] / k), round(frame.shape[0] / k)),
                       interpolation=cv2.INTER_AREA) if k > 1 else frame
    mask = flame_mask(small, means or land_means(small), p)
    joined = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    boxes = []
    for i in range(1, count):
        x, y, w, h, _ = stats[i]
        pixels = int(np.count_nonzero(mask[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i]))
        if pixels >= MIN_CANDIDATE_PX:
            boxes.append((pixels, (int(x * k), int(y * k), max(1, int(w * k)), max(1, int(h * k)))))
    boxes.sort(key=lambda b: -b[0])
    return [b for _, b in boxes[:limit]]


def crop_features(frame: np.ndarray, box: tuple[int, int, int, int], means: tuple[float, float, float],
                  p: ColourParams = RULES) -> np.ndarray:
    """The feature vector (float32, ``N_FEATURES``) of one candidate box of a BGR frame."""
    fh, fw = frame.shape[:2]
    x, y, w, h = box
    x0, y0 = max(0, int(x - MARGIN * w)), max(0, int(y - MARGIN * h))
    x1, y1 = min(fw, int(x + w + MARGIN * w) + 1), min(fh, int(y + h + MARGIN * h) + 1)
    scale = CROP_SIDE / max(y1 - y0, x1 - x0)
    size = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
    outer = frame[y0:y1, x0:x1]
    if scale < 0.25:  # area-averaging a whole-frame crop costs milliseconds: thin it to twice the size first
        step = int(0.5 / scale)
        outer = outer[::step, ::step]
    outer = cv2.resize(outer, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    inner = np.zeros(outer.shape[:2], bool)
    ix0, iy0 = min(size[0] - 1, round((x - x0) * sx)), min(size[1] - 1, round((y - y0) * sy))
    inner[iy0:max(iy0 + 1, round((y - y0 + h) * sy)), ix0:max(ix0 + 1, round((x - x0 + w) * sx))] = True
    flame = (flame_mask(outer, means, p) > 0) & inner
    if not flame.any():
        flame = inner  # the box came from elsewhere (the video detector's own mask): describe it whole
    ring = ~inner
    if not ring.any():
        ring = ~flame if (~flame).any() else flame
    ring_flame = flame_mask(outer, means, p)[ring] > 0 if ring.any() else np.zeros(1, bool)
    return _describe(outer, flame, ring, inner, means, float(ring_flame.mean()))


def _describe(bgr: np.ndarray, flame: np.ndarray, ring: np.ndarray, inner: np.ndarray,
              means: tuple[float, float, float], ring_flame: float) -> np.ndarray:
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV_FULL).astype(np.float32)
    spaces = (bgr.astype(np.float32), hsv, cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.float32),
              cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32))
    out: list[float] = []
    for image in spaces:
        px = image[flame]
        out += [v for ch in range(3) for v in (float(px[:, ch].mean()), float(px[:, ch].std()))]
    v, s, hue = hsv[..., 2], hsv[..., 1], hsv[..., 0]
    out += [float(q) for q in np.percentile(v[flame], _V_QUANTILES)]
    core = (v > 230) & (s < 90)
    grown = cv2.dilate(flame.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    red = bgr[..., 2][flame]
    out += [float(core[grown & inner].mean()), float((hue[flame] < 12).mean()),
            float(np.percentile(hue[flame], 90) - np.percentile(hue[flame], 10)), float((red >= 250).mean())]
    out += [float(q) for q in np.percentile(s[flame], _V_QUANTILES)]
    n = max(int(flame.sum()), 1)
    out += list(map(float, np.histogram(hue[flame], bins=_HUE_EDGES)[0] / n))
    out += list(map(float, np.histogram(v[flame], bins=_V_EDGES)[0] / n))
    out += _hue_saturation(hue[flame], s[flame], n)
    out += _gradation(bgr, hsv, flame)
    out += _shape(flame, inner)
    ring_v, ring_s = float(v[ring].mean()), float(s[ring].mean())
    b, r = spaces[0][..., 0], spaces[0][..., 2]
    out += [ring_v, ring_s, float(v[flame].mean()) - ring_v, float(s[flame].mean()) - ring_s,
            float((r - b)[flame].mean() - (r - b)[ring].mean())]
    out += [float(q) for q in np.percentile(v[ring], _V_QUANTILES)]
    out += list(map(float, np.histogram(hue[ring], bins=_HUE_EDGES)[0] / max(int(ring.sum()), 1)))
    out += [ring_flame, *means]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    out += _texture(grey, flame)
    out += _fine_texture(grey, flame, ring)
    out += _vertical(v, flame)
    return np.asarray(out, np.float32)


def _hue_saturation(hue: np.ndarray, sat: np.ndarray, n: int) -> list[float]:
    """Joint hue (red, orange, yellow) × saturation (below or above 160) shares of the flame pixels."""
    h = np.digitize(hue, (12, 28))
    high = sat >= 160
    return [float(((h == i) & (high == j)).sum() / n) for i in range(3) for j in (False, True)]


def _gradation(bgr: np.ndarray, hsv: np.ndarray, flame: np.ndarray) -> list[float]:
    """How colour runs across the flame: S against V (a flame whitens as it brightens: negative), R
    against G, the hue at its edge minus the hue of its core, and whether its brightest pixels sit in
    the lower part (a flame's base) or not."""
    v, s = hsv[..., 2][flame], hsv[..., 1][flame]
    g, r = bgr[..., 1][flame].astype(np.float32), bgr[..., 2][flame].astype(np.float32)
    mask = flame.astype(np.uint8)
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0
    edge = flame & ~eroded
    hue = hsv[..., 0]
    edge_minus_core = float(hue[edge].mean() - hue[eroded].mean()) if edge.any() and eroded.any() else 0.0
    ys = np.nonzero(flame)[0]
    bright = ys[v >= np.percentile(v, 90)]
    low_share = float(((bright - ys.min()) / max(ys.max() - ys.min(), 1)).mean()) if bright.size else 0.5
    return [_corr(s, v), _corr(r, g), edge_minus_core, low_share]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _shape(flame: np.ndarray, inner: np.ndarray) -> list[float]:
    """The box's share of the frame is left out on purpose: a fire fills a photograph but is a few dozen
    pixels of a tower's frame, and the verifier must judge the crop, not where it was taken."""
    ys, xs = np.nonzero(inner)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    mask = flame.astype(np.uint8)
    count = cv2.connectedComponents(mask, connectivity=8)[0]
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    area = float(mask.sum())
    hull = sum(cv2.contourArea(cv2.convexHull(c)) for c in contours)
    return [area / float(inner.sum()), float(h / w), float(count - 1),
            float(perimeter * perimeter / (4 * np.pi * max(area, 1.0))), float(area / max(hull, area, 1.0))]


def _texture(grey: np.ndarray, flame: np.ndarray) -> list[float]:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    inside = mag[flame]
    hist = np.histogram(inside, bins=_GRAD_EDGES)[0] / max(inside.size, 1)
    edge = cv2.morphologyEx(flame.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edge_grad = float(mag[edge].mean()) if edge.any() else 0.0
    lbp = _lbp_riu2(grey)[flame[1:-1, 1:-1]]
    lbp_hist = np.bincount(lbp, minlength=_LBP_BINS)[:_LBP_BINS] / max(lbp.size, 1)
    return [*map(float, hist), float(inside.mean()), edge_grad, *_orientation(gx, gy, mag),
            *map(float, lbp_hist)]


def _fine_texture(grey: np.ndarray, flame: np.ndarray, ring: np.ndarray) -> list[float]:
    """Fine detail inside the flame and in the surround: mean |Laplacian| and Canny edge density
    (a flame is smooth inside; a lit wall, foliage or a crowd is not)."""
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3))
    edges = cv2.Canny(grey, 60, 150) > 0
    return [float(lap[flame].mean()), float(lap[ring].mean()), float(edges[flame].mean()), float(edges[ring].mean())]


def _vertical(v: np.ndarray, flame: np.ndarray) -> list[float]:
    """Mean brightness of the flame pixels in the top, middle and bottom thirds of their extent, relative
    to the flame's mean (a flame is brightest low, at its base and core; a sunset glows at the horizon)."""
    ys = np.nonzero(flame)[0]
    top, bottom = ys.min(), ys.max() + 1
    cuts = np.linspace(top, bottom, 4).astype(int)
    mean = float(v[flame].mean()) or 1.0
    out = []
    for a, b in itertools.pairwise(cuts):
        part = v[a:max(b, a + 1)][flame[a:max(b, a + 1)]]
        out.append(float(part.mean()) / mean if part.size else 1.0)
    return out


def _orientation(gx: np.ndarray, gy: np.ndarray, mag: np.ndarray) -> list[float]:
    """Entropy and peak share of the strong edges' orientations (8 bins, magnitude-weighted) over the whole
    crop: buildings, cars and lamps have straight edges in few directions, flames in all."""
    strong = mag > 24
    if not strong.any():
        return [0.0, 0.0]
    angle = (np.arctan2(gy[strong], gx[strong]) % np.pi) / np.pi * 8
    hist = np.bincount(np.minimum(angle.astype(np.intp), 7), weights=mag[strong], minlength=8)
    share = hist / hist.sum()
    nonzero = share[share > 0]
    return [float(-(nonzero * np.log2(nonzero)).sum()), float(share.max())]


_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _lbp_riu2(grey: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP (8 neighbours, radius 1; Ojala 2002) of the interior pixels:
    0–8 the number of brighter neighbours of a uniform pattern, 9 every non-uniform one."""
    g = grey.astype(np.int16)
    c = g[1:-1, 1:-1]
    h, w = g.shape
    bits = np.stack([(g[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= c) for dy, dx in _OFFSETS]).astype(np.uint8)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    ones = bits.sum(axis=0)
    return np.where(transitions <= 2, ones, 9).astype(np.intp)
