"""Straw fires: fire events with their detections, evidence pictures, FIRMS imports, heat sources."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from alerts import fire as fire_alerts
from alerts.queries import fire_event_in_view, fire_event_visible
from analytics.fire import firms
from analytics.fire import store as fire_store
from api.auth import Operator, PlatformAdmin, Reader
from api.deps import ConnDep
from api.guard import MAX_UPLOAD_BYTES
from api.routes.filters import division_subtree
from api.routes.paging import After, Limit, cursor, page
from api.schemas import BINARY, AlertStatus, FireEventColumns, FireEventSummary, Instant, Page, Severity
from registry import audit, heat_sources
from registry.errors import Invalid, NotFound
from registry.lookups import division_index

router = APIRouter(prefix="/api/v1", tags=["fire"])

_DETECTION = """
    select d.id, d.event_id, d.source, d.cue, t.code as terminal, t.name as terminal_name, d.preset, d.first_seen,
           d.last_seen, d.confidence, d.box, d.frame_size, d.camera_lat, d.camera_lon, d.bearing_deg,
           d.halfwidth_deg, d.lat, d.lon, d.accuracy_m, d.position, d.division_code as division, d.satellite,
           exists (select 1 from fire_evidence e where e.detection_id = d.id) as has_evidence
      from fire_detection d left join terminal t on t.id = d.terminal_id
