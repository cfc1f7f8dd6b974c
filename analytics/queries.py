"""What the rule workers read: terminals, their readings by observation time, what arrived lately."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict

import psycopg
from psycopg.types.json import Jsonb

from analytics.engine import Point
from analytics.rules import TerminalInfo
from ingest import rollups

_POINT = functools.partial(tuple.__new__, Point)
"""A ``Point`` from a (ts, value, flag) tuple: ``Point._make`` checks the length in Python (two function calls a
reading, 1.1 µs; this 0.4 µs), and every reading a rule worker reads becomes one."""

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


def terminal_infos(conn: psycopg.Connection, terminal_ids: list[int]) -> dict[int, TerminalInfo]:
    rows = conn.execute(_INFO + " where t.id = any(%s) and t.status <> 'retired'", (terminal_ids,)).fetchall()
    return {row[0]: _info(row) for row in rows}


def series_of(conn: psycopg.Connection,
              since: dict[int, dict[str, dt.datetime]]) -> dict[int, dict[str, list[Point]]]:
    """Each terminal's readings of each metric from the metric's own start, in observation order, in one query
    (one range of the reading table's key per (terminal, metric)). A series comes as three arrays (times, values,
    flags) in binary: a row per reading, its terminal and metric repeated and unpacked in Python, was a quarter of a
    rule worker's CPU at 5,850 msg/s."""
    keys = [(t, metric, start) for t, starts in since.items() for metric, start in starts.items()]
    rows = [] if not keys else conn.cursor(binary=True).execute(
        """
        select u.terminal_id, u.metric, s.ts, s.value, s.flag
          from unnest(%(id)b::bigint[], %(metric)b::text[], %(since)b::timestamptz[]) as u(terminal_id, metric, since)
          cross join lateral (
                select array_agg(r.ts order by r.ts) as ts, array_agg(r.value order by r.ts) as value,
                       array_agg(r.flag order by r.ts) as flag
                  from reading r
                 where r.terminal_id = u.terminal_id and r.metric = u.metric and r.ts >= u.since) as s
         where s.ts is not null
        """,
        {"id": [k[0] for k in keys], "metric": [k[1] for k in keys], "since": [k[2] for k in keys]},
    ).fetchall()
    found: dict[int, dict[str, list[Point]]] = {t: defaultdict(list) for t in since}
    for terminal_id, metric, ts, value, flag in rows:
        found[terminal_id][metric] = list(map(_POINT, zip(ts, value, flag, strict=True)))
    return found


