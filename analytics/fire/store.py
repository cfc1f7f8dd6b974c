"""Reading and writing fire detections, evidence, events and the cameras' poses (SQL only)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from analytics.fire.geometry import TILT_ERROR_DEG, Pose

POSE_KEYS = frozenset({"mast_height_m", "heading_deg", "tilt_deg", "hfov_deg"})


@dataclass(frozen=True)
class Camera:
    id: int
    code: str
    kind: str
    status: str
    lat: float | None
    lon: float | None
    division: str
    pole: str | None
    attrs: dict

    def pose(self, preset: int | None = None) -> Pose | None:
        """The camera's pose at a preset (its listed heading, tilt, zoom and tilt error, else the camera's own)
        from the ledger; None when it has none (detections then carry no position). ``tilt_error_deg`` (how far
        the tilt may be off; default 0.5°) sets the far band's far end: mast height / tan(tilt error)."""
        a = self.attrs
        if self.lat is None or self.lon is None or not a.keys() >= POSE_KEYS:
            return None
        at = next((p for p in a.get("presets") or [] if p["preset"] == preset), {})
        tilt_error = at.get("tilt_error_deg") or a.get("tilt_error_deg") or TILT_ERROR_DEG  # (validated > 0)
        return Pose(self.lat, self.lon, a["mast_height_m"], at.get("heading_deg", a["heading_deg"]),
                    at.get("tilt_deg", a["tilt_deg"]), at.get("hfov_deg") or a["hfov_deg"], tilt_error)


_TERMINAL = """
    select t.id, t.code, t.kind, t.status, coalesce(t.lat, p.lat), coalesce(t.lon, p.lon), t.division_code,
           p.code, t.attrs
      from terminal t left join pole p on p.id = t.pole_id
"""
CAMERA_KINDS = ("video_camera", "thermal_camera")


def cameras(conn: psycopg.Connection) -> dict[str, Camera]:
    """Every camera by code."""
    rows = conn.execute(_TERMINAL + " where t.kind = any(%s)", (list(CAMERA_KINDS),)).fetchall()
    return {r[1]: Camera(*r) for r in rows}


def terminal(conn: psycopg.Connection, code: str) -> Camera | None:
    """One terminal of any kind, so that a frame from a non-camera is refused with its kind named."""
    row = conn.execute(_TERMINAL + " where t.code = %s", (code,)).fetchone()
    return Camera(*row) if row else None


@dataclass
class Detection:
    source: str
    cue: str
    track: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    confidence: float
    position: str
    terminal_id: int | None = None
    preset: int | None = None
    box: tuple[int, int, int, int] | None = None
    frame_size: tuple[int, int] | None = None
    camera_lat: float | None = None
    camera_lon: float | None = None
    bearing_deg: float | None = None
    halfwidth_deg: float | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    division_code: str | None = None
    satellite: dict | None = None
    event_id: int | None = None
    id: int | None = None


_COLUMNS = ("source", "cue", "track", "first_seen", "last_seen", "confidence", "position", "terminal_id", "preset",
            "box", "frame_size", "camera_lat", "camera_lon", "bearing_deg", "halfwidth_deg", "lat", "lon",
            "accuracy_m", "division_code", "satellite")


def insert_detection(conn: psycopg.Connection, d: Detection) -> int | None:
    """The new row's id; None when this (source, track) is stored already (a satellite pixel imported twice)."""
    values = [getattr(d, c) for c in _COLUMNS]
    values[_COLUMNS.index("box")] = list(d.box) if d.box else None
    values[_COLUMNS.index("frame_size")] = list(d.frame_size) if d.frame_size else None
    values[_COLUMNS.index("satellite")] = json.dumps(d.satellite) if d.satellite else None
    row = conn.execute(
        f"insert into fire_detection ({', '.join(_COLUMNS)}) values ({', '.join(['%s'] * len(_COLUMNS))}) "
        "on conflict (source, track) do nothing returning id",
        values,
    ).fetchone()
    return row[0] if row else None


def touch_detection(conn: psycopg.Connection, source: str, track: str, last_seen: dt.datetime, confidence: float,
                    box: tuple[int, int, int, int]) -> int | None:
    """A track seen again: later last_seen, best confidence, newest box; returns its event id."""
    row = conn.execute(
        """
        update fire_detection set last_seen = greatest(last_seen, %s), confidence = greatest(confidence, %s),
                                  box = %s
         where source = %s and track = %s
        returning event_id
        """,
        (last_seen, confidence, list(box), source, track),
    ).fetchone()
    if row and row[0]:
        conn.execute("update fire_event set last_seen = greatest(last_seen, %s), touched_at = now() where id = %s",
                     (last_seen, row[0]))
    return row[0] if row else None


def save_evidence(conn: psycopg.Connection, detection_id: int, captured_at: dt.datetime, jpeg: bytes) -> None:
    conn.execute(
        """
        insert into fire_evidence (detection_id, captured_at, jpeg) values (%s, %s, %s)
        on conflict (detection_id) do update set captured_at = excluded.captured_at, jpeg = excluded.jpeg
        """,
        (detection_id, captured_at, jpeg),
    )


def load_detections(conn: psycopg.Connection, where: str, params: tuple) -> list[Detection]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"select id, event_id, {', '.join(_COLUMNS)} from fire_detection where {where}",
                           params).fetchall()
    return [Detection(**{**r, "box": tuple(r["box"]) if r["box"] else None,
                         "frame_size": tuple(r["frame_size"]) if r["frame_size"] else None}) for r in rows]


def heat_sources(conn: psycopg.Connection) -> list[tuple[str, float, float, float]]:
    """(name, lat, lon, radius m) of the known static heat sources."""
    return conn.execute("select name, lat, lon, radius_m from heat_source").fetchall()


def stale_events(conn: psycopg.Connection, quiet: dt.timedelta) -> list[int]:
    """Open events with nothing seen for ``quiet``; closed here, returned for their alerts."""
    rows = conn.execute(
        """
        update fire_event set status = 'closed', closed_at = now()
         where status = 'open' and touched_at < now() - %s
        returning id
        """,
        (quiet,),
    ).fetchall()
    return [r[0] for r in rows]


def event(conn: psycopg.Connection, event_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("select * from fire_event where id = %s", (event_id,)).fetchone()
