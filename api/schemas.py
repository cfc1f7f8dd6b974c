"""Response envelopes shared by the routes, and the one error body of every 4xx and 5xx answer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, Field

T = TypeVar("T")


def _rfc3339(value: object) -> object:
    """Pydantic would read a bare number as Unix seconds; the schema (and a person) means RFC 3339 text."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1)
                                          .isdigit()):
        raise ValueError("a time is RFC 3339 text, e.g. 2026-11-29T08:00:00+08:00, not a number")
    return value


Instant = Annotated[dt.datetime, BeforeValidator(_rfc3339)]
"""A point in time given as a query parameter."""


class Page(BaseModel, Generic[T]):
    data: list[T]
    next: str | None = Field(description="pass as `after` for the next page; null on the last page")
    count: int | None = Field(default=None, description="total matches, when asked for with count=true")


BINARY = {"schema": {"type": "string", "format": "binary"}}
"""The OpenAPI content of a file answered as it is (an image, a spreadsheet): bytes, not JSON."""


class Created(BaseModel):
    code: str


# -- alerts and incidents ----------------------------------------------------------------------------------

AlertStatus = Literal["open", "acknowledged", "resolved", "closed"]
Severity = Literal["info", "warning", "critical"]
Bureau = Literal["environment", "housing", "steward"]
Family = Literal["river", "sewage", "gas", "water", "heating", "device", "fire"]


class Alert(BaseModel):
    id: int
    terminal: str | None = Field(description="city code of the terminal; null for a straw fire (see fire_event)")
    terminal_name: str | None
    kind: str | None = Field(description="terminal kind")
    pole: str | None = Field(description="city code of the host smart pole, if any")
    rule: str = Field(description="e.g. gb3838:w21003, gas:methane, device:stuck:a34004")
    family: Family
    severity: Severity
    bureau: Bureau
    department: str = Field(description="steward department of the terminal")
    division: str
    status: AlertStatus
    metric: str | None = Field(description="the series judged (null for a straw fire)")
    unit: str | None
    value: float | None = Field(description="the worst value of the episode, in `unit`")
    limit: float | None = Field(description="the limit crossed, in `unit` (for a GB 3838 class rule: the limit of "
                                            "the section's target class)")
    direction: Literal["above", "below", "falling", "stuck", "jump", "drift", "silent"] | None = Field(
        description="how the value crossed the limit: above, below, falling (a rate), or the device fault")
    standard: str | None = Field(description="the standard and version applied, e.g. GB 3838-2002")
    grade: str | None = Field(description="class reached (GB 3838), discharge grade (GB 18918) or alarm level "
                                          "(gas)")
    detail: str = Field(description="a human summary of the fields above")
    observed_start: dt.datetime = Field(description="observation time the condition began")
    observed_end: dt.datetime | None = Field(description="observation time it cleared; null while it goes on")
    incident_id: int | None
    opened_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    fire_event_id: int | None


class AlertEvent(BaseModel):
    at: dt.datetime
    actor: str
    action: Literal["open", "update", "acknowledge", "resolve", "close", "retract", "comment"]
    comment: str | None


class EvidenceReading(BaseModel):
    ts: dt.datetime
    value: float
    flag: str | None = Field(description="HJ 212 data flag")


class AlertDetail(Alert):
    events: list[AlertEvent]
    readings: list[EvidenceReading] = Field(description="the alert's series from an hour before it began to its "
                                                        "end (at most 2,000); empty for a straw fire")
    fire_event: str | None = Field(default=None, description="the straw fire's detections, for a fire alert")


class Incident(BaseModel):
    id: int
    key: str = Field(description="pole:{code}, river:{river}:{first station}, gas:{lat}:{lon}")
    title: str
    bureau: Bureau
    division: str
    status: Literal["open", "closed"]
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    alerts: int = Field(description="alerts in the incident that the caller receives")
    active_alerts: int = Field(description="of those, open or acknowledged")


class Problem(BaseModel):
    field: str | None = Field(description="the input at fault: a body field (attrs.river), a query or path "
                                          "parameter, or null for the request as a whole")
    message: str