"""


class FireAlert(BaseModel):
    id: int
    status: AlertStatus
    severity: Severity
    detail: str


class SatelliteHotspot(BaseModel):
    """A FIRMS row as read."""
    satellite: str
    instrument: str = Field(description="VIIRS or MODIS")
    confidence: str = Field(description="FIRMS's own confidence (l/n/h or a percentage)")
    brightness_k: float | None
    frp_mw: float | None = Field(description="fire radiative power")
    scan_km: float
    track_km: float
    daynight: str | None
    row: int = Field(description="the row of the imported file")


class FireDetection(BaseModel):
    id: int
    event_id: int | None
    source: Literal["camera", "thermal", "satellite"]
    cue: Literal["flame", "smoke", "hotspot"]
    terminal: str | None = Field(description="city code of the camera, if any")
    terminal_name: str | None
    preset: int | None = Field(description="the PTZ preset the camera looked through")
    first_seen: dt.datetime
    last_seen: dt.datetime
    confidence: float
    box: list[int] | None = Field(description="x, y, width, height in the frame, pixels")
    frame_size: list[int] | None = Field(description="width, height of the frame, pixels")
    camera_lat: float | None
    camera_lon: float | None
    bearing_deg: float | None = Field(description="bearing from the camera to the fire, degrees from north")
    halfwidth_deg: float | None = Field(description="half the bearing's uncertainty")
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    position: Literal["ground", "bearing", "unknown", "satellite"] = Field(
        description="how it was placed: on the ground plane, a bearing only, a satellite pixel, or not at all")
    division: str | None
    satellite: SatelliteHotspot | None = Field(description="the FIRMS row, for a satellite hotspot")
    evidence_url: str | None = Field(description="its annotated frame, if one was kept")


class FireEvent(FireEventColumns):
    verdict: Literal["straw", "residue", "other_heat", "false"] | None
    verdict_note: str | None
    alert: FireAlert | None = Field(description="the alert it raised, if any")
    detections: list[FireDetection]


class FirmsImport(BaseModel):
    rows: int = Field(description="rows in the file")
    stored: int = Field(description="hotspots stored and fused into fire events")
    outside_suihua: int
    near_heat_source: int
    not_vegetation: int
    repeated: int = Field(description="hotspots imported before")
    errors: list[str] = Field(description="why rows could not be read (the first 100)")
    events: list[int] = Field(description="the fire events the stored hotspots joined")


class HeatSource(BaseModel):
    id: int
    name: str
    kind: Literal["power_plant", "factory", "flare", "boiler", "other"]
    lat: float
    lon: float
    radius_m: float = Field(description="satellite hotspots this close are not fires")
    division_code: str | None
    note: str | None
    created_at: dt.datetime


@router.get("/fire-events", response_model=Page[FireEventSummary])
def list_fire_events(
    conn: ConnDep,
    who: Reader,
    status: Literal["open", "closed"] | None = None,
    verdict: Literal["straw", "residue", "other_heat", "false", "none"] | None = None,
    division: Annotated[str | None, Query(description="division code; its whole subtree")] = None,
    start: Annotated[Instant | None, Query(alias="from", description="fires seen at or after")] = None,
    after: After = None,
    limit: Limit = 100,
) -> Page[FireEventSummary]:
    """Newest first, one page at a time, each with its alert (if it raised one); a department sees the fires it
    receives alerts of."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""
            select e.id, e.status, e.first_seen, e.last_seen, e.lat, e.lon, e.accuracy_m, e.position_method,
                   e.division_code as division, v.name as division_name, e.confidence, e.sources, e.closed_at,
                   e.verdict, e.verified_by, e.verified_at,
                   a.id as alert_id, a.status as alert_status,
                   (select count(*) from fire_detection d where d.event_id = e.id) as detections
              from fire_event e left join division v on v.code = e.division_code
              left join alert a on a.fire_event_id = e.id
             where (%(status)s::text is null or e.status = %(status)s)
               and (%(verdict)s::text is null or coalesce(e.verdict, 'none') = %(verdict)s)
               and (%(division)s::text[] is null or e.division_code = any(%(division)s))
               and (%(start)s::timestamptz is null or e.last_seen >= %(start)s)
               and (%(before)s::bigint is null or e.id < %(before)s)
               and (%(visible_to)s::text is null or {fire_event_visible("e")})
             order by e.id desc limit %(limit)s
            """,
            {"status": status, "verdict": verdict, "division": division_subtree(conn, division), "start": start,
             "before": cursor(after), "limit": limit + 1, "visible_to": who.scope},
        ).fetchall()
    data, next_cursor = page(rows, limit)
    return Page[FireEventSummary](data=data, next=next_cursor)


@router.get("/fire-events/{event_id}", response_model=FireEvent)
def get_fire_event(conn: ConnDep, who: Reader, event_id: int) -> FireEvent:
    """The event and every detection in it; evidence pictures at ``/fire-detections/{id}/evidence.jpg``."""
    event = fire_store.event(conn, event_id)
    if event is None or not fire_event_in_view(conn, event_id, who.scope):
        raise NotFound(f"fire event {event_id} does not exist", field="id")
    with conn.cursor(row_factory=dict_row) as cur:
        detections = cur.execute(_DETECTION + " where d.event_id = %s order by d.first_seen, d.id",
                                 (event_id,)).fetchall()
        alert = cur.execute("select id, status, severity, detail from alert where fire_event_id = %s",
                            (event_id,)).fetchone()
    for d in detections:
        d["evidence_url"] = f"/api/v1/fire-detections/{d['id']}/evidence.jpg" if d.pop("has_evidence") else None
    return FireEvent(**event, alert=alert, detections=detections)


class Verdict(BaseModel):
    verdict: Literal["straw", "residue", "other_heat", "false"] = Field(
        description="straw 秸秆露天焚烧, residue 根茬及残余物焚烧, other_heat another heat source, false no fire")
    note: str | None = Field(default=None, max_length=2000)


@router.post("/fire-events/{event_id}/verdict", response_model=FireEvent)
def fire_verdict(conn: ConnDep, who: Operator, event_id: int, body: Verdict) -> FireEvent:
    """Record what was found on the spot; acknowledges (straw, residue) or closes (other_heat, false) the alert."""
    get_fire_event(conn, who, event_id)
    with conn.transaction():
        fire_alerts.record_verdict(conn, event_id, body.verdict, who.login, body.note)
        audit.record(conn, who.actor(), "verdict", "fire_event", str(event_id), after=body.model_dump())
    return get_fire_event(conn, who, event_id)


@router.get("/fire-detections/{detection_id}/evidence.jpg", response_class=Response,
            responses={200: {"content": {"image/jpeg": BINARY}}})
def evidence(conn: ConnDep, who: Reader, detection_id: int) -> Response:
    """The annotated frame kept when the detection was made (or grew more certain)."""
    row = conn.execute("select f.jpeg, f.captured_at, d.event_id from fire_evidence f "
                       "join fire_detection d on d.id = f.detection_id where f.detection_id = %s",
                       (detection_id,)).fetchone()
    if row is None or not (who.scope is None or (row[2] and fire_event_in_view(conn, row[2], who.scope))):
        raise NotFound(f"detection {detection_id} has no evidence picture", field="id")
    return Response(bytes(row[0]), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=60", "Last-Modified": row[1].strftime(
                        "%a, %d %b %Y %H:%M:%S GMT")})


@router.post("/firms", max_body_size=MAX_UPLOAD_BYTES, response_model=FirmsImport)
def upload_firms(
    conn: ConnDep,
    who: PlatformAdmin,
    file: Annotated[UploadFile, File(description="NASA FIRMS CSV (VIIRS or MODIS, NRT or archive)")],
) -> FirmsImport:
    """Import satellite hotspots: inside Suihua, away from known heat sources, fused into fire events. A row that
    cannot be read (or holds a NUL) is dead-lettered with its reason and the others imported. Parsing and writing
    run in the thread pool: a large file does not hold up other requests."""
    from analytics.fire.satellite import import_firms  # the camera pipeline's OpenCV and ONNX Runtime: imported on
    # the first upload, not by every start of the API (a fifth of its import's CPU, on a restarted `up`'s path)

    try:
        text = file.file.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("a FIRMS file is UTF-8 CSV", field="file") from exc
    index = division_index(conn)
    name = (file.filename or "upload").replace("\x00", "")[:200]
    try:
        report = import_firms(conn, text, name, fire_alerts, index.locate)
        audit.record(conn, who.actor(), "import", "firms", name,
                     summary=f"FIRMS import of {report.rows} row(s), {report.stored} stored")
    except firms.FirmsError as exc:
        conn.commit()  # keep the dead letter
        raise Invalid(str(exc), field="file") from exc
    conn.commit()
    return FirmsImport(rows=report.rows, stored=report.stored, outside_suihua=report.outside,
                       near_heat_source=report.heat_source, not_vegetation=report.not_vegetation,
                       repeated=report.repeated, errors=report.errors[:100], events=sorted(report.events))


@router.get("/heat-sources", response_model=Page[HeatSource])
def list_heat_sources(conn: ConnDep, after: After = None, limit: Limit = 100) -> Page[HeatSource]:
    """Known heat sources in name order, one page at a time (`next` is the page's last name)."""
    data, next_cursor = page(heat_sources.list_all(conn, after=after, limit=limit + 1), limit, key="name")
    return Page[HeatSource](data=data, next=next_cursor)


@router.post("/heat-sources", status_code=201, response_model=HeatSource)
def add_heat_source(conn: ConnDep, who: PlatformAdmin, item: heat_sources.HeatSourceIn) -> HeatSource:
    """A known heat source (plant, boiler, flare): satellite hotspots near it are not fires (platform admin)."""
    with conn.transaction():
        source = heat_sources.add(conn, item)
        audit.record(conn, who.actor(), "create", "heat_source", str(source["id"]), after=jsonable_encoder(source))
    return HeatSource(**source)


@router.delete("/heat-sources/{source_id}", status_code=204)
def delete_heat_source(conn: ConnDep, who: PlatformAdmin, source_id: int) -> Response:
    with conn.transaction():
        heat_sources.remove(conn, source_id)
        audit.record(conn, who.actor(), "delete", "heat_source", str(source_id))
    return Response(status_code=204)
