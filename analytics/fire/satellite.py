"""Importing a FIRMS file: hotspots inside Suihua, away from known static heat sources, become satellite
detections and join (or start) fire events."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from analytics.fire import firms, fusion, geometry
from analytics.fire.pipeline import FireSink
from analytics.fire.store import Detection, heat_sources, insert_detection
from ingest.writer import DeadLetter, write_dead_letters


@dataclass
class FirmsReport:
    rows: int = 0
    stored: int = 0
    outside: int = 0
    heat_source: int = 0
    not_vegetation: int = 0
    repeated: int = 0
    errors: list[str] = field(default_factory=list)
    events: set[int] = field(default_factory=set)


def import_firms(conn: psycopg.Connection, text: str, name: str, sink: FireSink, locate: fusion.Locate
                 ) -> FirmsReport:
    """One transaction; a file without the FIRMS columns is dead-lettered and raises ``FirmsError``,
    bad rows are dead-lettered one by one and the rest imported."""
    topic = f"firms:{name}"
    try:
        hotspots, bad = firms.parse(text)
    except firms.FirmsError as exc:
        with conn.transaction():
            write_dead_letters(conn, [DeadLetter(topic, None, text.encode()[:1 << 20], str(exc))])
        raise
    report = FirmsReport(rows=len(hotspots) + len(bad), errors=[reason for _, _, reason in bad])
    with conn.transaction():
        if bad:
            write_dead_letters(conn, [DeadLetter(topic, None, line.encode(), reason) for _, line, reason in bad])
        sources = heat_sources(conn)
        for spot in hotspots:
            _one(conn, spot, sources, report, sink, locate)
    return report


def _one(conn: psycopg.Connection, spot: firms.Hotspot, sources: list, report: FirmsReport, sink: FireSink,
         locate: fusion.Locate) -> None:
    if spot.fire_type in firms.STATIC_TYPES:
        report.not_vegetation += 1
        return
    division = locate(spot.lon, spot.lat)
    if division is None:
        report.outside += 1
        return
    if any(geometry.distance_m(lat, lon, spot.lat, spot.lon) <= radius for _, lat, lon, radius in sources):
        report.heat_source += 1
        return
    detection = Detection(
        source="satellite", cue="hotspot", track=spot.key, first_seen=spot.at, last_seen=spot.at,
        confidence=spot.confidence, position="satellite", lat=spot.lat, lon=spot.lon, accuracy_m=spot.accuracy_m,
        division_code=division,
        satellite={"satellite": spot.satellite, "instrument": spot.instrument, "confidence": spot.confidence_text,
                   "brightness_k": spot.brightness_k, "frp_mw": spot.frp_mw, "scan_km": spot.scan_km,
                   "track_km": spot.track_km, "daynight": spot.daynight, "row": spot.row},
    )
    detection_id = insert_detection(conn, detection)
    if detection_id is None:
        report.repeated += 1
        return
    event_id = fusion.attach(conn, detection_id, locate)
    sink.fire_event(conn, event_id)
    report.stored += 1
    report.events.add(event_id)
