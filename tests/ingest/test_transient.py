"""Issue 10: a failure that passes (a lock held by another session, a timeout, a deadlock) refuses nothing.

The writer tells three answers apart (``core.pgerrors``): a lost database (retry the whole later), a transient
state (retry; refuse a part only if it keeps failing while others are written) and a refusal (split)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from core.pgerrors import DatabaseBusy, is_outage, is_transient
from devices import encode_telemetry
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from tests.factories import terminal_in
from tests.mqtt import WorkerThread, give_secret, publish, wait_until
from tests.refusals import refusing_readings

ACTOR = Actor("test")


def _terminals(conn, count: int) -> list[tuple[int, str]]:
    codes = [service.create_terminal(conn, terminal_in(f"空气{i}"), ACTOR) for i in range(count)]
    conn.commit()
    return [(conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0], code) for code in codes]


def _parts(terminals: list[tuple[int, str]], start_ms: int) -> list[Batch]:
    return [Batch(readings=[Accepted(tid, code, "a34004", start_ms + i, 1.0, None)])
            for i, (tid, code) in enumerate(terminals)]


def _count(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url) as c:
        return c.execute(sql).fetchone()[0]


class _HeldLock:
    """Another session holding ``LOCK reading IN SHARE MODE`` (writers wait) until ``release``."""

    def __init__(self, db_url: str) -> None:
        self._conn = psycopg.connect(db_url)
        self._conn.execute("lock table reading in share mode")

    def release(self) -> None:
        self._conn.rollback()
        self._conn.close()


@pytest.mark.parametrize(("sqlstate", "transient"), [
    ("57014", True), ("55P03", True), ("40P01", True), ("40001", True), ("58030", True), ("53400", True),
    ("23514", False), ("22P05", False), ("54000", False)])
def test_transient_states(sqlstate, transient):
    assert is_transient(psycopg.errors.lookup(sqlstate)("x")) is transient


def test_read_only_and_lost_databases_are_outages(db_url):
    with psycopg.connect(db_url) as c:
        assert is_outage(psycopg.errors.lookup("25006")("read only"), c)
        assert is_outage(psycopg.errors.lookup("57P01")("admin shutdown"), c)
        assert not is_outage(psycopg.errors.lookup("57014")("cancelled"), c)


def test_a_lock_held_by_another_session_dead_letters_nothing(conn, db_url):
    """The reviewer's probe: a writer with statement_timeout=300ms while another session holds LOCK reading IN
    SHARE MODE for 2 s dead-lettered 3 of 4 good readings. Now nothing is refused: the batch is the database's
    outage (``DatabaseBusy``) while the lock is held, and all of it is stored after the lock goes."""
    parts = _parts(_terminals(conn, 4), int(time.time() * 1000) - 60_000)
    writer = Writer()
    with psycopg.connect(db_url, options="-c statement_timeout=300") as c:
        lock = _HeldLock(db_url)
        try:
            with pytest.raises(DatabaseBusy):
                writer.write_parts(c, parts)
        finally:
            lock.release()
        written = writer.write_parts(c, parts)
    assert written.refused == {} and written.stored == 4
    assert _count(db_url, "select count(*) from reading") == 4


def test_a_lock_released_during_the_write_refuses_nothing(conn, db_url):
    parts = _parts(_terminals(conn, 4), int(time.time() * 1000) - 60_000)
    lock = _HeldLock(db_url)
    threading.Timer(0.5, lock.release).start()
    with psycopg.connect(db_url, options="-c statement_timeout=300") as c:
        written = Writer().write_parts(c, parts)
    assert written.refused == {} and written.stored == 4


def test_a_transient_state_raised_for_one_part_refuses_that_part_only(conn, db_url):
    """A trigger cancelling one device's rows (57014) is that device's trouble: its part is refused."""
    terminals = _terminals(conn, 4)
    parts = _parts(terminals, int(time.time() * 1000) - 60_000)
    with refusing_readings(db_url, terminals[1][1], "57014"), psycopg.connect(db_url) as c:
        written = Writer().write_parts(c, parts)
    assert list(written.refused) == [1] and written.stored == 3


def test_a_transient_state_for_every_part_of_a_batch_of_one_device_refuses_it(conn, db_url):
    """When every part fails so but the store can be written (no lock blocks it), the parts are refused."""
    terminals = _terminals(conn, 1)
    start = int(time.time() * 1000) - 60_000
    parts = [Batch(readings=[Accepted(*terminals[0], "a34004", start + i, 1.0, None)]) for i in range(3)]
    with refusing_readings(db_url, terminals[0][1], "57014"), psycopg.connect(db_url) as c:
        written = Writer().write_parts(c, parts)
    assert sorted(written.refused) == [0, 1, 2] and written.stored == 0


def test_a_worker_survives_a_lock_on_its_debt_and_lookup_steps_and_stores_everything(conn, db_url, auth_broker):
    """Steps before the write (the latest values' repair, the ledger lookup) failing with a statement timeout
    exited the worker (the broker redelivered the batch to the next one, which could fail the same way): now they
    are retried in process and every reading is stored once the lock goes."""
    code = service.create_terminal(conn, terminal_in("锁"), ACTOR)
    conn.commit()
    give_secret(db_url, code)
    auth_broker.sync()
    timed_out = f"{db_url}{'&' if '?' in db_url else '?'}options=-c%20statement_timeout%3D300"
    blocker = psycopg.connect(db_url)
    blocker.execute("lock table latest_debt, pole in access exclusive mode")
    try:
        with WorkerThread(timed_out, auth_broker) as worker:
            threading.Timer(2.0, blocker.rollback).start()  # the steps time out meanwhile
            publish(auth_broker.address, code, "s3cret", [(f"ganzhi/v1/{code}/telemetry", encode_telemetry(
                [{"metric": "a34004", "value": i}], int(time.time() * 1000) - 60_000 + i)) for i in range(5)])
            wait_until(lambda: _count(db_url, "select count(*) from reading") == 5)
            assert worker._service.state == "running"
    finally:
        blocker.close()
    assert _count(db_url, "select count(*) from dead_letter") == 0
