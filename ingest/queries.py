"""Reading the store: raw readings, time buckets, newest values, device state, dead letters."""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ingest import rollups
from registry.queries import Search, terminal_visible, terminal_where

BUCKET_ORIGIN = "2000-01-01 00:00:00+08"
"""Buckets start at Beijing midnight, so daily buckets are local days."""
ROLLUP_WINDOW = dt.timedelta(days=3)
"""Bucketed queries over longer windows read the rollups (a 3-day window of a 1-minute sensor: 4,320 rows)."""

_STATE = """
    case
        when s.last_seen_at is null then 'never'
        when s.connection = 'offline' or ps.connection = 'offline' then 'offline'
        when greatest(s.last_seen_at, ps.last_seen_at) < now() - make_interval(secs => 3 * t.report_interval_s)
            then 'silent'
        else 'online'
    end
"""


def readings(conn: psycopg.Connection, terminal_id: int, metric: str | None, start: dt.datetime, end: dt.datetime,
             after: tuple[dt.datetime, str] | None, limit: int) -> list[dict]:
    """Raw readings in [start, end), ordered by (time, metric); ``after`` is the last row of the previous page."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            select ts, metric, value, flag, received_at
              from reading
             where terminal_id = %(terminal)s and ts >= %(start)s and ts < %(end)s
               and (%(metric)s::text is null or metric = %(metric)s)
               and (%(after_ts)s::timestamptz is null or (ts, metric) > (%(after_ts)s, %(after_metric)s))
             order by ts, metric
             limit %(limit)s
            """,
            {"terminal": terminal_id, "metric": metric, "start": start, "end": end, "limit": limit,
             "after_ts": after[0] if after else None, "after_metric": after[1] if after else None},
        ).fetchall()


def buckets(conn: psycopg.Connection, terminal_id: int, metric: str | None, start: dt.datetime, end: dt.datetime,
            interval: dt.timedelta) -> list[dict]:
    """avg/min/max/count per metric and time bucket (date_bin, plain SQL on PostgreSQL 15 and 18).

    Over windows longer than ``ROLLUP_WINDOW``, buckets of whole hours or days are read from the rollups
    (``ingest.rollups``) where they are complete and settled: the raw readings serve only the partial buckets
    at either end of the window and the buckets from the one the rollup watermark is in onwards. The result
    is the raw aggregation's, except that a reading arriving late for an older bucket shows there once the
    maintenance service has run (within a minute), as with TimescaleDB's real-time aggregates. Shorter
    windows read the raw readings (cheap there) and so show every committed reading at once.
    """
    source = rollups.rollup_for(interval)
    if source is None or end - start <= ROLLUP_WINDOW:
        return _raw_buckets(conn, terminal_id, metric, [(start, end)], interval)
    first = _bin(start, interval, up=True)
    last = _bin(end, interval, up=False)
    fresh = rollups.fresh_from(conn)
    if fresh is not None:
        last = min(last, _bin(fresh, interval, up=False))
    if last <= first:
        return _raw_buckets(conn, terminal_id, metric, [(start, end)], interval)
    settled = _rollup_buckets(conn, source[0], terminal_id, metric, first, last, interval)
    edges = _raw_buckets(conn, terminal_id, metric, [(start, first), (last, end)], interval)
    return sorted(settled + edges, key=lambda row: (row["bucket"], row["metric"]))


def _bin(moment: dt.datetime, interval: dt.timedelta, *, up: bool) -> dt.datetime:
    """The bucket boundary at or before (``up``: at or after) ``moment``."""
    steps, rest = divmod(moment - rollups.BUCKET_ORIGIN, interval)
    return rollups.BUCKET_ORIGIN + (steps + (1 if up and rest else 0)) * interval


def _raw_buckets(conn: psycopg.Connection, terminal_id: int, metric: str | None,
                 windows: list[tuple[dt.datetime, dt.datetime]], interval: dt.timedelta) -> list[dict]:
    rows: list[dict] = []
    with conn.cursor(row_factory=dict_row) as cur:
        for start, end in windows:
            if end <= start:
                continue
            rows += cur.execute(
                """
                select date_bin(%(interval)s, ts, %(origin)s::timestamptz) as bucket, metric,
                       avg(value) as avg, min(value) as min, max(value) as max, count(*) as count
                  from reading
                 where terminal_id = %(terminal)s and ts >= %(start)s and ts < %(end)s
                   and (%(metric)s::text is null or metric = %(metric)s)
                 group by 1, 2
                 order by 1, 2
                """,
                {"terminal": terminal_id, "metric": metric, "start": start, "end": end, "interval": interval,
                 "origin": BUCKET_ORIGIN},
            ).fetchall()
    return rows


