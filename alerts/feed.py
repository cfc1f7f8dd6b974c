"""Reading the alert feed (the outbox written by triggers, migration 0030) through a department's rights."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
from psycopg.rows import dict_row

from alerts.queries import alert_visible

CHANNEL = "alert_feed"
"""The NOTIFY channel the feed triggers signal each new entry on (payload: its id)."""


def feed_visible(alias: str = "f", param: str = "visible_to") -> str:
    """The rights filter of feed entries, through the alert the entry is about (``alert_visible``): an alert
    entry and its history through the alert, an incident through its alerts, a fire event through its alert.
    A fire event with no alert yet is seen by those who read everything only."""
    return f"""exists (select 1 from alert a
                   where (a.id = {alias}.alert_id
                          or ({alias}.alert_id is null and a.incident_id = {alias}.incident_id)
                          or ({alias}.alert_id is null and a.fire_event_id = {alias}.fire_event_id))
                     and {alert_visible('a', param)})"""


def read_feed(conn: psycopg.Connection, after: int, visible_to: str | None, limit: int = 500) -> list[dict]:
    """The entries after id ``after`` that department ``visible_to`` may see (all with None), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select id, at, kind, action, alert_id, incident_id, fire_event_id, family, bureau,
                   department_code as department, division_code as division, severity, payload
              from alert_feed f
             where f.id > %(after)s and (%(visible_to)s::text is null or {feed_visible()})
             order by f.id limit %(limit)s
            """,
            {"after": after, "visible_to": visible_to, "limit": limit},
        ).fetchall()


def event_json(event: dict) -> str:
    """An entry as the live stream and webhooks send it: JSON, times in RFC 3339 (``2026-12-01T03:04:05+00:00``,
    as in the payload, which PostgreSQL's ``to_jsonb`` wrote), Chinese as it is."""
    return json.dumps(event, default=_json_value, ensure_ascii=False)


def _json_value(value: object) -> str:
    if isinstance(value, dt.date):  # datetimes too
        return value.isoformat()
    return str(value)


def last_id(conn: psycopg.Connection) -> int:
    return conn.execute("select coalesce(max(id), 0) from alert_feed").fetchone()[0]
