"""What the learned fire verifier sees of one candidate box: a square patch of the frame around it.

The per-frame colour rules (``colour.flame_mask``) pass sunsets, lamps, red cars and warm interiors
(issue 14: nine in ten non-fire photos are candidates). Hand-made colour-texture features of the box
(``fv1``–``fv3``, 104 numbers) told flames from those only at photo F1 0.59–0.69; a convolutional network
pretrained on ImageNet sees the flame's tongues, glow and setting and does much better
(docs/fire-verifier.md). The network judges a patch: the box grown by half its longer side on each side,
squared about its centre, the frame's edge repeated where the patch runs out of it, resampled to
``PATCH_SIDE`` pixels.

``PATCH_VERSION`` names this exact recipe; the committed model records the recipe it was trained on and
``Verifier.load`` refuses a model made for another (a silently different patch scores nonsense).
"""

from __future__ import annotations

import cv2
import numpy as np

from analytics.fire.colour import ColourParams, flame_mask, land_means

PATCH_VERSION = "sq2x-112"
PATCH_SIDE = 112
MIN_PATCH_PX = 16
"""A patch is never cut smaller than this (a few-pixel box keeps some of its surround)."""
WORK_WIDTH = 640
"""Photos are searched for candidates at about this width (the video detector's working size)."""
MIN_CANDIDATE_PX = 12
MAX_CANDIDATES = 5
RULES = ColourParams()


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


def patch(frame: np.ndarray, box: tuple[int, int, int, int], side: int = PATCH_SIDE) -> np.ndarray:
    """The BGR patch (``side`` × ``side``, uint8) the verifier judges for box (x, y, w, h) of a frame."""
    x, y, w, h = box
    half = max(w, h, MIN_PATCH_PX // 2)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - half), round(cy - half)
    x1, y1 = x0 + 2 * half, y0 + 2 * half
    fh, fw = frame.shape[:2]
    pad = max(0, -x0, -y0, x1 - fw, y1 - fh)
    step = max(1, (2 * half) // (2 * side))  # a whole-photo patch: thin it to about twice the size first
    region = frame[max(0, y0):min(fh, y1):step, max(0, x0):min(fw, x1):step]
    if pad:
        lo = [max(0, -v) // step for v in (y0, x0)]
        hi = [max(0, v - n) // step for v, n in ((y1, fh), (x1, fw))]
        region = cv2.copyMakeBorder(region, lo[0], hi[0], lo[1], hi[1], cv2.BORDER_REPLICATE)
    grow = region.shape[0] < side
    return cv2.resize(region, (side, side), interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA)
