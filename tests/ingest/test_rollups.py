"""Hourly and daily rollups on plain PostgreSQL: equal to the raw aggregation, late readings folded into
their old buckets, nothing counted twice or before it is committed, and history kept past raw retention."""

from __future__ import annotations

import datetime as dt
import random

import psycopg
import pytest

from core.settings import Settings
from ingest import queries, rollups, store

BEIJING = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 11, 1, 0, 0, tzinfo=BEIJING)
NOW = dt.timedelta(0)


@pytest.fixture
def store_conn(migrated_database):
    url = migrated_database()
    with psycopg.connect(url) as conn:
        store.ensure_partitions_for(conn, [START + dt.timedelta(days=d) for d in range(-2, 9)])
        conn.commit()
        yield conn


def _insert(conn: psycopg.Connection, rows: list[tuple[int, str, dt.datetime, float]]) -> None:
    with conn.cursor() as cur:
        cur.executemany("insert into reading (terminal_id, metric, ts, value) values (%s, %s, %s, %s) "
                        "on conflict do nothing", rows)
    conn.commit()


def _random_readings(seed: int, count: int) -> list[tuple[int, str, dt.datetime, float]]:
    rng = random.Random(seed)
    return list({(rng.choice([1, 2, 3]), rng.choice(["w01001", "a34004"]),
                  START + dt.timedelta(seconds=rng.randrange(0, 7 * 86400)), round(rng.uniform(-5, 50), 3)): None
                 for _ in range(count)})


def _raw(conn: psycopg.Connection, width: str) -> dict[tuple, tuple]:
    rows = conn.execute(
        f"""select terminal_id, metric, date_bin(interval '{width}', ts, %s), count(*), sum(value), min(value),
                   max(value), min(ts), max(ts)
              from reading group by 1, 2, 3""", (rollups.BUCKET_ORIGIN,)).fetchall()
    return {tuple(r[:3]): (r[3], pytest.approx(r[4]), r[5], r[6], r[7], r[8]) for r in rows}


def _rolled(conn: psycopg.Connection, table: str) -> dict[tuple, tuple]:
    rows = conn.execute(f"select terminal_id, metric, bucket, readings, value_sum, value_min, value_max, "
                        f"first_ts, last_ts from {table}").fetchall()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def test_rollups_equal_the_raw_aggregation_and_feed_the_bucketed_query(store_conn):
    conn = store_conn
    _insert(conn, _random_readings(1, 3000))
    rollups.catch_up(conn, settle=NOW)
    assert _rolled(conn, "reading_hourly") == _raw(conn, "1 hour")
    assert _rolled(conn, "reading_daily") == _raw(conn, "1 day")

    window = (START + dt.timedelta(hours=5, minutes=7), START + dt.timedelta(days=6, hours=3))
    for width in (dt.timedelta(hours=1), dt.timedelta(hours=6), dt.timedelta(days=1), dt.timedelta(days=2)):
        for metric in (None, "w01001"):
            got = queries.buckets(conn, 2, metric, *window, width)
            want = queries._raw_buckets(conn, 2, metric, [window], width)
            assert [(r["bucket"], r["metric"], r["count"], r["min"], r["max"]) for r in got] == \
                   [(r["bucket"], r["metric"], r["count"], r["min"], r["max"]) for r in want], width
            assert [r["avg"] for r in got] == pytest.approx([r["avg"] for r in want])


def test_late_readings_land_in_their_old_buckets_and_redeliveries_count_once(store_conn):
    conn = store_conn
    rows = _random_readings(2, 500)
    _insert(conn, rows)
    rollups.catch_up(conn, settle=NOW)
    late = [(1, "w01001", START + dt.timedelta(hours=1, seconds=1), 1000.0)]
    _insert(conn, late + rows[:100])  # a late reading, and a redelivery of readings already stored
    rollups.catch_up(conn, settle=NOW)
    assert _rolled(conn, "reading_hourly") == _raw(conn, "1 hour")
    assert _rolled(conn, "reading_daily") == _raw(conn, "1 day")
    hour = conn.execute("select value_max from reading_hourly where terminal_id = 1 and metric = 'w01001' "
                        "and bucket = %s", (START + dt.timedelta(hours=1),)).fetchone()
    assert hour == (1000.0,)


