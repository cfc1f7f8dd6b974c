"""Alerts for the bureaus: list, detail with the readings that caused them, lifecycle actions; incidents."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from alerts import queries, service
from api.auth import Operator, Reader, forbid
from api.deps import ConnDep
from api.routes.filters import department_code, division_subtree
from api.routes.paging import After, Limit, cursor, page
from api.schemas import Alert, AlertDetail, AlertStatus, Bureau, Family, Incident, Instant, Page, Severity
from registry import audit, codes
from registry.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["alerts"])


class Action(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)
    verdict: Literal["sensor_ok", "fixing"] | None = Field(
        default=None, description="acknowledging an analyser's device:drift alert (open, or resolved: the creep "
        "stopped, the analyser still off), the steward's word; only its terminal's steward department gives it: "
        "sensor_ok (checked, it reads true: the bureau's alert is paged at once) or fixing (its escalation waits "
        "until the readings come back under the limit, 24 h after the acknowledgement at most; the same as no "
        "verdict)")


TerminalCode = Annotated[str | None, Query(description="city code of the terminal")]
PoleCode = Annotated[str | None, Query(description="city code of the smart pole carrying the terminal")]
Metric = Annotated[str | None, Query(description="metric key, e.g. w21003, methane_lel, w01018:avg:day")]


@router.get("/alerts", response_model=Page[Alert])
def list_alerts(
    conn: ConnDep,
    who: Reader,
    status: AlertStatus | None = None,
    bureau: Annotated[Bureau | None, Query(description="environment (rivers, sewage), housing (gas, water, heating), "
                                                       "steward (device faults)")] = None,
    division: Annotated[str | None, Query(description="division code; its whole subtree")] = None,
    family: Family | None = None,
    severity: Severity | None = None,
    department: Annotated[str | None, Query(description="steward department, code or name")] = None,
    terminal: TerminalCode = None,
    pole: PoleCode = None,
    metric: Metric = None,
    start: Annotated[Instant | None, Query(alias="from", description="alerts still on at or after")] = None,
    end: Annotated[Instant | None, Query(alias="to", description="alerts started before")] = None,
    after: After = None,
    limit: Limit = 100,
) -> Page[Alert]:
    """The alerts the caller's department receives, newest first, one page at a time."""
    rows = queries.list_alerts(conn, status=status, bureau=bureau, division=division_subtree(conn, division),
                               family=family, severity=severity, department=department_code(conn, department),
                               terminal=codes.normalise(terminal) if terminal else None,
                               pole=codes.normalise(pole) if pole else None, metric=metric, start=start, end=end,
                               before_id=cursor(after), limit=limit + 1, visible_to=who.scope)
    data, next_cursor = page(rows, limit)
    return Page[Alert](data=data, next=next_cursor)


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(conn: ConnDep, who: Reader, alert_id: int) -> AlertDetail:
    """The alert, its history, and the readings that caused it (from an hour before it started)."""
    alert = queries.get_alert(conn, alert_id, who.scope)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist", field="id")
    events = queries.alert_events(conn, alert_id)
    if alert["fire_event_id"] is not None:  # a straw fire: its detections are at /fire-events/{id}
        return AlertDetail(**alert, events=events, readings=[],
                           fire_event=f"/api/v1/fire-events/{alert['fire_event_id']}")
    return AlertDetail(**alert, events=events, readings=queries.evidence(conn, alert_id, alert["metric"]))


@router.post("/alerts/{alert_id}/{action}", response_model=AlertDetail)
def alert_action(conn: ConnDep, who: Operator, alert_id: int,
                 action: Literal["acknowledge", "resolve", "close", "comment"], body: Action | None = None
                 ) -> AlertDetail:
    """acknowledge (open → acknowledged), resolve, close, or comment an alert the caller's department receives;
    who and when are kept, in the alert's history and the audit log. A verdict is the steward's word on its own
    analyser: only on a ``device:drift:…`` alert (422 otherwise), open or resolved (a resolved one stays resolved),
    only by the terminal's steward department (403 otherwise: not a department reading it by a grant, nor the
    platform admin). A department reading the alert only by a grant reads but does not act (403): acting is for
    the terminal's steward department, the departments the alert is routed to, and the platform admin."""
    alert = get_alert(conn, who, alert_id)
    if not queries.acts_on(conn, alert_id, who.scope):
        raise forbid(f"alert {alert_id} is read by a grant; its steward department or the departments it is routed "
                     "to act on it")
    comment, verdict = (body.comment, body.verdict) if body else (None, None)
    if verdict is not None and who.department != alert.department:
        raise forbid(f"the verdict on alert {alert_id}'s analyser is its steward's ({alert.department}) to give")
    with conn.transaction():
        service.act(conn, alert_id, action, who.login, comment, verdict)
        said = {key: value for key, value in (("comment", comment), ("verdict", verdict)) if value}
        audit.record(conn, who.actor(), action, "alert", str(alert_id), after=said or None)
    return get_alert(conn, who, alert_id)


@router.get("/incidents", response_model=Page[Incident])
def list_incidents(conn: ConnDep, who: Reader, status: Literal["open", "closed"] | None = None,
                   terminal: TerminalCode = None, pole: PoleCode = None, metric: Metric = None, after: After = None,
                   limit: Limit = 100) -> Page[Incident]:
    """Related alerts grouped: sensors on one pole, stations along one river, neighbouring gas points; newest
    first, one page at a time. With terminal, pole or metric: the incidents with such an alert."""
    rows = queries.list_incidents(conn, status=status, terminal=codes.normalise(terminal) if terminal else None,
                                  pole=codes.normalise(pole) if pole else None, metric=metric,
                                  before_id=cursor(after), limit=limit + 1, visible_to=who.scope)
    data, next_cursor = page(rows, limit)
    return Page[Incident](data=data, next=next_cursor)
