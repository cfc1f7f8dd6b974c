"""Issue 10 §5: a reading's value is finite in the store itself (``Cou=inf`` was stored as Infinity).

Migrations 0086 (the constraint, NOT VALID) and 0087 (old dead letters' PWs) are run on a database left at 0085
with such rows in it, as an upgraded deployment would be; maintenance (``store.validate_finite``) then moves the
old rows to the dead letters and validates the constraint, one partition per transaction."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from core import partitions
from core.migrate import _apply, discover, migrate
from ganzhi.database import MIGRATION_DIRS
from ingest import store

AT = dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC)
ROWS = [("w01001", 0, "7.5"), ("w00000:cou:min", 1, "Infinity"), ("w01001", 2, "-Infinity"), ("w21003", 3, "NaN")]


@pytest.fixture
def at_0085(fresh_database) -> str:
    url = fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table schema_migration (version integer primary key, name text not null,"
                     " checksum text not null, applied_at timestamptz not null default now())")
        for migration in discover(MIGRATION_DIRS):
            if migration.version <= 85:
                _apply(conn, migration)
    return url


def test_old_non_finite_readings_leave_the_store_and_no_new_one_enters(at_0085):
    with psycopg.connect(at_0085) as conn:
        partitions.ensure_daily_partitions(conn, store.TABLE, [AT.date()])  # as the owner: at 0085 no maker yet
        for metric, minutes, value in ROWS:
            conn.execute("insert into reading (terminal_id, metric, ts, value) values (1, %(metric)s, %(ts)s,"
                         " %(value)s::float8)", {"metric": metric, "ts": AT + dt.timedelta(minutes=minutes),
                                                 "value": value})
        conn.execute("insert into dead_letter (topic, payload, payload_size, payload_sha256, reason) values"
                     " ('hj212://x', %(frame)s, 1, '', 'kept before')",
                     {"frame": b"##0040QN=1;ST=32;CN=2011;PW =987654;MN=1;CP=&&&&1234\r\n"})
        conn.commit()
        applied = [m.version for m in migrate(conn, MIGRATION_DIRS)]
        assert {86, 87} <= set(applied)
        # the migrations do not scan the store (hours on a large one, holding their locks): maintenance does,
        # one partition per transaction
        assert conn.execute("select count(*) from reading").fetchone() == (4,)
        assert conn.execute("select bool_or(convalidated) from pg_constraint"
                            " where conname = 'reading_value_finite'").fetchone() == (False,)
        assert store.validate_finite(conn) == 1
        assert conn.execute("select metric, value from reading").fetchall() == [("w01001", 7.5)]
        moved = conn.execute("select convert_from(payload, 'UTF8')::json ->> 'value' from dead_letter"
                             " where topic = 'reading' order by 1").fetchall()
        assert moved == [("-Infinity",), ("Infinity",), ("NaN",)]
        assert conn.execute("select bool_and(convalidated) from pg_constraint"
                            " where conname = 'reading_value_finite'").fetchone() == (True,)
        frame = conn.execute("select payload from dead_letter where topic = 'hj212://x'").fetchone()[0]
        assert b"987654" not in bytes(frame) and b"PW =***;" in bytes(frame)
        conn.commit()
        for value in ("Infinity", "-Infinity", "NaN"):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("insert into reading (terminal_id, metric, ts, value) values (2, 'w01001', %(ts)s,"
                             " %(value)s::float8)", {"ts": AT, "value": value})
            conn.rollback()


def test_the_constraint_waits_for_its_lock_only_so_long_and_can_be_run_again(at_0085):
    """0086 takes ACCESS EXCLUSIVE on the table and every partition; writers queue behind it while it waits, so
    it gives up after its lock_timeout, changing nothing, and is run again."""
    with psycopg.connect(at_0085) as reader, psycopg.connect(at_0085) as conn:
        partitions.ensure_daily_partitions(conn, store.TABLE, [AT.date()])  # at 0085: no partition maker yet
        conn.commit()
        reader.execute("select count(*) from reading")  # a long transaction holding ACCESS SHARE
        with pytest.raises(psycopg.errors.LockNotAvailable):
            migrate(conn, MIGRATION_DIRS)
        assert conn.execute("select count(*) from pg_constraint where conname = 'reading_value_finite'"
                            ).fetchone() == (0,)
        conn.rollback()
        reader.rollback()
        assert {86, 87} <= {m.version for m in migrate(conn, MIGRATION_DIRS)}
