"""Hourly and daily rollups of the readings, and which one a bucketed query can read.

On plain PostgreSQL ``advance`` keeps ``reading_hourly`` and ``reading_daily`` (migration 0040): it adds the
readings that arrived since the watermark, by arrival time rather than observation time, so a late reading
lands in its old bucket. Why a maintenance step and not the ingest writer's transaction: the writer is the
hot path (two workers, each batch would upsert one rollup row per terminal and metric, and the two workers
would wait on each other's row locks for the same terminals); a step run every minute folds a minute of
readings of one terminal and metric into one upsert, off the hot path. The price is freshness: a reading
that arrives late for an old bucket shows in the rollups within one run (``ingest.queries.buckets`` reads
the raw readings for the buckets still being filled).

Exactly once: the watermark moves in the transaction that adds the readings, and it never passes a reading
still uncommitted (see ``_HORIZON``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from core import partitions

log = logging.getLogger(__name__)

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
BUCKET_ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
"""Beijing midnight: daily rollups are local days (the same origin as ingest.queries)."""
SETTLE = dt.timedelta(seconds=5)
"""A run stops this far before now, a margin for the moment between a statement taking a clock and showing."""
BLIND_SETTLE = dt.timedelta(minutes=10)
"""When other sessions' transactions cannot be seen (no pg_read_all_stats), stop this far back instead."""
MAX_SPAN = dt.timedelta(hours=6)
"""At most this much arrival time per run, so catching up on a large store is many short transactions."""
TABLES = {HOUR: "reading_hourly", DAY: "reading_daily"}

UNCOMMITTED_SINCE = """
    (select min(case when backend_xid is not null then xact_start when state = 'active' then query_start end)
       from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid())
"""
"""The earliest arrival time a reading not yet committed can have (null when none can be). A reading's
``received_at`` is its insert's clock, so a row not yet committed belongs to a transaction that has written (it has
an xid: the row is no older than the transaction) or to the statement running now (its rows are no older than the
statement; a COPY takes its rows' clock before the transaction gets its xid). Sessions that only read, or sit idle
in a transaction without having written (a pg_dump between two tables, a pooled connection), hold nothing back.
Without the right to see other sessions (pg_read_all_stats), they show as '<insufficient privilege>': see
``BLIND``. Call ``pg_stat_clear_snapshot()`` first inside a transaction (else it sees the sessions of its start)."""
BLIND = "exists (select 1 from pg_stat_activity where datname = current_database() " \
        "and query = '<insufficient privilege>')"

_HORIZON = f"""
    select least(clock_timestamp() - %(settle)s, {UNCOMMITTED_SINCE}, %(start)s::timestamptz + %(span)s), {BLIND}
"""
"""Where a run may stop: before any reading not committed yet (``UNCOMMITTED_SINCE``)."""

_ADD = """
    with arrived as materialized (
        select terminal_id, metric, ts, value from reading
         where received_at >= %(start)s and received_at < %(end)s
    ), hourly as (
        {upsert_hourly} returning 1
    ), daily as (
        {upsert_daily} returning 1
    )
    select (select count(*) from hourly), (select count(*) from daily)
"""

_UPSERT = """
    insert into {table} as r (terminal_id, metric, bucket, readings, value_sum, value_min, value_max,
                              first_ts, last_ts)
    select terminal_id, metric, date_bin({width}, ts, %(origin)s), count(*), sum(value), min(value), max(value),
           min(ts), max(ts)
      from arrived
     group by 1, 2, 3
     order by 1, 2, 3
    on conflict (terminal_id, metric, bucket) do update set
        readings = r.readings + excluded.readings, value_sum = r.value_sum + excluded.value_sum,
        value_min = least(r.value_min, excluded.value_min), value_max = greatest(r.value_max, excluded.value_max),
        first_ts = least(r.first_ts, excluded.first_ts), last_ts = greatest(r.last_ts, excluded.last_ts)
"""


@dataclass(frozen=True)
class Advance:
    start: dt.datetime
    end: dt.datetime
    hourly: int
    """Hourly rows added or updated."""
    daily: int
    caught_up: bool


