"""Reading alerts and incidents for the API."""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg.rows import dict_row

from registry.queries import terminal_visible

_ALERT = """
    select a.id, t.code as terminal, t.name as terminal_name, t.kind, p.code as pole, a.rule, a.family, a.severity,
           a.bureau, a.department_code as department, a.division_code as division, a.status, a.metric, a.unit,
           a.worst_value as value, a.limit_value as limit, a.direction, a.standard, a.grade, a.detail,
           a.observed_start, a.observed_end, a.incident_id, a.opened_at, a.updated_at, a.resolved_at, a.closed_at,
           a.fire_event_id
      from alert a left join terminal t on t.id = a.terminal_id left join pole p on p.id = t.pole_id
"""

_SUBJECT = """
    (%(terminal)s::text is null or t.code = %(terminal)s)
    and (%(pole)s::text is null or p.code = %(pole)s)
    and (%(metric)s::text is null or a.metric = %(metric)s)
"""
"""Filters by what an alert is about: its terminal, the terminal's pole, its metric (``_ALERT``'s aliases)."""


def alert_routed(alias: str = "a", param: str = "visible_to") -> str:
    """The alerts the department in ``%(param)s`` acts on: those of the terminals it stewards now (a terminal
    handed to another department takes its open alerts along; the alert's ``department_code``, copied when it was
    raised, counts only for an alert without a terminal), and those an ``alert_route`` of it matches (the alert's
    bureau, family and division: the route's division or below)."""
    return f"""(coalesce((select st.department_code from terminal st where st.id = {alias}.terminal_id),
                      {alias}.department_code) = %({param})s
        or exists (select 1 from alert_route r
                    where r.department_code = %({param})s and (r.bureau is null or r.bureau = {alias}.bureau)
                      and (r.family is null or r.family = {alias}.family)
                      and (r.division_code is null or {alias}.division_code like r.division_code || '%%')))"""


def alert_visible(alias: str = "a", param: str = "visible_to") -> str:
    """The rights filter of alerts: the department in ``%(param)s`` receives alert ``alias`` when it acts on it
    (``alert_routed``) or reads the alert's terminal by a grant. The seeded routes send the environment bureau's
    alerts (rivers, sewage, fires) to 生态环境局 and the housing bureau's (gas, water, heating) to 住建局."""
    return f"""({alert_routed(alias, param)}
        or exists (select 1 from terminal vt
                    where vt.id = {alias}.terminal_id and {terminal_visible("vt", param)}))"""


def acts_on(conn: psycopg.Connection, alert_id: int, department: str | None) -> bool:
    """Whether ``department`` (everyone's with None) acts on the alert: a department reading it only by a grant
    reads it, and leaves acknowledging, resolving and dispatching to the departments it is routed to."""
    if department is None:
        return True
    return conn.execute(f"select {alert_routed('a', 'department')} from alert a where a.id = %(id)s",
                        {"id": alert_id, "department": department}).fetchone() == (True,)


def fire_event_visible(alias: str = "e", param: str = "visible_to") -> str:
    """A fire event is in a department's view when it receives the event's alert."""
    return f"exists (select 1 from alert va where va.fire_event_id = {alias}.id and {alert_visible('va', param)})"


def fire_event_in_view(conn: psycopg.Connection, event_id: int, visible_to: str | None) -> bool:
    if visible_to is None:
        return True
    return conn.execute(f"select {fire_event_visible('e')} from fire_event e where e.id = %(id)s",
                        {"id": event_id, "visible_to": visible_to}).fetchone() == (True,)


def list_alerts(conn: psycopg.Connection, *, status: str | None, bureau: str | None, division: list[str] | None,
                family: str | None, severity: str | None, department: str | None, terminal: str | None,
                pole: str | None, metric: str | None, start: dt.datetime | None, end: dt.datetime | None,
                before_id: int | None, limit: int, visible_to: str | None = None) -> list[dict]:
    """Newest first; with ``visible_to``, only the alerts that department receives."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _ALERT + f"""
             where (%(status)s::text is null or a.status = %(status)s)
               and (%(bureau)s::text is null or a.bureau = %(bureau)s)
               and (%(division)s::text[] is null or a.division_code = any(%(division)s))
               and (%(family)s::text is null or a.family = %(family)s)
               and (%(severity)s::text is null or a.severity = %(severity)s)
               and (%(department)s::text is null or a.department_code = %(department)s)
               and {_SUBJECT}
               and (%(start)s::timestamptz is null or coalesce(a.observed_end, 'infinity') >= %(start)s)
               and (%(end)s::timestamptz is null or a.observed_start < %(end)s)
               and (%(before_id)s::bigint is null or a.id < %(before_id)s)
               and (%(visible_to)s::text is null or {alert_visible()})
             order by a.id desc
             limit %(limit)s
            """,
            {"status": status, "bureau": bureau, "division": division, "family": family, "severity": severity,
             "department": department, "terminal": terminal, "pole": pole, "metric": metric, "start": start,
             "end": end, "before_id": before_id, "limit": limit, "visible_to": visible_to},
        ).fetchall()


def get_alert(conn: psycopg.Connection, alert_id: int, visible_to: str | None = None) -> dict | None:
    """The alert, if it exists and (with ``visible_to``) that department receives it."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_ALERT + f" where a.id = %(id)s and (%(visible_to)s::text is null or {alert_visible()})",
                           {"id": alert_id, "visible_to": visible_to}).fetchone()


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


INCIDENT_SUMMARY = """
    select i.id, i.key, i.title, i.bureau, i.division_code as division, i.status, i.opened_at, i.closed_at,
           count(a.id) as alerts,
           count(a.id) filter (where a.status in ('open', 'acknowledged')) as active_alerts
      from incident i join alert a on a.incident_id = i.id"""
"""An incident with its alert counts; the caller adds joins and conditions, and groups by i.id."""


def list_incidents(conn: psycopg.Connection, *, status: str | None, terminal: str | None, pole: str | None,
                   metric: str | None, before_id: int | None, limit: int, visible_to: str | None = None) -> list[dict]:
    """Incidents, newest first, with an alert the department in ``visible_to`` receives (counting those) and, when
    asked, one about that terminal, pole or metric."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            {INCIDENT_SUMMARY}
                   left join terminal t on t.id = a.terminal_id left join pole p on p.id = t.pole_id
             where (%(status)s::text is null or i.status = %(status)s)
               and (%(before_id)s::bigint is null or i.id < %(before_id)s)
               and (%(visible_to)s::text is null or {alert_visible()})
             group by i.id
            having bool_or({_SUBJECT})
             order by i.id desc limit %(limit)s
            """,
            {"status": status, "terminal": terminal, "pole": pole, "metric": metric, "before_id": before_id,
             "limit": limit, "visible_to": visible_to},
        ).fetchall()
