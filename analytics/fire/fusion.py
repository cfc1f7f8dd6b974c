"""Fusion: detections from cameras, thermal cameras and satellites that see the same fire become one
fire event, with its sources, best position, confidence and first-seen time.

Two detections are the same fire when, within ``WINDOW``:
- the same camera looks the same way (bearings within their half-widths);
- both have a ground point, closer than ``NEAR_M`` plus their accuracies;
- one has a point and the other only a bearing: the point lies in the bearing's cone;
- two towers' bearings cross (triangulation), consistently with any ground estimates they have.
The event's position is the most accurate of: a triangulated fix, a satellite pixel, a camera's ground
estimate. Fusion runs under one advisory lock, so two workers never split one fire into two events.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from analytics.fire import geometry as geo
from analytics.fire.store import Detection, load_detections

WINDOW = dt.timedelta(hours=2)
NEAR_M = 1000.0
MAX_ACCURACY_M = 3000.0
FUSION_LOCK = 0x46495245  # "FIRE"

Locate = Callable[[float, float], str | None]
"""(lon, lat) → finest division code, None outside Suihua."""


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    accuracy_m: float
    method: str


def attach(conn: psycopg.Connection, detection_id: int, locate: Locate) -> int:
    """Put a stored detection into the fire event it belongs to (a new one if none); returns the event id."""
    conn.execute("select pg_advisory_xact_lock(%s)", (FUSION_LOCK,))
    (det,) = load_detections(conn, "id = %s", (detection_id,))
    nearby = {event_id: load_detections(conn, "event_id = %s", (event_id,))
              for event_id in _open_events_near(conn, det)}
    event_id = belongs_to(det, nearby)
    if event_id is None:
        event_id = conn.execute(
            "insert into fire_event (first_seen, last_seen, confidence) values (%s, %s, %s) returning id",
            (det.first_seen, det.last_seen, det.confidence),
        ).fetchone()[0]
    conn.execute("update fire_detection set event_id = %s where id = %s", (event_id, detection_id))
    recompute(conn, event_id, locate)
    return event_id


def belongs_to(det: Detection, events: dict[int, list[Detection]]) -> int | None:
    """Of open events (id → members), the one ``det`` is the same fire as: the one with the closest member
    it matches (``_match``); None when it matches none (a new fire)."""
    best: tuple[float, int] | None = None
    for event_id, members in events.items():
        score = min((s for m in members if (s := _match(det, m)) is not None), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, event_id)
    return best[1] if best else None


def _open_events_near(conn: psycopg.Connection, det: Detection) -> list[int]:
    lat, lon = (det.lat, det.lon) if det.lat is not None else (det.camera_lat, det.camera_lon)
    rows = conn.execute(
        """
        select id from fire_event
         where status = 'open' and last_seen >= %(from)s and first_seen <= %(to)s
           and (lat is null or %(lat)s::float8 is null
                or (abs(lat - %(lat)s) < 0.25 and abs(lon - %(lon)s) < 0.35))
         order by id
        """,
        {"from": det.first_seen - WINDOW, "to": det.last_seen + WINDOW, "lat": lat, "lon": lon},
    ).fetchall()
    return [r[0] for r in rows]


def _match(a: Detection, b: Detection) -> float | None:
    """How far apart two detections are (metres, smaller is better) when they can be one fire; else None."""
    same_tower = (a.camera_lat is not None and b.camera_lat is not None
                  and geo.distance_m(a.camera_lat, a.camera_lon, b.camera_lat, b.camera_lon) < 50)
    if (a.terminal_id is not None and a.terminal_id == b.terminal_id) or same_tower:
        if a.bearing_deg is None or b.bearing_deg is None:
            return 0.0 if a.terminal_id == b.terminal_id else None
        gap = abs(geo.angle_diff(a.bearing_deg, b.bearing_deg))
        return gap * 10 if gap <= a.halfwidth_deg + b.halfwidth_deg + 1 else None
    pa, pb = _point(a), _point(b)
    if pa and pb:
        gap = geo.distance_m(pa.lat, pa.lon, pb.lat, pb.lon)
        return gap if gap <= NEAR_M + pa.accuracy_m + pb.accuracy_m else None
    for cam, point in ((a, pb), (b, pa)):
        if cam.bearing_deg is not None and point is not None and _point(cam) is None:
            return 0.0 if geo.within_cone(point.lat, point.lon, cam.camera_lat, cam.camera_lon, cam.bearing_deg,
                                          cam.halfwidth_deg + 1) else None
    fix = _fix(a, b)
    return fix.accuracy_m if fix is not None else None


def _point(d: Detection) -> Position | None:
    if d.lat is None or d.lon is None:
        return None
    method = "satellite" if d.source == "satellite" else "camera"
    return Position(d.lat, d.lon, min(d.accuracy_m or MAX_ACCURACY_M, MAX_ACCURACY_M), method)


def _fix(a: Detection, b: Detection) -> Position | None:
    """Two towers' bearings crossed, when they cross where their own ground estimates (if any) allow."""
    if a.bearing_deg is None or b.bearing_deg is None:
        return None
    fix = geo.triangulate((a.camera_lat, a.camera_lon, a.bearing_deg, a.halfwidth_deg),
                          (b.camera_lat, b.camera_lon, b.bearing_deg, b.halfwidth_deg))
    if fix is None:
        return None
    for d in (a, b):
        p = _point(d)
        if p and geo.distance_m(p.lat, p.lon, fix.lat, fix.lon) > 2 * p.accuracy_m + NEAR_M:
            return None
    return Position(fix.lat, fix.lon, fix.accuracy_m, "triangulated")


