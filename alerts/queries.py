"""Reading alerts and incidents for the API."""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg.rows import dict_row

_ALERT = """
    select a.id, t.code as terminal, t.name as terminal_name, t.kind, a.rule, a.family, a.severity, a.bureau,
           a.department_code as department, a.division_code as division, a.status, a.observed_start,
           a.observed_end, a.worst_value, a.detail, a.incident_id, a.opened_at, a.updated_at, a.resolved_at,
           a.closed_at, a.fire_event_id
      from alert a left join terminal t on t.id = a.terminal_id
"""


def list_alerts(conn: psycopg.Connection, *, status: str | None, bureau: str | None, division: list[str] | None,
                family: str | None, severity: str | None, department: str | None, start: dt.datetime | None,
                end: dt.datetime | None, before_id: int | None, limit: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _ALERT + """
             where (%(status)s::text is null or a.status = %(status)s)
               and (%(bureau)s::text is null or a.bureau = %(bureau)s)
               and (%(division)s::text[] is null or a.division_code = any(%(division)s))
               and (%(family)s::text is null or a.family = %(family)s)
               and (%(severity)s::text is null or a.severity = %(severity)s)
               and (%(department)s::text is null or a.department_code = %(department)s)
               and (%(start)s::timestamptz is null or coalesce(a.observed_end, 'infinity') >= %(start)s)
               and (%(end)s::timestamptz is null or a.observed_start < %(end)s)
               and (%(before_id)s::bigint is null or a.id < %(before_id)s)
             order by a.id desc
             limit %(limit)s
            """,
            {"status": status, "bureau": bureau, "division": division, "family": family, "severity": severity,
             "department": department, "start": start, "end": end, "before_id": before_id, "limit": limit},
        ).fetchall()


def get_alert(conn: psycopg.Connection, alert_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_ALERT + " where a.id = %s", (alert_id,)).fetchone()


def alert_events(conn: psycopg.Connection, alert_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("select at, actor, action, comment from alert_event where alert_id = %s order by id",
                           (alert_id,)).fetchall()


def evidence(conn: psycopg.Connection, alert_id: int, metric: str) -> list[dict]:
    """The readings of the alert's series from an hour before it started to its end (or now)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            select r.ts, r.value, r.flag from alert a join reading r on r.terminal_id = a.terminal_id
             where a.id = %(id)s and r.metric = %(metric)s and r.ts >= a.observed_start - interval '1 hour'
               and r.ts <= coalesce(a.observed_end, now())
             order by r.ts limit 2000
            """,
            {"id": alert_id, "metric": metric},
        ).fetchall()


def list_incidents(conn: psycopg.Connection, status: str | None, limit: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            select i.id, i.key, i.title, i.bureau, i.division_code as division, i.status, i.opened_at, i.closed_at,
                   count(a.id) as alerts,
                   count(a.id) filter (where a.status in ('open', 'acknowledged')) as active_alerts
              from incident i left join alert a on a.incident_id = i.id
             where (%(status)s::text is null or i.status = %(status)s)
             group by i.id order by i.id desc limit %(limit)s
            """,
            {"status": status, "limit": limit},
        ).fetchall()
