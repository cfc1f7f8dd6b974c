"""Alerts for the bureaus: list, detail with the readings that caused them, lifecycle actions; incidents."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from alerts import queries, service
from analytics.queries import terminal_by_code
from analytics.rules import rules_for
from api.auth import Operator, Reader
from api.deps import ConnDep
from api.routes.filters import department_code, division_subtree
from api.schemas import Instant
from registry import audit
from registry.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["alerts"])


class Action(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


@router.get("/alerts")
def list_alerts(
    conn: ConnDep,
    who: Reader,
    status: Literal["open", "acknowledged", "resolved", "closed"] | None = None,
    bureau: Annotated[Literal["environment", "housing", "steward"] | None,
                      Query(description="environment (rivers, sewage), housing (gas, water, heating), steward "
                                        "(device faults)")] = None,
    division: Annotated[str | None, Query(description="division code; its whole subtree")] = None,
    family: Literal["river", "sewage", "gas", "water", "heating", "device", "fire"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    department: Annotated[str | None, Query(description="steward department, code or name")] = None,
    start: Annotated[Instant | None, Query(alias="from", description="alerts still on at or after")] = None,
    end: Annotated[Instant | None, Query(alias="to", description="alerts started before")] = None,
    before_id: Annotated[int | None, Query(description="cursor: the smallest id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    """Newest first."""
    return queries.list_alerts(conn, status=status, bureau=bureau, division=division_subtree(conn, division),
                               family=family, severity=severity, department=department_code(conn, department),
                               start=start, end=end, before_id=before_id, limit=limit, visible_to=who.scope)


@router.get("/alerts/{alert_id}")
def get_alert(conn: ConnDep, who: Reader, alert_id: int) -> dict:
    """The alert, its history, and the readings that caused it (from an hour before it started)."""
    alert = queries.get_alert(conn, alert_id, who.scope)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist", field="id")
    if alert["fire_event_id"] is not None:  # a straw fire: its detections are at /fire-events/{id}
        return {**alert, "metric": None, "events": queries.alert_events(conn, alert_id), "readings": [],
                "fire_event": f"/api/v1/fire-events/{alert['fire_event_id']}"}
    info = terminal_by_code(conn, alert["terminal"])
    rule = next((r for r in rules_for(info) if r.key == alert["rule"]), None) if info else None
    metric = rule.metric if rule else alert["rule"].rsplit(":", 1)[-1]
    return {**alert, "metric": metric, "events": queries.alert_events(conn, alert_id),
            "readings": queries.evidence(conn, alert_id, metric)}


@router.post("/alerts/{alert_id}/{action}")
def alert_action(conn: ConnDep, who: Operator, alert_id: int,
                 action: Literal["acknowledge", "resolve", "close", "comment"], body: Action | None = None) -> dict:
    """acknowledge (open → acknowledged), resolve, close, or comment an alert the caller's department receives;
    who and when are kept, in the alert's history and the audit log."""
    get_alert(conn, who, alert_id)
    with conn.transaction():
        comment = body.comment if body else None
        service.act(conn, alert_id, action, who.login, comment)
        audit.record(conn, who.actor(), action, "alert", str(alert_id), after={"comment": comment} if comment else None)
    return get_alert(conn, who, alert_id)


@router.get("/incidents")
def list_incidents(conn: ConnDep, who: Reader, status: Literal["open", "closed"] | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """Related alerts grouped: sensors on one pole, stations along one river, neighbouring gas points."""
    return queries.list_incidents(conn, status, limit, who.scope)
