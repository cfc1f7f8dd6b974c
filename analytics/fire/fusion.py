"""Fusion: detections from cameras, thermal cameras and satellites that see the same fire become one
fire event, with its sources, best position, confidence and first-seen time.

Two detections are the same fire when, within ``WINDOW``:
- the same camera looks the same way (bearings within their half-widths);
- both have a ground point, closer than ``NEAR_M`` plus their accuracies;
- one has a point and the other only a bearing: the ray passes the point within its accuracy;
- two towers' bearings cross (triangulation), consistently with any ground estimates they have.
A bearing alone (no ground point) does not join an event whose ground points from other towers its ray
misses: it crosses that fire's bearing somewhere else (horizon texture listed as smoke crossed a real plume's
bearing 1.25 km from the fire, session 11).
The event's position is the most accurate of: a triangulated fix, a satellite pixel, a camera's ground
estimate; a fix only where it agrees with the event's ground points, and one through a listed ray (below
``ALERT_CONFIDENCE``) only where no two paging rays cross and it lies within those points' accuracy.
Fusion runs under one advisory lock, so two workers never split one fire into two events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from analytics.fire import geometry as geo
from analytics.fire.store import Detection, load_detections

WINDOW = dt.timedelta(hours=2)
NEAR_M = 1000.0
MAX_ACCURACY_M = 3000.0
FUSION_LOCK = 0x46495245  # "FIRE"
ALERT_CONFIDENCE = 0.5
"""Events below this page nobody (``alerts.fire`` takes it from here); a detection below it is *listed*."""

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
        if _misses(det, members):
            continue
        score = min((s for m in members if (s := _match(det, m)) is not None), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, event_id)
    return best[1] if best else None


def _misses(det: Detection, members: list[Detection]) -> bool:
    """Whether ``det`` is a bearing alone whose ray passes none of the ground points other towers gave this
    event (each grown by its accuracy, the ray by its half-width and a degree): it crosses that fire's
    bearing elsewhere, so it is another fire or none."""
    if det.bearing_deg is None or _point(det) is not None:
        return False
    points = [p for m in members if not _same_tower(det, m) and (p := _point(m))]
    return bool(points) and not any(_on_ray(det, p) for p in points)


def _on_ray(det: Detection, p: Position) -> bool:
    """Whether ``det``'s ray (its half-width and a degree more) passes within ``p``'s accuracy of it: a far
    ground estimate is hundreds of metres off along its own ray, and the point alone fell outside a crossing
    tower's cone (the fire of test_events split into two events)."""
    reach = geo.distance_m(det.camera_lat, det.camera_lon, p.lat, p.lon)
    grown = det.halfwidth_deg + 1 + math.degrees(math.atan2(p.accuracy_m, max(reach, 1.0)))
    return geo.within_cone(p.lat, p.lon, det.camera_lat, det.camera_lon, det.bearing_deg, grown)


def _same_tower(a: Detection, b: Detection) -> bool:
    return ((a.terminal_id is not None and a.terminal_id == b.terminal_id)
            or (a.camera_lat is not None and b.camera_lat is not None
                and geo.distance_m(a.camera_lat, a.camera_lon, b.camera_lat, b.camera_lon) < 50))


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
    if _same_tower(a, b):
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
            return 0.0 if _on_ray(cam, point) else None
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
    """The most accurate of the members' ground points and the fixes where two towers' bearings cross. Every
    crossing of two towers' bearings is tried, not only each tower's most confident one (a spurious ray may be
    as confident as the fire's); a fix counts only where it agrees with every ground point of the event
    (within twice its accuracy). A fix through a *listed* ray (below ``ALERT_CONFIDENCE``) counts only
    where no two paging rays cross and within each ground point's accuracy: a listed ray must not move an
    event that stronger witnesses place."""
    points = [p for m in members if (p := _point(m))]
    rays = [m for m in members if m.bearing_deg is not None and m.camera_lat is not None]
    fixes: list[tuple[bool, Position]] = []
    for a, b in itertools.combinations(rays, 2):
        if _same_tower(a, b) or (fix := _fix(a, b)) is None:
            continue
        listed = min(a.confidence, b.confidence) < ALERT_CONFIDENCE
        slack = 1.0 if listed else 2.0
        if all(geo.distance_m(p.lat, p.lon, fix.lat, fix.lon) <= slack * p.accuracy_m for p in points):
            fixes.append((listed, fix))
    if any(not listed for listed, _ in fixes):
        fixes = [(listed, f) for listed, f in fixes if not listed]
    options = points + [f for _, f in fixes]
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