def peers_of(conn: psycopg.Connection, terminal_id: int, metric: str, pole: str | None, river: str | None,
             chainage_km: float | None, within_km: float) -> list[tuple[int, int, bool]]:
    """The other active terminals (not in maintenance) measuring ``metric`` on the pole ``pole``, or on the river
    ``river`` within ``within_km`` of chainage (the whole river when either station's chainage is unknown): (id,
    reporting interval in seconds, on the pole ``pole``)."""
    if pole is None and river is None:
        return []
    rows = conn.execute(
        """
        select n.id, n.report_interval_s, coalesce(p.code = %(pole)s, false) from terminal n
          left join pole p on p.id = n.pole_id
         where n.id <> %(id)s and n.status = 'active' and %(metric)s = any(n.metrics)
           and (p.code = %(pole)s
                or (n.attrs->>'river' = %(river)s
                    and (%(km)s::float8 is null or n.attrs->>'chainage_km' is null
                         or abs((n.attrs->>'chainage_km')::float8 - %(km)s::float8) <= %(within)s)))
         order by n.id
        """,
        {"id": terminal_id, "metric": metric, "pole": pole, "river": river, "km": chainage_km, "within": within_km},
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def doubts_of(conn: psycopg.Connection, terminal_ids: list[int], metric: str, since: dt.datetime,
              kinds: tuple[str, ...]) -> dict[int, list[tuple[str, dt.datetime, dt.datetime | None]]]:
    """The device alerts of these ``kinds`` (``device:{kind}:{metric}``) of these terminals that were on at or after
    ``since`` (not retracted): by terminal, (kind, when it began, when it ended or None)."""
    rows = conn.execute(
        """
        select terminal_id, split_part(rule, ':', 2), observed_start, observed_end from alert
         where terminal_id = any(%(ids)s) and rule = any(%(rules)s) and status <> 'closed'
           and (observed_end is null or observed_end >= %(since)s)
         order by observed_start
        """,
        {"ids": terminal_ids, "rules": [f"device:{kind}:{metric}" for kind in kinds],
         "since": since},
    ).fetchall()
    found: dict[int, list[tuple[str, dt.datetime, dt.datetime | None]]] = {}
    for terminal_id, kind, start, end in rows:
        found.setdefault(terminal_id, []).append((kind, start, end))
    return found


def lock_terminals(conn: psycopg.Connection, terminal_ids: list[int], worker: str) -> dict[int, int]:
    """Lock the terminals' cursors (in id order, so two workers never deadlock) for this transaction; returns
    each one's version (it changes whenever a worker judges the terminal)."""
    ids = sorted(terminal_ids)
    conn.execute(
        """
        insert into rule_cursor (terminal_id, worker)
        select u.id, %(w)s from unnest(%(ids)s::bigint[]) as u(id)
         where exists (select 1 from terminal t where t.id = u.id)
        on conflict do nothing
        """,
        {"ids": ids, "w": worker},
    )
    rows = conn.execute("select terminal_id, version from rule_cursor where terminal_id = any(%s) "
                        "order by terminal_id for update", (ids,)).fetchall()
    return dict(rows)


def advance(conn: psycopg.Connection, terminal_ids: list[int], worker: str, states: list[tuple]) -> None:
    """Persist the changed (terminal, rule) states and move the terminals' versions on."""
    if states:
        conn.execute(
            """
            insert into rule_state as s (terminal_id, rule, judged_to, episode, latch)
            select * from unnest(%(t)b::bigint[], %(r)b::text[], %(j)b::timestamptz[], %(e)b::jsonb[],
                                 %(l)b::jsonb[])
            on conflict (terminal_id, rule) do update set judged_to = excluded.judged_to, episode = excluded.episode,
                                                          latch = excluded.latch
            """,
            {"t": [s[0] for s in states], "r": [s[1] for s in states], "j": [s[2] for s in states],
             "e": [Jsonb(s[3]) if s[3] is not None else None for s in states],
             "l": [Jsonb(s[4]) if s[4] is not None else None for s in states]},
        )
    conn.execute("update rule_cursor set version = version + 1, worker = %s where terminal_id = any(%s)",
                 (worker, terminal_ids))


def rule_states_of(conn: psycopg.Connection,
                   terminal_ids: list[int]) -> dict[int, dict[str, tuple[dt.datetime, dict | None, dict | None]]]:
    """Terminal id → rule → (judged to, episode, the judge's latch) as persisted."""
    rows = conn.execute("select terminal_id, rule, judged_to, episode, latch from rule_state "
                        "where terminal_id = any(%s)", (terminal_ids,)).fetchall()
    found: dict[int, dict[str, tuple[dt.datetime, dict | None, dict | None]]] = defaultdict(dict)
    for terminal_id, rule, judged_to, episode, latch in rows:
        found[terminal_id][rule] = (judged_to, episode, latch)
    return found


def first_readings(conn: psycopg.Connection, series: list[tuple[int, str]]) -> dict[tuple[int, str], dt.datetime]:
    """(terminal id, metric) → the time of its first stored reading (each one index probe)."""
    rows = conn.execute(
        """
        select u.t, u.m, (select r.ts from reading r where r.terminal_id = u.t and r.metric = u.m order by r.ts limit 1)
          from unnest(%(t)s::bigint[], %(m)s::text[]) as u(t, m)
        """,
        {"t": [t for t, _ in series], "m": [m for _, m in series]},
    ).fetchall()
    return {(t, m): ts for t, m, ts in rows if ts is not None}


def arrived_since(conn: psycopg.Connection, since: dt.datetime) -> dict[int, dt.datetime]:
    """Terminal id → earliest observation time of the readings that arrived after ``since``."""
    rows = conn.execute("select terminal_id, min(ts) from reading where received_at > %s group by terminal_id",
                        (since,)).fetchall()
    return dict(rows)


NEW_WORKER = dt.timedelta(hours=1)
"""What a rule worker that has saved no watermark counts as not having taken in: what arrived in the last hour."""


def watermark(conn: psycopg.Connection, workers: list[str] | None) -> dt.datetime | None:
    """The earliest arrival time these workers (all, with None) have not surely taken in. A named worker with no
    watermark saved counts as ``NEW_WORKER`` back: one new by name, one started a moment ago, one that left before
    its first save (its terminals' catch-up must not start at another departed worker's later watermark)."""
    row = conn.execute(
        """
        select least(min(received_at),
                     case when count(*) < cardinality(%(w)s::text[]) then now() - %(new)s end)
          from rule_watermark where %(w)s::text[] is null or worker = any(%(w)s)
        """,
        {"w": sorted(set(workers)) if workers is not None else None, "new": NEW_WORKER}).fetchone()
    return row[0]


def committed_before(conn: psycopg.Connection) -> dt.datetime:
    """An arrival time (the database's clock) before which every reading is committed: now, or the start of the
    oldest transaction still writing (a batch of thousands takes seconds from its insert to its commit); blind to
    other sessions, ``rollups.BLIND_SETTLE`` back."""
    conn.execute("select pg_stat_clear_snapshot()")
    at, blind = conn.execute(f"select least(clock_timestamp(), {rollups.UNCOMMITTED_SINCE}), {rollups.BLIND}"
                             ).fetchone()
    conn.commit()
    return at - rollups.BLIND_SETTLE if blind else at


def save_watermark(conn: psycopg.Connection, worker: str, at: dt.datetime) -> None:
    """It may move back: a catch-up of a departed worker's terminals queues readings older than it."""
    conn.execute(
        """
        insert into rule_watermark (worker, received_at) values (%s, %s)
        on conflict (worker) do update set received_at = excluded.received_at
        """,
        (worker, at),
    )


def rule_workers(conn: psycopg.Connection) -> list[str]:
    """The rule workers alive now (a heartbeat within 15 s: core/runtime.py beats every 5 s)."""
    rows = conn.execute("select name from service_heartbeat where kind = 'rules' and state = 'running' "
                        "and beat_at > now() - interval '15 seconds'").fetchall()
    return [name for (name,) in rows]


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
