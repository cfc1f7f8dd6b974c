"""Point-in-polygon over the division boundaries: which division a point lies in.

The index holds every division that has a boundary and answers with the finest one
containing the point (a grid inside a township inside a county). Vectorised over
numpy arrays for bulk imports.

One index serves every thread of the API, and GEOS geometries must not be queried from
two threads at once: a prepared geometry builds and updates its point locator lazily
(libgeos issue 825), and shapely prepares an unprepared one in place on a query.
Concurrent queries corrupted the heap and aborted the API process. Queries therefore
take the index's lock; each is a few tens of microseconds and holds the GIL for much of
it anyway.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import shape

_LEVEL_DEPTH = {"city": 0, "district": 1, "county": 1, "county-level city": 1, "township": 2, "grid": 3}


@dataclass(frozen=True)
class DivisionShape:
    code: str
    name: str
    level: str
    geometry: shapely.Geometry


class DivisionIndex:
    """Finest-division lookup for WGS84 points."""

    def __init__(self, shapes: list[DivisionShape]) -> None:
        # Finest levels first, so the first hit is the answer.
        self._shapes = sorted(shapes, key=lambda s: -_LEVEL_DEPTH[s.level])
        for item in self._shapes:
            shapely.prepare(item.geometry)
        self._names = {s.code: s.name for s in shapes}
        self._geos = threading.Lock()

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, str, dict | str]]) -> DivisionIndex:
        """From ``(code, name, level, geojson geometry)`` rows, skipping the city-wide outline."""
        shapes = []
        for code, name, level, boundary in rows:
            if boundary is None or level == "city":
                continue
            geometry = json.loads(boundary) if isinstance(boundary, str) else boundary
            shapes.append(DivisionShape(code, name, level, shape(geometry)))
        return cls(shapes)

    def locate(self, lon: float, lat: float) -> str | None:
        """The finest division containing the point, or None outside every boundary."""
        return self.locate_many(np.array([lon]), np.array([lat]))[0]

    def locate_many(self, lons: np.ndarray, lats: np.ndarray) -> list[str | None]:
        result: list[str | None] = [None] * len(lons)
        pending = np.ones(len(lons), dtype=bool)
        with self._geos:
            self._locate_into(result, pending, lons, lats)
        return result

    def _locate_into(self, result: list[str | None], pending: np.ndarray, lons: np.ndarray, lats: np.ndarray) -> None:
        for item in self._shapes:
            if not pending.any():
                break
            idx = np.flatnonzero(pending)
            inside = shapely.contains_xy(item.geometry, lons[idx], lats[idx])
            for i in idx[inside]:
                result[i] = item.code
            pending[idx[inside]] = False

    def name(self, code: str) -> str | None:
        return self._names.get(code)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) over all boundaries."""
        return shapely.total_bounds([s.geometry for s in self._shapes])

    def __len__(self) -> int:
        return len(self._shapes)