def _rollup_buckets(conn: psycopg.Connection, table: str, terminal_id: int, metric: str | None,
                    start: dt.datetime, end: dt.datetime, interval: dt.timedelta) -> list[dict]:
    """Buckets over [start, end) (both boundaries of ``interval``) from a rollup table, re-binned when the
    interval is several of the table's own."""
    query = sql.SQL(
        """
        select date_bin(%(interval)s, bucket, %(origin)s::timestamptz) as bucket, metric,
               sum(value_sum) / sum(readings) as avg, min(value_min) as min, max(value_max) as max,
               sum(readings)::bigint as count
          from {table}
         where terminal_id = %(terminal)s and bucket >= %(start)s and bucket < %(end)s
           and (%(metric)s::text is null or metric = %(metric)s)
         group by 1, 2
         order by 1, 2
        """
    ).format(table=sql.Identifier(table))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, {"terminal": terminal_id, "metric": metric, "start": start, "end": end,
                                   "interval": interval, "origin": BUCKET_ORIGIN}).fetchall()


def latest(conn: psycopg.Connection, terminal_ids: list[int]) -> list[dict]:
    """The newest value of every metric of these terminals."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            select t.code, l.metric, l.ts, l.value, l.flag
              from latest_reading l join terminal t on t.id = l.terminal_id
             where l.terminal_id = any(%s)
             order by t.code, l.metric
            """,
            (terminal_ids,),
        ).fetchall()


def states(conn: psycopg.Connection, terminal_ids: list[int]) -> list[dict]:
    """Connection state of terminals: online, offline (said so, or its pole did), silent (past 3 intervals), never."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select t.code, {_STATE} as state, s.last_seen_at, s.last_reading_at, t.report_interval_s,
                   coalesce(s.connection, ps.connection) as connection
              from terminal t
              left join device_state s on s.code = t.code
              left join pole p on p.id = t.pole_id
              left join device_state ps on ps.code = p.code
             where t.id = any(%s)
             order by t.code
            """,
            (terminal_ids,),
        ).fetchall()


_STATE_FROM = """
      from terminal t
      left join pole p on p.id = t.pole_id
      left join device_state s on s.code = t.code
      left join device_state ps on ps.code = p.code
"""


def state_list(conn: psycopg.Connection, search: Search, state: str | None, limit: int) -> list[dict]:
    """Terminals with their connection state, filtered like a terminal search, ordered by code."""
    where, params = terminal_where(search)
    state_clause = f"({_STATE}) = %(state)s"
    where = f"{where} and {state_clause}" if where and state else (f" where {state_clause}" if state else where)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select t.code, t.name, t.kind, t.department_code as department, t.division_code as division,
                   {_STATE} as state, s.last_seen_at, s.last_reading_at, t.report_interval_s
              {_STATE_FROM} {where}
             order by t.code
             limit %(limit)s
            """,
            {**params, "state": state, "limit": limit},
        ).fetchall()


def state_counts(conn: psycopg.Connection, search: Search) -> list[dict]:
    """How many active terminals of each department are online, offline, silent or never heard."""
    where, params = terminal_where(search)
    active = "t.status = 'active'"
    where = f"{where} and {active}" if where else f" where {active}"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select t.department_code as department, {_STATE} as state, count(*) as terminals
              {_STATE_FROM} {where}
             group by 1, 2
             order by 1, 2
            """,
            params,
        ).fetchall()


def terminal_ids(conn: psycopg.Connection, codes: list[str]) -> dict[str, int]:
    return dict(conn.execute("select code, id from terminal where code = any(%s)", (codes,)).fetchall())


def dead_letters(conn: psycopg.Connection, *, publisher: str | None, reason: str | None, start: dt.datetime | None,
                 end: dt.datetime | None, before_id: int | None, limit: int,
                 visible_to: str | None = None) -> list[dict]:
    """Newest first; with ``visible_to``, only those published as a terminal in that department's view."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select id, received_at, topic, publisher, reason, stored, suppressed, payload_size as payload_bytes,
                   substring(payload for 2000) as payload_head
              from dead_letter
             where (%(publisher)s::text is null or publisher = %(publisher)s)
               and (%(reason)s::text is null or reason ilike '%%' || %(reason)s || '%%')
               and (%(start)s::timestamptz is null or received_at >= %(start)s)
               and (%(end)s::timestamptz is null or received_at < %(end)s)
               and (%(before_id)s::bigint is null or id < %(before_id)s)
               and (%(visible_to)s::text is null or exists (
                    select 1 from terminal t where t.code = publisher and {terminal_visible("t")}))
             order by id desc
             limit %(limit)s
            """,
            {"publisher": publisher, "reason": reason, "start": start, "end": end, "before_id": before_id,
             "limit": limit, "visible_to": visible_to},
        ).fetchall()
