"""What the dashboard reads in one go: every visible pole and terminal with its state for the map, the active
alerts counted per bureau and county, and an alert's incident members and dispatch tasks.

Each query applies the caller's rights in SQL with the same predicates as the rest of the API
(``terminal_visible``, ``pole_visible``, ``alert_visible``), so the map never shows what the lists would hide.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from alerts.queries import _ALERT, INCIDENT_SUMMARY, alert_visible
from ingest.queries import _STATE
from registry.queries import pole_visible, terminal_visible

CAMERAS = ("video_camera", "thermal_camera")
"""A pole carrying only cameras is a straw-burning watch tower (秸秆禁烧监控塔); it is drawn as one."""

_ACTIVE = "a.status in ('open', 'acknowledged')"
_SEVERITY_RANK = "case a.severity when 'critical' then 3 when 'warning' then 2 else 1 end"

_TERMINALS = f"""
    with alerting as (
        select a.terminal_id, max({_SEVERITY_RANK}) as rank
          from alert a
         where {_ACTIVE} and a.terminal_id is not null
           and (%(visible_to)s::text is null or {alert_visible()})
         group by a.terminal_id)
    select t.code, t.name, t.kind, t.lon, t.lat, p.code as pole, {_STATE} as state,
           case al.rank when 3 then 'critical' when 2 then 'warning' when 1 then 'info' end as alert
      from terminal t
      left join device_state s on s.code = t.code
      left join pole p on p.id = t.pole_id
      left join device_state ps on ps.code = p.code
      left join alerting al on al.terminal_id = t.id
     where t.status <> 'retired' and (%(visible_to)s::text is null or {terminal_visible()})
     order by t.code
"""

_POLES = f"""
    select p.code, p.name, p.lon, p.lat,
           count(t.id) filter (where t.id is not null and (%(visible_to)s::text is null or {terminal_visible()}))
               as terminals,
           coalesce(bool_and(t.kind = any(%(cameras)s)), false) and count(t.id) > 0 as tower
      from pole p left join terminal t on t.pole_id = p.id and t.status <> 'retired'
     where p.status <> 'retired' and (%(visible_to)s::text is null or {pole_visible()})
     group by p.id
     order by p.code
"""


def map_points(conn: psycopg.Connection, visible_to: str | None) -> tuple[list[dict], list[dict]]:
    """(poles, terminals) in the caller's view; each terminal with its connection state and worst active alert."""
    params = {"visible_to": visible_to, "cameras": list(CAMERAS)}
    with conn.cursor(row_factory=dict_row) as cur:
        terminals = cur.execute(_TERMINALS, params).fetchall()
        poles = cur.execute(_POLES, params).fetchall()
    return poles, terminals


def alert_counts(conn: psycopg.Connection, visible_to: str | None) -> tuple[list[dict], list[dict]]:
    """Open and acknowledged alerts the caller receives, per bureau and per county (every county listed)."""
    params = {"visible_to": visible_to}
    where = f"{_ACTIVE} and (%(visible_to)s::text is null or {alert_visible()})"
    with conn.cursor(row_factory=dict_row) as cur:
        bureaus = cur.execute(
            f"""
            select b.bureau, count(a.id) filter (where a.status = 'open') as open,
                   count(a.id) filter (where a.status = 'acknowledged') as acknowledged
              from unnest(array['environment', 'housing', 'steward']) as b(bureau)
              left join alert a on a.bureau = b.bureau and {where}
             group by b.bureau order by b.bureau
            """, params).fetchall()
        counties = cur.execute(
            f"""
            select d.code, d.name, count(a.id) filter (where a.status = 'open') as open,
                   count(a.id) filter (where a.status = 'acknowledged') as acknowledged
              from division d
              left join alert a on left(a.division_code, 6) = d.code and {where}
             where d.level in ('district', 'county', 'county-level city')
             group by d.code, d.name order by d.code
            """, params).fetchall()
    return bureaus, counties


def incident_members(conn: psycopg.Connection, incident_id: int, visible_to: str | None) -> list[dict]:
    """The incident's alerts that the caller receives, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _ALERT + f""" where a.incident_id = %(incident)s
                            and (%(visible_to)s::text is null or {alert_visible()})
                          order by a.id desc limit 200""",
            {"incident": incident_id, "visible_to": visible_to}).fetchall()


def incident(conn: psycopg.Connection, incident_id: int, visible_to: str | None) -> dict | None:
    """The incident, if the caller receives one of its alerts."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            {INCIDENT_SUMMARY}
             where i.id = %(incident)s and (%(visible_to)s::text is null or {alert_visible()})
             group by i.id
            """, {"incident": incident_id, "visible_to": visible_to}).fetchone()
