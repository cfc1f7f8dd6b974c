"""What the rule workers read: terminals, their readings by observation time, what arrived lately."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import psycopg

from analytics.engine import Point
from analytics.rules import TerminalInfo

_INFO = """
    select t.id, t.code, t.kind, t.department_code, t.division_code, p.code, t.lon, t.lat, t.report_interval_s,
           t.metrics, t.attrs
      from terminal t left join pole p on p.id = t.pole_id
"""


def terminal_info(conn: psycopg.Connection, terminal_id: int) -> TerminalInfo | None:
    row = conn.execute(_INFO + " where t.id = %s and t.status <> 'retired'", (terminal_id,)).fetchone()
    return _info(row) if row else None


def terminal_by_code(conn: psycopg.Connection, code: str) -> TerminalInfo | None:
    row = conn.execute(_INFO + " where t.code = %s", (code,)).fetchone()
    return _info(row) if row else None


def _info(row: tuple) -> TerminalInfo:
    tid, code, kind, dept, division, pole, lon, lat, interval, metrics, attrs = row
    return TerminalInfo(tid, code, kind, dept, division, pole, lon, lat, interval, tuple(metrics), attrs)


def series(conn: psycopg.Connection, terminal_id: int, metrics: list[str], since: dt.datetime,
           until: dt.datetime | None = None) -> dict[str, list[Point]]:
    """Readings of these metrics from ``since`` (to ``until``), in observation order."""
    rows = conn.execute(
        """
        select metric, ts, value, flag from reading
         where terminal_id = %s and metric = any(%s) and ts >= %s and (%s::timestamptz is null or ts < %s)
         order by metric, ts
        """,
        (terminal_id, metrics, since, until, until),
    ).fetchall()
    found: dict[str, list[Point]] = defaultdict(list)
    for metric, ts, value, flag in rows:
        found[metric].append(Point(ts, value, flag))
    return found


def touched(conn: psycopg.Connection, since: dt.datetime, shard: int, shards: int) -> list[tuple]:
    """(terminal id, earliest observation time, latest arrival, count) of readings that arrived after ``since``."""
    return conn.execute(
        """
        select terminal_id, min(ts), max(received_at), count(*) from reading
         where received_at > %s and terminal_id %% %s = %s
         group by terminal_id
        """,
        (since, shards, shard),
    ).fetchall()


def watermark(conn: psycopg.Connection, shard: int, shards: int) -> dt.datetime | None:
    row = conn.execute("select received_at from analytics_watermark where shard = %s and shards = %s",
                       (shard, shards)).fetchone()
    return row[0] if row else None


def save_watermark(conn: psycopg.Connection, shard: int, shards: int, at: dt.datetime) -> None:
    conn.execute(
        """
        insert into analytics_watermark (shard, shards, received_at) values (%s, %s, %s)
        on conflict (shard, shards) do update set received_at = greatest(analytics_watermark.received_at,
                                                                          excluded.received_at)
        """,
        (shard, shards, at),
    )


def silent_metrics(conn: psycopg.Connection, shard: int, shards: int) -> list[tuple]:
    """(terminal id, metric, last observation) of active terminals silent for three expected intervals."""
    return conn.execute(
        """
        select t.id, l.metric, l.ts
          from latest_reading l join terminal t on t.id = l.terminal_id
         where t.status = 'active' and t.id %% %s = %s and position(':' in l.metric) = 0
           and l.ts < now() - make_interval(secs => 3 * t.report_interval_s)
        """,
        (shards, shard),
    ).fetchall()