def advance(conn: psycopg.Connection, max_span: dt.timedelta = MAX_SPAN, settle: dt.timedelta = SETTLE,
            ) -> Advance | None:
    """One run: fold the readings that arrived in [watermark, horizon) into both rollups and move the watermark.

    None with TimescaleDB (its continuous aggregates keep themselves). Safe to run from several processes:
    the watermark row is locked for the run.
    """
    if partitions.timescaledb_installed(conn):
        return None
    with conn.transaction():
        start = conn.execute("select arrived_to from reading_rollup_state for update").fetchone()[0]
        conn.execute("select pg_stat_clear_snapshot()")  # else a transaction sees the sessions of its start
        end, blind = conn.execute(_HORIZON, {"settle": settle, "start": start, "span": max_span}).fetchone()
        if blind:
            end = min(end, conn.execute("select clock_timestamp() - %s", (BLIND_SETTLE,)).fetchone()[0])
        if end <= start:
            return Advance(start, start, 0, 0, caught_up=True)
        query = sql.SQL(_ADD).format(upsert_hourly=_upsert_sql("reading_hourly", "interval '1 hour'"),
                                     upsert_daily=_upsert_sql("reading_daily", "interval '1 day'"))
        hourly, daily = conn.execute(query, {"start": start, "end": end, "origin": BUCKET_ORIGIN}).fetchone()
        conn.execute("update reading_rollup_state set arrived_to = %s", (end,))
    return Advance(start, end, hourly, daily, caught_up=end < start + max_span)


def _upsert_sql(table: str, width: str) -> sql.Composed:
    return sql.SQL(_UPSERT).format(table=sql.Identifier(table), width=sql.SQL(width))


def catch_up(conn: psycopg.Connection, settle: dt.timedelta = SETTLE, max_runs: int = 10_000,
             stopping: Callable[[], bool] = lambda: False) -> int:
    """Advance until the watermark reaches the horizon (after a pause, or on a store made before 0040), or
    until ``stopping()``; each run is its own transaction, so stopping between two loses nothing."""
    runs = 0
    while runs < max_runs and not stopping():
        done = advance(conn, settle=settle)
        runs += 1
        if done is None or done.caught_up:
            break
    return runs


EXPIRE_BATCH = 50_000
"""Hourly rollup rows deleted per transaction: a first run over years of them is many short transactions."""


def expire_hourly(conn: psycopg.Connection, days: int | None, now: dt.datetime | None = None,
                  batch: int = EXPIRE_BATCH) -> int:
    """Delete the hourly rollups of buckets older than ``days`` (``GANZHI_HOURLY_ROLLUP_RETENTION_DAYS``; None
    keeps them); the daily rollups keep that history. The number of rows deleted (with TimescaleDB, whose
    continuous aggregate loses whole chunks, 0)."""
    if days is None:
        return 0
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    if partitions.timescaledb_installed(conn):
        with conn.transaction():
            conn.execute("select drop_chunks('reading_hourly', older_than => %s::timestamptz)", (cutoff,))
        return 0
    deleted = 0
    while True:
        with conn.transaction():
            gone = conn.execute(
                "delete from reading_hourly where ctid = any(array("
                "select ctid from reading_hourly where bucket < %(cutoff)s limit %(batch)s))",
                {"cutoff": cutoff, "batch": batch}).rowcount
        deleted += gone
        if gone < batch:
            break
    if deleted:
        log.info("hourly rollups: deleted %d rows of buckets before %s", deleted, cutoff.isoformat())
    return deleted


def rollup_for(width: dt.timedelta) -> tuple[str, dt.timedelta] | None:
    """The rollup table a bucket of this width can be built from (daily for whole days, hourly for whole
    hours), with that table's own width; None when only the raw readings will do."""
    for unit in (DAY, HOUR):
        if width >= unit and width % unit == dt.timedelta(0):
            return TABLES[unit], unit
    return None


def fresh_from(conn: psycopg.Connection) -> dt.datetime | None:
    """Readings that arrived from this moment on are not in the rollups yet; None when the rollups are
    always current (TimescaleDB's real-time continuous aggregates)."""
    if partitions.timescaledb_installed(conn):
        return None
    return conn.execute("select arrived_to from reading_rollup_state").fetchone()[0]
