"""Rollups benchmark: a one-year daily chart of one terminal, from the raw readings and from the rollups.

Method (a store of 10^9 readings cannot be built on a development box): for each store size N, a scratch
database holds one chart terminal (10 metrics every 10 minutes for a year: 525,600 readings) and N minus
that of volume readings from 10,000 other terminals, spread over the same year and inserted in time order
with the chart terminal's (interleaved, as they arrive). The rollups are built by the real maintenance step
(``ingest.rollups.catch_up``), timed. The chart query is the API's (``ingest.queries.buckets``, 1-day
buckets, every metric), against the raw aggregation of the same window; medians of several runs, warm
cache, and the pages each one touches (EXPLAIN BUFFERS), which do not depend on the machine.

The raw query reads the chart terminal's own rows through the primary key in each daily partition: its cost
follows that terminal's readings, and the store size only through index depth and cache. So the figure at
10^9 is extrapolated from the largest size measured by the pages the query must touch (see ``_extrapolate``),
and the pages touched are the honest basis for a cold cache: each page not in memory is one random read.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time

import psycopg

from core.settings import Settings
from ganzhi.benchkit import drop_database, scratch_database
from ganzhi.database import prepare
from ingest import queries, rollups, store

CHART_TERMINAL = 1
METRICS = 10
STEP_S = 600
OTHER_TERMINALS = 10_000
YEAR = dt.timedelta(days=365)

_FILL = """
    insert into reading (terminal_id, metric, ts, value)
    select terminal_id, metric, ts, value from (
        select %(chart)s::bigint as terminal_id, 'm' || lpad(m::text, 2, '0') as metric, ts,
               round((random() * 100)::numeric, 2)::double precision as value
          from generate_series(1, %(metrics)s) m,
               generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 second',
                               make_interval(secs => %(step)s)) ts
        union all
        select 2 + i %% %(others)s, 'm' || lpad((i / %(others)s %% %(metrics)s + 1)::text, 2, '0'),
               %(start)s::timestamptz + (i::double precision / %(volume)s) * %(year)s,
               round((random() * 100)::numeric, 2)::double precision
          from generate_series(0, %(volume)s - 1) i
    ) r
    order by ts