class ErrorOut(BaseModel):
    """What every refused or failed request answers, whatever its status."""

    detail: str = Field(description="what is wrong, in words a person can act on")
    field: str | None = Field(default=None, description="the input at fault, when there is one")
    problems: list[Problem] = Field(default_factory=list,
                                    description="every problem found, when the request has several (schema errors)")


# -- logs paged as {data, next} ----------------------------------------------------------------------------

class DeadLetter(BaseModel):
    id: int
    received_at: dt.datetime
    topic: str
    publisher: str | None = Field(description="city code in the topic, when there is one")
    reason: str = Field(description="why the message (or some of its readings) was refused")
    stored: int = Field(description="readings of the message that were stored nevertheless")
    suppressed: int = Field(description="dead letters of the same source left out before this one (over budget)")
    payload_bytes: int = Field(description="the payload's full size")
    payload_text: str = Field(description="the first 2,000 bytes of the payload, as UTF-8 (invalid bytes replaced)")


class FireEventSummary(BaseModel):
    id: int
    status: Literal["open", "closed"]
    first_seen: dt.datetime
    last_seen: dt.datetime
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    position_method: Literal["triangulated", "satellite", "camera", "unknown"]
    division: str | None = Field(description="division code of the position")
    division_name: str | None
    confidence: float
    sources: list[str] = Field(description="camera, thermal, satellite")
    closed_at: dt.datetime | None
    verdict: str | None = Field(description="what the township found: straw, residue, other_heat, false")
    verified_by: str | None
    verified_at: dt.datetime | None
    alert_id: int | None = Field(description="the alert it raised, if any")
    alert_status: AlertStatus | None
    detections: int


class Delivery(BaseModel):
    id: int
    event_id: int = Field(description="the alert feed entry delivered")
    kind: str
    alert_id: int | None
    replay: bool
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_at: dt.datetime
    last_status: int | None = Field(description="the endpoint's last HTTP status")
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    latency_ms: float | None


# -- telemetry: newest values and connection state ------------------------------------------------------------

ConnectionState = Literal["online", "offline", "silent", "never"]


class LatestReading(BaseModel):
    metric: str
    ts: dt.datetime = Field(description="observation time of the newest value")
    value: float
    flag: str | None = Field(description="HJ 212 data flag, if the device sent one")
    unit: str | None


class TerminalLatest(BaseModel):
    code: str
    state: ConnectionState
    last_seen_at: dt.datetime | None
    readings: list[LatestReading] = Field(description="the newest value of each metric")


class PoleLatest(BaseModel):
    pole: str
    terminals: list[TerminalLatest] = Field(description="every terminal the pole carries that the caller reads")


class TerminalState(BaseModel):
    code: str
    state: ConnectionState = Field(description="online, offline (its last will or its pole's), silent (nothing for "
                                               "three expected intervals) or never heard")
    last_seen_at: dt.datetime | None
    last_reading_at: dt.datetime | None
    report_interval_s: int
    connection: str | None = Field(description="what the device (or its pole) last said: online or offline")


class TerminalStateRow(BaseModel):
    code: str
    name: str
    kind: str
    department: str
    division: str | None
    state: ConnectionState
    last_seen_at: dt.datetime | None
    last_reading_at: dt.datetime | None
    report_interval_s: int


class StateCount(BaseModel):
    department: str
    state: ConnectionState
    terminals: int


class Reading(BaseModel):
    ts: dt.datetime = Field(description="observation time")
    metric: str
    value: float
    flag: str | None = Field(description="HJ 212 data flag, if the device sent one")
    received_at: dt.datetime = Field(description="when the platform stored it")


class Readings(BaseModel):
    """Raw readings, a page at a time."""
    code: str
    data: list[Reading]
    next: str | None = Field(description="pass as `after` for the next page; null on the last page")


class Bucket(BaseModel):
    bucket: dt.datetime = Field(description="start of the time bucket")
    metric: str
    avg: float
    min: float
    max: float
    count: int


class Buckets(BaseModel):
    """Readings in time buckets (``interval``), the whole window at once."""
    code: str
    interval: str
    data: list[Bucket]


# -- the live stream: each Server-Sent Event's `data:` -------------------------------------------------------------
# The feed entry as `alerts.feed.read_feed` reads it (webhooks POST the same, plus `replay`); `payload` is the
# changed row as the trigger stored it (`to_jsonb(new)`, migration 0030): table columns, not the API's `Alert`.

