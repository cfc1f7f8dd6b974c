"""Per-pixel flame colour rules (fire-detection.md §1.1).

A flame pixel passes both Chen et al. 2004 (RGB with a saturation bound) and Celik & Demirel 2009
rules R1–R4 (YCbCr, R3 against the means of the land below the horizon, not of the sky). The cheap
test ``R > R_T and R ≥ G > B`` runs over the whole region with OpenCV; the rest only on the few
pixels that pass it, which is what keeps a 1280×720 frame within a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ColourParams:
    red_min: int = 125
    """Chen R_T."""
    saturation_t: float = 60.0
    """Chen S_T on a 0–100 saturation scale: S ≥ (255 − R)·S_T / R_T."""
    celik_tau: float = 40.0
    """Celik R4: |Cb − Cr| ≥ τ."""


def land_means(frame: np.ndarray) -> tuple[float, float, float]:
    """Mean Y, Cb, Cr of a (region of a) BGR frame, for Celik R3."""
    b, g, r, _ = cv2.mean(frame)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, 128 + 0.564 * (b - y), 128 + 0.713 * (r - y)


def flame_mask(frame: np.ndarray, means: tuple[float, float, float], p: ColourParams = ColourParams()) -> np.ndarray:
    """uint8 mask (255 = flame-coloured) of a BGR frame."""
    b, g, r = cv2.split(frame)
    coarse = cv2.compare(r, p.red_min, cv2.CMP_GT)
    coarse &= cv2.compare(r, g, cv2.CMP_GE)
    coarse &= cv2.compare(g, b, cv2.CMP_GT)
    idx = np.flatnonzero(coarse)
    mask = np.zeros(frame.shape[:2], np.uint8)
    if idx.size == 0:
        return mask
    rr = r.ravel()[idx].astype(np.float32)
    gg = g.ravel()[idx].astype(np.float32)
    bb = b.ravel()[idx].astype(np.float32)
    saturation = 100.0 * (rr - bb) / rr  # HSV saturation with max = R, min = B
    chen = saturation >= (255.0 - rr) * p.saturation_t / p.red_min
    y = 0.299 * rr + 0.587 * gg + 0.114 * bb
    cb = 128 + 0.564 * (bb - y)
    cr = 128 + 0.713 * (rr - y)
    y_mean, cb_mean, cr_mean = means
    celik = (y > cb) & (cr > cb) & (y > y_mean) & (cb < cb_mean) & (cr > cr_mean) & (np.abs(cb - cr) >= p.celik_tau)
    mask.ravel()[idx[chen & celik]] = 255
    return mask
