"""The night maps in the database (table ``fire_night_map``), so a restarted worker keeps what it learnt.

``NightMaps`` sits beside the pipeline's video detector: the first frame of a camera at a preset loads
that preset's map from the database; a map whose ``revision`` moved on (a night closed, or some minutes of
night were counted) is written back. A stored map that does not fit the camera any more (another frame
size) is left alone and a new one learnt.
"""

from __future__ import annotations

import logging

import numpy as np
import psycopg

from analytics.fire.nightmap import NightMap, NightState
from analytics.fire.video import VideoDetector

log = logging.getLogger(__name__)


def load(conn: psycopg.Connection, terminal_id: int, preset: int | None) -> NightState | None:
    """The stored map of a camera at a preset; None when there is none or it is damaged (logged)."""
    row = conn.execute(
        """select grid_w, grid_h, nights, lit_cells, tonight, tonight_lit_s
             from fire_night_map
            where terminal_id = %(terminal)s and preset is not distinct from %(preset)s""",
        {"terminal": terminal_id, "preset": preset}).fetchone()
    if row is None:
        return None
    w, h, nights, packed, tonight, lit_s = row
    try:
        if len(packed) != (nights * w * h + 7) // 8:
            raise ValueError(f"{len(packed)} bytes of lit cells for {nights} nights of {w}×{h} cells")
        bits = np.unpackbits(np.frombuffer(packed, np.uint8), count=nights * w * h)
        history = bits.astype(bool).reshape(nights, h, w)
        return NightState((w, h), history, tonight, np.frombuffer(lit_s, "<f4").reshape(h, w).astype(np.float32))
    except ValueError as exc:
        log.warning("night map of terminal %s preset %s is damaged (%s); learning a new one", terminal_id, preset, exc)
        return None


def save(conn: psycopg.Connection, terminal_id: int, preset: int | None, state: NightState) -> None:
    w, h = state.grid
    conn.execute(
        """insert into fire_night_map (terminal_id, preset, grid_w, grid_h, nights, lit_cells, tonight, tonight_lit_s)
           values (%(terminal)s, %(preset)s, %(w)s, %(h)s, %(nights)s, %(cells)s, %(tonight)s, %(lit_s)s)
           on conflict (terminal_id, preset) do update
              set grid_w = excluded.grid_w, grid_h = excluded.grid_h, nights = excluded.nights,
                  lit_cells = excluded.lit_cells, tonight = excluded.tonight,
                  tonight_lit_s = excluded.tonight_lit_s, updated_at = now()""",
        {"terminal": terminal_id, "preset": preset, "w": w, "h": h, "nights": state.history.shape[0],
         "cells": np.packbits(state.history.reshape(-1)).tobytes(), "tonight": state.night,
         "lit_s": state.lit_s.astype("<f4").tobytes()})


class NightMaps:
    """Loads and saves the video detector's night maps around each frame."""

    def __init__(self, video: VideoDetector) -> None:
        self.video = video
        self._loaded: set[tuple[str, int | None]] = set()
        self._saved: dict[tuple[str, int | None], int] = {}

    def before(self, conn: psycopg.Connection, terminal_id: int, code: str, preset: int | None, lon: float) -> None:
        """Before a camera's first frame at a preset: its stored map, if any."""
        key = (code, preset)
        if key in self._loaded:
            return
        self._loaded.add(key)
        state = load(conn, terminal_id, preset)
        if state is not None:
            self.video.nights[key] = NightMap.restore(state, lon)
            self._saved[key] = self.video.nights[key].revision

    def after(self, conn: psycopg.Connection, terminal_id: int, code: str, preset: int | None) -> None:
        """After a frame: write the map back if it learnt something since it was last written."""
        key = (code, preset)
        nights = self.video.nights.get(key)
        if nights is None or self._saved.get(key, 0) == nights.revision:
            return
        save(conn, terminal_id, preset, nights.state())
        self._saved[key] = nights.revision