Direction = Literal["above", "below", "falling", "stuck", "jump", "drift", "silent"]
AlertAction = Literal["open", "update", "acknowledge", "resolve", "close", "retract", "comment"]
RowChange = Literal["insert", "update"]


class AlertRow(BaseModel):
    """An alert row after the change (the columns behind `Alert`: codes are ids here)."""
    id: int
    terminal_id: int | None = Field(description="the terminal's internal id; null for a straw fire")
    rule: str
    family: Family
    severity: Severity
    bureau: Bureau
    department_code: str
    division_code: str
    status: AlertStatus
    observed_start: dt.datetime
    observed_end: dt.datetime | None
    worst_value: float | None = Field(description="`value` of `Alert`")
    detail: str
    incident_id: int | None
    opened_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    fire_event_id: int | None
    metric: str | None
    unit: str | None
    limit_value: float | None = Field(description="`limit` of `Alert`")
    direction: Direction | None
    standard: str | None
    grade: str | None
    verdict: str | None = Field(description="the steward's word on a drift alert: sensor_ok, fixing")
    acknowledged_at: dt.datetime | None


class AlertEventRow(AlertEvent):
    """An entry of an alert's history (`AlertEvent`, with its ids)."""
    id: int
    alert_id: int


class IncidentRow(BaseModel):
    """An incident row after the change (`Incident` without the alert counts)."""
    id: int
    key: str
    title: str
    bureau: Bureau
    division_code: str
    status: Literal["open", "closed"]
    opened_at: dt.datetime
    closed_at: dt.datetime | None


class FireEventColumns(BaseModel):
    """The columns of a fire event row, as the API shows them (`FireEvent`) and the stream carries them."""
    id: int
    status: Literal["open", "closed"]
    first_seen: dt.datetime
    last_seen: dt.datetime
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    position_method: Literal["triangulated", "satellite", "camera", "unknown"]
    division_code: str | None
    confidence: float
    sources: list[str] = Field(description="camera, thermal, satellite")
    touched_at: dt.datetime = Field(description="when a detection last joined or extended it (wall clock)")
    closed_at: dt.datetime | None
    verified_by: str | None
    verified_at: dt.datetime | None


class FireEventRow(FireEventColumns):
    """A fire event row after the change (the columns behind `FireEventSummary`)."""
    verdict: str | None
    verdict_note: str | None


class StreamEventBase(BaseModel):
    id: int = Field(description="the event id (also the SSE `id:`): resume after it with Last-Event-ID or ?after=")
    at: dt.datetime = Field(description="when the change committed")
    alert_id: int | None = Field(description="the alert concerned (for a fire event: its alert, once raised)")
    incident_id: int | None
    fire_event_id: int | None
    family: Family | None = Field(description="of the alert concerned; null without one")
    bureau: Bureau | None
    department: str | None = Field(description="steward department of the alert concerned")
    division: str | None
    severity: Severity | None


class AlertStreamEvent(StreamEventBase):
    """`event: alert`: an alert opened, or its status, severity, incident or routing changed."""
    kind: Literal["alert"]
    action: RowChange
    payload: AlertRow


class AlertHistoryStreamEvent(StreamEventBase):
    """`event: alert_event`: an entry added to an alert's history (the step taken is `action`)."""
    kind: Literal["alert_event"]
    action: AlertAction
    payload: AlertEventRow


class IncidentStreamEvent(StreamEventBase):
    """`event: incident`: an incident opened or closed."""
    kind: Literal["incident"]
    action: RowChange
    payload: IncidentRow


class FireStreamEvent(StreamEventBase):
    """`event: fire_event`: a straw fire opened, closed or given a verdict."""
    kind: Literal["fire_event"]
    action: RowChange
    payload: FireEventRow


StreamEvent = Annotated[AlertStreamEvent | AlertHistoryStreamEvent | IncidentStreamEvent | FireStreamEvent,
                        Field(discriminator="kind", json_schema_extra={"type": "object"})]
"""The JSON of one event's ``data:`` line; its ``event:`` name is ``kind``."""