"""


def run(url: str, settings: Settings, sizes: list[int], runs: int) -> None:
    load = os.getloadavg()
    print(f"box: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    chart_rows = METRICS * int(YEAR.total_seconds() // STEP_S)
    print(f"chart terminal: {METRICS} metrics every {STEP_S} s for a year = {chart_rows:,} readings; "
          f"volume from {OTHER_TERMINALS:,} other terminals; query: 1-day buckets over the year, every metric")
    results = []
    for size in sizes:
        scratch = scratch_database(url)
        try:
            results.append(_one_size(scratch, settings, size, chart_rows, runs))
        finally:
            drop_database(url, scratch)
    _extrapolate(results)


def _one_size(url: str, settings: Settings, size: int, chart_rows: int, runs: int) -> dict:
    prepare(url, settings)
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - YEAR
    volume = max(0, size - chart_rows)
    with psycopg.connect(url, autocommit=True) as conn:
        store.ensure_partitions_for(conn, [start + dt.timedelta(days=d) for d in range(YEAR.days + 1)])
        started = time.perf_counter()
        conn.execute(_FILL, {"chart": CHART_TERMINAL, "metrics": METRICS, "start": start, "end": end,
                             "step": STEP_S, "others": OTHER_TERMINALS, "volume": volume, "year": YEAR})
        filled = time.perf_counter() - started
        rows = conn.execute("select count(*) from reading").fetchone()[0]
        started = time.perf_counter()
        rollups.catch_up(conn, settle=dt.timedelta(0))
        rolled = time.perf_counter() - started
        conn.execute("analyze")
        bytes_reading = _bytes_per_row(conn, "reading", rows)
        hourly_rows = conn.execute("select count(*) from reading_hourly").fetchone()[0]
        bytes_hourly = _bytes_per_row(conn, "reading_hourly", hourly_rows)
        print(f"\nstore of {rows:,} readings: filled in {filled:.0f} s; rollups built by the maintenance step in "
              f"{rolled:.1f} s ({rows / rolled:,.0f} readings/s); {bytes_reading:.0f} bytes per reading "
              f"(table + indexes), {bytes_hourly:.0f} bytes per hourly rollup row")
        window = (start, end)
        raw = _time(runs, lambda: queries._raw_buckets(conn, CHART_TERMINAL, None, [window], rollups.DAY))
        rolled_up = _time(runs, lambda: queries.buckets(conn, CHART_TERMINAL, None, *window, rollups.DAY))
        same = (sorted((r["bucket"], r["metric"], r["count"]) for r in raw[1])
                == sorted((r["bucket"], r["metric"], r["count"]) for r in rolled_up[1]))
        raw_pages, rollup_pages = _pages(conn, "reading", window), _pages(conn, "reading_daily", window)
    print(f"  raw readings: median {raw[0] * 1000:,.1f} ms, {raw_pages:,} pages; rollups: median "
          f"{rolled_up[0] * 1000:,.2f} ms, {rollup_pages:,} pages; {len(raw[1]):,} buckets, same result: {same}")
    if not same:
        raise RuntimeError("the rollup chart differs from the raw aggregation")
    return {"size": rows, "raw_s": raw[0], "rollup_s": rolled_up[0], "raw_pages": raw_pages,
            "rollup_pages": rollup_pages, "bytes": bytes_reading}


def _time(runs: int, query) -> tuple[float, list[dict]]:
    result = query()  # warm-up
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = query()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), result


def _bytes_per_row(conn: psycopg.Connection, table: str, rows: int) -> float:
    """Table, indexes and TOAST of ``table`` and its partitions, per row."""
    total = conn.execute(
        """select greatest(pg_total_relation_size(%(t)s::regclass),
                           (select coalesce(sum(pg_total_relation_size(relid)), 0)
                              from pg_partition_tree(%(t)s::regclass)))""", {"t": table}).fetchone()[0]
    return total / max(rows, 1)


def _pages(conn: psycopg.Connection, table: str, window: tuple[dt.datetime, dt.datetime]) -> int:
    """Shared buffers (hit + read) the chart query touches on ``table``."""
    column = "ts" if table == "reading" else "bucket"
    plan = conn.execute(
        f"""explain (analyze, buffers, format json)
            select date_trunc('day', {column}), metric, count(*) from {table}
             where terminal_id = %s and {column} >= %s and {column} < %s group by 1, 2""",
        (CHART_TERMINAL, *window)).fetchone()[0][0]["Plan"]
    return plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)


def _extrapolate(results: list[dict]) -> None:
    """10^9 from the largest store measured, scaled by the pages the raw query must touch there.

    The 10 readings of one message share a heap page; once the volume between two messages of the chart
    terminal fills a page, each message is on a page of its own and the count stops growing with the store
    (the bound: one page per message, 52,560 a year). Below the bound, time is scaled by pages (CPU per row
    is the same); at or near it, the largest store's time stands. Index depth adds a level per daily
    partition over two decades (365 pages), counted in the cold estimate.
    """
    last = results[-1]
    bound = int(YEAR.total_seconds() // STEP_S)
    pages = max(last["raw_pages"], bound + YEAR.days)
    warm = last["raw_s"] * max(1.0, pages / last["raw_pages"])
    measured = ", ".join(f"{r['raw_pages']:,}" for r in results)
    print(f"\nextrapolated to 1e9 readings from the store of {last['size']:.1e} (method: ganzhi/bench_rollups.py, "
          f"_extrapolate): the raw query touches ~{pages:,} pages there (one per message of the chart terminal, "
          f"+ a B-tree level per daily partition; measured {measured})")
    print(f"  raw readings: ~{warm * 1000:,.0f} ms warm, ~{warm * 1000 + pages * 0.1:,.0f} ms cold "
          f"(0.1 ms per random SSD read)")
    rollup_ms = last["rollup_s"] * 1000
    print(f"  rollups: ~{rollup_ms:,.1f} ms warm, ~{rollup_ms + last['rollup_pages'] * 0.1:,.1f} ms cold "
          f"({last['rollup_pages']} pages: 365 days x {METRICS} metrics, whatever the store size)")
