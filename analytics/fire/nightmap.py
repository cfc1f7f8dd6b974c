"""Lights that are there every night: yard lamps, a farm's sodium light, a village's windows.

Per camera and preset, a coarse grid (CELL working pixels) counts, for each cell, on how many of the
last ``NIGHTS`` nights it was lit for at least ``LIT_S`` seconds. A flame candidate at night on cells
lit on ``KNOWN_NIGHTS`` or more of them is a known light, whatever it does tonight (lamps switching on,
a lorry's lights parked at the yard). A new fire is, by definition, not on the map.

The map outlives the worker: ``state``/``restore`` give and take what ``nightstore`` keeps in the database;
``revision`` goes up when a night closes and every ``SAVE_EVERY_S`` of night seen, so the store knows when
to write.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

CELL = 16
NIGHTS = 7
LIT_S = 120.0
KNOWN_NIGHTS = 2
BRIGHT = 140.0
"""Working-size grey level of a lit pixel at night (night land is below ~40)."""
SAVE_EVERY_S = 300.0


@dataclass(frozen=True)
class NightState:
    """What a night map has learnt, as the store keeps it."""
    grid: tuple[int, int]
    """(columns, rows) of cells."""
    history: np.ndarray
    """(nights, rows, columns) bool: lit on each past night, oldest first."""
    night: dt.date | None
    lit_s: np.ndarray
    """(rows, columns) float32: seconds lit tonight."""

    def __post_init__(self) -> None:
        w, h = self.grid
        if w < 1 or h < 1:
            raise ValueError(f"night map grid {self.grid} is empty")
        if self.history.ndim != 3 or self.history.shape[1:] != (h, w) or self.history.shape[0] > NIGHTS:
            raise ValueError(f"night map history of shape {self.history.shape} does not fit grid {self.grid}")
        if self.lit_s.shape != (h, w):
            raise ValueError(f"tonight's night map of shape {self.lit_s.shape} does not fit grid {self.grid}")


class NightMap:
    def __init__(self, shape: tuple[int, int], lon: float) -> None:
        h, w = shape
        self.grid = (max(1, w // CELL), max(1, h // CELL))
        self.offset = dt.timedelta(hours=lon / 15 - 12)
        """Local solar time minus 12 h: one night is one date, from noon to noon."""
        self.night: dt.date | None = None
        self.lit_s = np.zeros(self.grid[::-1], np.float32)
        self.history: deque[np.ndarray] = deque(maxlen=NIGHTS)
        self._last: dt.datetime | None = None
        self.revision = 0
        self._seen_s = 0.0

    def observe(self, grey: np.ndarray, when: dt.datetime) -> None:
        """Count one night frame (working-size grey, aligned)."""
        night = (when + self.offset).date()
        if night != self.night:
            self._close()
            self.night, self._last = night, None
        gap = 0.0 if self._last is None else min((when - self._last).total_seconds(), 60.0)
        self._last = when
        lit = cv2.resize((grey > BRIGHT).astype(np.float32), self.grid, interpolation=cv2.INTER_AREA) > 0.02
        self.lit_s[lit] += max(gap, 0.0)
        self._seen_s += max(gap, 0.0)
        if self._seen_s >= SAVE_EVERY_S:
            self._seen_s = 0.0
            self.revision += 1

    def _close(self) -> None:
        if self.night is not None:
            self.history.append(self.lit_s >= LIT_S)
            self.revision += 1
        self.lit_s = np.zeros_like(self.lit_s)

    def known(self, box: tuple[int, int, int, int]) -> bool:
        """Whether a working-size box touches a cell lit on KNOWN_NIGHTS of the past nights."""
        if not self.history:
            return False
        nights = np.sum(list(self.history), axis=0)
        x, y, w, h = box
        cells = nights[y // CELL:(y + h) // CELL + 1, x // CELL:(x + w) // CELL + 1]
        return bool(cells.size and cells.max() >= KNOWN_NIGHTS)

    def state(self) -> NightState:
        w, h = self.grid
        history = np.array(list(self.history), bool).reshape(len(self.history), h, w)
        return NightState(self.grid, history, self.night, self.lit_s.copy())

    @classmethod
    def restore(cls, state: NightState, lon: float) -> NightMap:
        """A map that goes on from a saved state (tonight's count included, if tonight is the same night)."""
        w, h = state.grid
        nights = cls((h * CELL, w * CELL), lon)
        nights.history.extend(np.asarray(state.history, bool))
        nights.night = state.night
        nights.lit_s = state.lit_s.astype(np.float32).copy()
        return nights
