"""Readings are partitioned by day on plain PostgreSQL: made ahead, on demand for late data,
and dropped past retention."""

from __future__ import annotations

import datetime as dt

import psycopg

from core import partitions
from ingest import store

TODAY = dt.date(2026, 11, 27)


def _reading_days(conn: psycopg.Connection) -> list[dt.date]:
    return sorted(partitions.existing_partitions(conn, store.TABLE))


def test_maintain_makes_partitions_ahead_and_drops_past_retention(migrated_database):
    url = migrated_database()
    with psycopg.connect(url) as conn:
        first = store.maintain(conn, retention_days=30, premake_days=3, today=TODAY)
        assert first.mode == "partitions"
        assert _reading_days(conn) == partitions.days_between(TODAY - dt.timedelta(days=1), TODAY + dt.timedelta(3))

        # A month later: new days are made, the days past 30 days of retention are dropped.
        later = TODAY + dt.timedelta(days=31)
        second = store.maintain(conn, retention_days=30, premake_days=3, today=later)
        assert second.dropped == ["reading_p20261126", "reading_p20261127"]
        assert _reading_days(conn)[0] == TODAY + dt.timedelta(days=1)
        assert _reading_days(conn)[-1] == later + dt.timedelta(days=3)

        repeat = store.maintain(conn, retention_days=30, premake_days=3, today=later)
        assert (repeat.created, repeat.dropped) == ([], [])


def test_late_readings_get_their_partition_and_land_in_it(migrated_database):
    url = migrated_database()
    with psycopg.connect(url) as conn:
        late = dt.datetime(2026, 10, 3, 23, 59, tzinfo=dt.UTC)
        with conn.transaction():
            created = store.ensure_partitions_for(conn, [late, late + dt.timedelta(minutes=2)])
            conn.execute("insert into reading (terminal_id, metric, ts, value) values (1, 'w01001', %s, 7.1)", (late,))
            conn.execute("insert into reading (terminal_id, metric, ts, value) values (1, 'w01001', %s, 7.2)",
                         (late + dt.timedelta(minutes=2),))
        assert created == ["reading_p20261003", "reading_p20261004"]
        stored = conn.execute("select tableoid::regclass::text, value from reading order by ts").fetchall()
        assert stored == [("reading_p20261003", 7.1), ("reading_p20261004", 7.2)]

        # The same reading twice is stored once: (terminal, metric, time) is the key.
        with conn.transaction():
            conn.execute(
                "insert into reading (terminal_id, metric, ts, value) values (1, 'w01001', %s, 7.1) "
                "on conflict do nothing", (late,))
        assert conn.execute("select count(*) from reading").fetchone()[0] == 2


def test_concurrent_partition_creation_does_not_collide(migrated_database):
    url = migrated_database()
    with psycopg.connect(url) as a, psycopg.connect(url) as b:
        day = [dt.date(2026, 9, 1)]
        with a.transaction():
            made_by_a = partitions.ensure_daily_partitions(a, store.TABLE, day)
        with b.transaction():
            made_by_b = partitions.ensure_daily_partitions(b, store.TABLE, day)
        assert (made_by_a, made_by_b) == (["reading_p20260901"], [])
