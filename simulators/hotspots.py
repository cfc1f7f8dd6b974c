"""Labelled thermal frames and FIRMS files for testing the fire worker.

Thermal: a field at 270–290 K with a gradient and sensor noise, warm roads and roofs (below any fire
threshold), single-pixel spikes (dead pixels: never a fire, fewer than 3 pixels), and, when asked, a
straw fire of a few to a few dozen pixels at 340–700 K apparent temperature that grows.
FIRMS: rows in the exact VIIRS or MODIS header order (fire-detection.md §3.1), each labelled with what
the importer should make of it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import cv2
import numpy as np

_COMMON = ["scan", "track", "acq_date", "acq_time", "satellite", "instrument", "confidence", "version"]
VIIRS_HEADER = ["latitude", "longitude", "bright_ti4", *_COMMON, "bright_ti5", "frp", "daynight"]
MODIS_HEADER = ["latitude", "longitude", "brightness", *_COMMON, "bright_t31", "frp", "daynight"]


def thermal_sequence(seed: int, frames: int = 8, fire: bool = True, size: tuple[int, int] = (640, 512),
                     at: tuple[int, int] | None = None) -> list[tuple[np.ndarray, tuple[int, int, int, int] | None]]:
    """(kelvin frame, fire box or None) pairs."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = np.linspace(272, 288, height, dtype=np.float32)[:, None] + np.zeros((1, width), np.float32)
    base += cv2.GaussianBlur(rng.normal(0, 2.0, (height, width)).astype(np.float32), (0, 0), 6)
    for _ in range(4):  # sun-warmed roofs and a road: warm, not hot
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(height // 3, height - 20))
        cv2.rectangle(base, (x, y), (x + int(rng.integers(10, 40)), y + int(rng.integers(4, 16))),
                      float(rng.uniform(300, 312)), -1)
    u, v = at or (int(rng.integers(60, width - 60)), int(rng.integers(height // 3, height - 40)))
    out = []
    for i in range(frames):
        frame = base + rng.normal(0, 0.3, base.shape).astype(np.float32)
        frame[int(rng.integers(0, height)), int(rng.integers(0, width))] = 420.0  # a dead pixel
        box = None
        if fire and i >= 1:
            radius = 1 + i // 2
            peak = float(rng.uniform(340, 700))
            cv2.circle(frame, (u, v), radius, peak, -1)
            box = (u - radius, v - radius, 2 * radius + 1, 2 * radius + 1)
        out.append((frame, box))
    return out


@dataclass(frozen=True)
class FirmsRow:
    values: dict
    expect: str
    """stored, outside, heat_source or not_vegetation"""


def firms_csv(rows: list[FirmsRow], instrument: str = "VIIRS", with_type: bool = False) -> str:
    header = list(VIIRS_HEADER if instrument == "VIIRS" else MODIS_HEADER) + (["type"] if with_type else [])
    out = io.StringIO()
    writer = csv.DictWriter(out, header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.values)
    return out.getvalue()


def firms_row(lat: float, lon: float, when: dt.datetime, expect: str = "stored", instrument: str = "VIIRS",
              confidence: str = "n", fire_type: str = "0") -> FirmsRow:
    viirs = instrument == "VIIRS"
    values = {"latitude": f"{lat:.5f}", "longitude": f"{lon:.5f}", "scan": "0.39" if viirs else "1.0",
              "track": "0.36" if viirs else "1.0", "acq_date": when.strftime("%Y-%m-%d"),
              "acq_time": when.strftime("%H%M").lstrip("0") or "0", "satellite": "N20" if viirs else "Aqua",
              "instrument": instrument, "confidence": confidence, "version": "2.0NRT" if viirs else "6.1NRT",
              "frp": "4.7", "daynight": "D", "type": fire_type}
    values["bright_ti4" if viirs else "brightness"] = "334.1"
    values["bright_ti5" if viirs else "bright_t31"] = "289.3"
    return FirmsRow(values, expect)