def best_position(members: list[Detection]) -> Position | None:
    cameras = [m for m in members if m.bearing_deg is not None]
    towers = {}
    for m in cameras:  # one bearing per tower: the most confident
        key = (round(m.camera_lat, 4), round(m.camera_lon, 4))
        if key not in towers or m.confidence > towers[key].confidence:
            towers[key] = m
    options = [p for m in members if (p := _point(m))]
    options += [f for a, b in itertools.combinations(towers.values(), 2) if (f := _fix(a, b))]
    return min(options, key=lambda p: p.accuracy_m, default=None)


def combined_confidence(members: list[Detection]) -> float:
    """Independent witnesses add up: 1 − Π(1 − best confidence of each). Each tower is its own witness (two
    towers whose bearings cross on one fire confirm each other, fire-detection.md §3.2); two tracks of one
    tower, or of two cameras on one mast, are one witness; satellite pixels together are one more."""
    best: dict[tuple, float] = {}
    for m in members:
        key = _witness(m)
        best[key] = max(best.get(key, 0.0), m.confidence)
    miss = 1.0
    for c in best.values():
        miss *= 1 - c
    return round(min(0.99, 1 - miss), 3)


def _witness(d: Detection) -> tuple:
    """Who saw it: a source kind, and for cameras the tower (masts within about 10 m are one tower)."""
    if d.source in ("camera", "thermal") and d.camera_lat is not None:
        return d.source, round(d.camera_lat, 4), round(d.camera_lon, 4)
    return (d.source,)


def recompute(conn: psycopg.Connection, event_id: int, locate: Locate) -> None:
    members = load_detections(conn, "event_id = %s", (event_id,))
    position = best_position(members)
    division = locate(position.lon, position.lat) if position else None
    division = division or next((m.division_code for m in members if m.division_code), None)
    conn.execute(
        """
        update fire_event set first_seen = %s, last_seen = %s, lat = %s, lon = %s, accuracy_m = %s,
                              position_method = %s, division_code = %s, confidence = %s, sources = %s,
                              touched_at = now()
         where id = %s
        """,
        (min(m.first_seen for m in members), max(m.last_seen for m in members),
         position.lat if position else None, position.lon if position else None,
         round(position.accuracy_m, 1) if position else None, position.method if position else "unknown",
         division, combined_confidence(members), sorted({m.source for m in members}), event_id),
    )