def test_a_reading_still_uncommitted_is_not_passed_by_the_watermark(store_conn):
    conn = store_conn
    url = conn.info.dsn
    with psycopg.connect(url) as writer:
        writer.execute("insert into reading (terminal_id, metric, ts, value) values (9, 'w01001', %s, 5)", (START,))
        _insert(conn, [(9, "w01001", START + dt.timedelta(minutes=1), 6.0)])  # committed after the first began
        rollups.catch_up(conn, settle=NOW)
        assert conn.execute("select count(*) from reading_hourly where terminal_id = 9").fetchone() == (0,)
        writer.commit()
    rollups.catch_up(conn, settle=NOW)
    assert conn.execute("select readings from reading_hourly where terminal_id = 9").fetchone() == (2,)


def test_retention_drops_readings_but_not_the_rollups(store_conn):
    conn = store_conn
    _insert(conn, _random_readings(3, 1000))
    rollups.catch_up(conn, settle=NOW)
    before = _rolled(conn, "reading_daily")
    window = (START, START + dt.timedelta(days=7))
    charted = queries.buckets(conn, 1, None, *window, dt.timedelta(days=1))
    maintained = store.maintain(conn, retention_days=30, premake_days=1, today=START.date() + dt.timedelta(days=60))
    conn.commit()
    assert maintained.dropped
    assert conn.execute("select count(*) from reading").fetchone() == (0,)
    rollups.catch_up(conn, settle=NOW)
    assert _rolled(conn, "reading_daily") == before
    assert queries.buckets(conn, 1, None, *window, dt.timedelta(days=1)) == charted


def test_a_session_that_only_reads_does_not_hold_the_rollups_back(store_conn):
    """A long read (a pg_dump, a pooled connection idle in a transaction) must not stall the rollups."""
    conn = store_conn
    with psycopg.connect(conn.info.dsn) as reader:
        reader.execute("select count(*) from reading")  # a transaction open, nothing written
        _insert(conn, [(8, "w01001", START, 1.0)])
        rollups.catch_up(conn, settle=NOW)
        assert conn.execute("select readings from reading_hourly where terminal_id = 8").fetchone() == (1,)


def test_hourly_rollups_past_their_retention_go_in_batches_and_the_daily_ones_stay(store_conn):
    conn = store_conn
    _insert(conn, _random_readings(5, 1000))  # a week of readings from START
    rollups.catch_up(conn, settle=NOW)
    hourly, daily = _rolled(conn, "reading_hourly"), _rolled(conn, "reading_daily")
    now = START + dt.timedelta(days=34)  # 30 days of hourly history: the buckets of the first 4 days expire
    cutoff = now - dt.timedelta(days=30)
    assert rollups.expire_hourly(conn, None, now=now) == 0  # unset: kept
    deleted = rollups.expire_hourly(conn, 30, now=now, batch=7)
    kept = _rolled(conn, "reading_hourly")
    assert deleted == sum(bucket < cutoff for _, _, bucket in hourly) > 7
    assert kept == {key: value for key, value in hourly.items() if key[2] >= cutoff} and kept
    assert _rolled(conn, "reading_daily") == daily
    assert rollups.expire_hourly(conn, 30, now=now) == 0  # nothing left to delete


def test_hourly_rollup_retention_may_not_be_shorter_than_the_readings():
    with pytest.raises(ValueError, match="GANZHI_HOURLY_ROLLUP_RETENTION_DAYS"):
        Settings(retention_days=400, hourly_rollup_retention_days=100)
    assert Settings(retention_days=400, hourly_rollup_retention_days=730).hourly_rollup_retention_days == 730
    assert Settings(retention_days=400).hourly_rollup_retention_days is None
