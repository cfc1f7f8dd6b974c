"""The newest reading per (terminal, metric): two ingest workers upserting the same keys never deadlock."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from ingest import latest
from ingest.latest import LatestBehind
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from tests.factories import terminal_in

ACTOR = Actor("test")


def _waiting_for_a_lock(url: str, application_name: str) -> bool:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("select exists (select 1 from pg_stat_activity where application_name = %s "
                         "and wait_event_type = 'Lock')", (application_name,)).fetchone()[0]


@pytest.mark.parametrize("reverse", [False, True])
def test_keys_are_locked_in_one_order_whatever_order_the_batch_has(conn, db_url: str, reverse: bool):
    """Batches of a shared subscription hold the same terminals in any order; locking the rows in the batch's
    order let two workers each hold a key the other wanted (deadlock, batch retried after a second)."""
    code = service.create_terminal(conn, terminal_in("最新值测试"), ACTOR)
    conn.commit()
    terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
    first, second = (Accepted(terminal_id, code, m, 1_700_000_000_000, 1.0, None) for m in ("a34002", "a34004"))
    with psycopg.connect(db_url) as holder:  # another worker's transaction holds the first key
        latest.write(holder, [first])
        done = threading.Event()

        def worker_batch() -> None:  # the batch lists the keys in the other order
            with psycopg.connect(db_url, application_name="latest-b") as b:
                order = (second, first) if reverse else (first, second)
                latest.write(b, [Accepted(terminal_id, code, r.metric, r.ts_ms + 1, 2.0, None) for r in order])
                b.commit()
            done.set()

        thread = threading.Thread(target=worker_batch, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_for_a_lock(db_url, "latest-b") and time.monotonic() < deadline:
            time.sleep(0.02)
        # The waiting batch must not hold the second key meanwhile, or this (the holder's next step) deadlocks.
        holder.execute("set lock_timeout = '2s'")
        latest.write(holder, [second])
        holder.commit()
    thread.join(10)
    assert done.is_set()
    values = conn.execute("select metric, value from latest_reading where terminal_id = %s order by metric",
                          (terminal_id,)).fetchall()
    assert values == [("a34002", 2.0), ("a34004", 2.0)]


def test_a_batch_keeps_the_newest_of_each_key_and_the_later_of_a_tie(conn):
    code = service.create_terminal(conn, terminal_in("最新值批内"), ACTOR)
    conn.commit()
    terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
    ts = 1_700_000_000_000
    latest.write(conn, [Accepted(terminal_id, code, "a34002", ts + 1, 1.0, None),
                   Accepted(terminal_id, code, "a34002", ts + 3, 3.0, "M"),
                   Accepted(terminal_id, code, "a34004", ts + 5, 5.0, None),
                   Accepted(terminal_id, code, "a34002", ts + 2, 2.0, None),
                   Accepted(terminal_id, code, "a34002", ts + 3, 4.0, None)])
    latest.write(conn, [Accepted(terminal_id, code, "a34004", ts + 4, 9.0, None)])  # older than the stored one
    rows = conn.execute("select metric, extract(epoch from ts) * 1000, value, flag from latest_reading "
                        "where terminal_id = %s order by metric", (terminal_id,)).fetchall()
    assert rows == [("a34002", ts + 3, 4.0, None), ("a34004", ts + 5, 5.0, None)]


def test_values_reach_the_table_verbatim(conn):
    """The columns go as array literals: text that looks like NULL or holds quotes and backslashes stays text."""
    code = service.create_terminal(conn, terminal_in("最新值原样"), ACTOR)
    conn.commit()
    terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
    odd = ["NULL", 'a"b', "c\\d", "e,f}", " g"]
    latest.write(conn, [Accepted(terminal_id, code, metric, 1_700_000_000_000 + n, -1.5e-7 * n, "N" if n else None)
                   for n, metric in enumerate(odd)])
    rows = conn.execute("select metric, value, flag from latest_reading where terminal_id = %s order by metric",
                        (terminal_id,)).fetchall()
    assert rows == sorted((metric, -1.5e-7 * n, "N" if n else None) for n, metric in enumerate(odd))


def test_rows_rewritten_with_every_batch_leave_room_for_hot_updates(conn):
    """latest_reading and device_state are updated in place all the time: at fillfactor 100 under 3 % of those
    updates were HOT and the tables bloated with dead versions that every upsert walked."""
    options = dict(conn.execute("select relname, reloptions from pg_class where relname in "
                                "('latest_reading', 'device_state')").fetchall())
    assert options == {"latest_reading": ["fillfactor=50"], "device_state": ["fillfactor=50"]}


def _terminal(conn, name: str) -> tuple[int, str]:
    code = service.create_terminal(conn, terminal_in(name), ACTOR)
    conn.commit()
    return conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0], code


def _latest_values(conn, terminal_id: int) -> dict[str, float]:
    return dict(conn.execute("select metric, value from latest_reading where terminal_id = %s",
                             (terminal_id,)).fetchall())


def _debts(conn) -> list[str]:
    return [worker for (worker,) in conn.execute("select worker from latest_debt_run order by worker")]


def test_a_worker_writes_each_key_behind_its_readings_once_per_interval(conn, db_url):
    """A key reporting several times a second was rewritten with every batch (PostgreSQL's largest cost per
    message when paced); held back, it is written once when the oldest held key is due, with the newest value."""
    terminal_id, code = _terminal(conn, "最新值滞后")
    now = int(time.time() * 1000)
    behind = LatestBehind("worker-a", every_s=3600)
    writer = Writer(behind)
    with psycopg.connect(db_url) as c:
        for n in range(3):
            writer.write(c, Batch(readings=[Accepted(terminal_id, code, "a34004", now + n, float(n), None)]))
        assert c.execute("select count(*) from reading").fetchone()[0] == 3  # the readings are committed
        assert _latest_values(c, terminal_id) == {}  # the newest value is held, and owed
        assert _debts(c) == ["worker-a"]
        assert behind.held == 1
        behind.every_s = 0  # now due: the next batch writes the held key with its own
        writer.write(c, Batch(readings=[Accepted(terminal_id, code, "a34002", now, 9.0, None)]))
        assert _latest_values(c, terminal_id) == {"a34004": 2.0, "a34002": 9.0}
        assert _debts(c) == []
        assert behind.held == 0


def test_keys_held_by_a_worker_that_died_are_folded_in_from_the_readings(conn, db_url):
    """A worker killed while holding keys leaves its debt: its next run (same client id) folds the readings
    received since into latest_reading; another worker does it once the debt is stale."""
    terminal_id, code = _terminal(conn, "最新值补记")
    now = int(time.time() * 1000)
    with psycopg.connect(db_url) as c:
        latest.write(c, [Accepted(terminal_id, code, "a34004", now + 10, 10.0, None)])  # newer than what comes
        for owner, metric in (("worker-a", "a34002"), ("worker-b", "a34004")):
            Writer(LatestBehind(owner, every_s=3600)).write(c, Batch(readings=[
                Accepted(terminal_id, code, metric, now, 1.0, None), Accepted(terminal_id, code, metric, now + 1,
                                                                               2.0, None)]))
        assert _debts(c) == ["worker-a", "worker-b"]  # both die holding their keys
        assert LatestBehind("worker-a", every_s=1).repair(c, own=True) == 1  # worker-a starts again
        assert _latest_values(c, terminal_id) == {"a34002": 2.0, "a34004": 10.0}  # the stored newer value stays
        assert _debts(c) == ["worker-b"]
        assert LatestBehind("worker-c", every_s=1).repair(c, own=True) == 0  # worker-b's debt is not stale yet
        c.execute("update latest_debt_run set since = since - interval '2 minutes'")
        c.commit()
        assert LatestBehind("worker-c", every_s=1).repair(c, own=False) == 1
        assert _debts(c) == []


def test_a_debt_is_recorded_once_and_settled_when_the_keys_are_written(conn, db_url):
    terminal_id, code = _terminal(conn, "最新值清账")
    now = int(time.time() * 1000)
    behind = LatestBehind("worker-a", every_s=3600)
    with psycopg.connect(db_url) as c:
        Writer(behind).write(c, Batch(readings=[Accepted(terminal_id, code, "a34004", now, 1.0, None)]))
        since = c.execute("select since from latest_debt_run").fetchone()[0]
        Writer(behind).write(c, Batch(readings=[Accepted(terminal_id, code, "a34004", now + 1, 2.0, None)]))
        assert c.execute("select since from latest_debt_run").fetchone()[0] == since  # from the first held batch
        behind.flush(c)
        assert _latest_values(c, terminal_id) == {"a34004": 2.0}
        assert _debts(c) == []


def test_device_state_values_reach_the_table_verbatim(conn, db_url):
    """Its columns go as array literals too: codes with quotes or commas stay whole, missing values are NULL."""
    batch = Batch(seen_ms={'p"1,x': 1_700_000_000_000, "p2": 1_700_000_001_000},
                  connections={"p2": ("offline", 1_700_000_001_000)})
    with psycopg.connect(db_url) as c:
        Writer().write(c, batch)
        rows = c.execute("select code, extract(epoch from last_seen_at) * 1000, last_reading_at, connection, "
                         "extract(epoch from connection_at) * 1000 from device_state").fetchall()
    assert sorted(rows) == [('p"1,x', 1_700_000_000_000, None, None, None),
                            ("p2", 1_700_000_001_000, None, "offline", 1_700_000_001_000)]


def test_a_held_value_the_database_refuses_does_not_fail_the_batches_after_it(conn, db_url):
    """Held values are written with a later batch: if the database refuses them there, they are given up and
    that batch is stored all the same (were they in its statement, every later batch would fail with them)."""
    terminal_id, code = _terminal(conn, "最新值拒收")
    now = int(time.time() * 1000)
    behind = LatestBehind("worker-a", every_s=3600)
    writer = Writer(behind)
    with psycopg.connect(db_url) as c:
        writer.write(c, Batch(readings=[Accepted(terminal_id, code, "a34004", now, -1.0, None)]))
        c.execute("alter table latest_reading add constraint test_not_negative check (value >= 0) not valid")
        c.commit()
        try:
            behind.every_s = 0
            writer.write(c, Batch(readings=[Accepted(terminal_id, code, "a34002", now, 5.0, None)]))
        finally:
            c.execute("alter table latest_reading drop constraint test_not_negative")
            c.commit()
        assert c.execute("select count(*) from reading").fetchone()[0] == 2
        assert _latest_values(c, terminal_id) == {"a34002": 5.0}
        assert _debts(c) == [] and behind.held == 0


def test_a_fold_the_database_refuses_is_logged_and_left_for_a_later_repair(conn, db_url):
    """Repair runs before a worker's batches: a fold refused there (a terminal deleted under it, a value a new
    constraint forbids) must not stop the worker, and its debt must outlive the new run's own."""
    terminal_id, code = _terminal(conn, "最新值补记失败")
    now = int(time.time() * 1000)
    with psycopg.connect(db_url) as c:
        Writer(LatestBehind("worker-a", every_s=3600)).write(c, Batch(readings=[
            Accepted(terminal_id, code, "a34004", now, -1.0, None)]))  # worker-a dies holding the key
        c.execute("alter table latest_reading add constraint test_not_negative check (value >= 0) not valid")
        c.commit()
        try:
            again = LatestBehind("worker-a", every_s=3600)
            assert again.repair(c, own=True) == 0  # refused, not raised
            Writer(again).write(c, Batch(readings=[Accepted(terminal_id, code, "a34002", now, 1.0, None)]))
            again.flush(c)  # the new run settles its own debt
        finally:
            c.execute("alter table latest_reading drop constraint test_not_negative")
            c.commit()
        assert _debts(c) == ["worker-a"]  # the old run's debt, kept apart
        c.execute("update latest_debt_run set since = since - interval '2 minutes'")
        c.commit()
        assert LatestBehind("worker-b", every_s=1).repair(c, own=False) == 1
        assert _latest_values(c, terminal_id) == {"a34004": -1.0, "a34002": 1.0}
        assert _debts(c) == []


def test_an_old_run_flushing_after_a_takeover_leaves_the_new_runs_debt(conn, db_url):
    """After a session takeover the old process of a client id may still flush its held keys: deleting the debt
    by worker alone took the new run's with it, and a crash of the new run then lost the fold of its keys."""
    terminal_id, code = _terminal(conn, "最新值接管")
    now = int(time.time() * 1000)
    old, new = LatestBehind("worker-a", every_s=3600), LatestBehind("worker-a", every_s=3600)
    with psycopg.connect(db_url) as c:
        Writer(old).write(c, Batch(readings=[Accepted(terminal_id, code, "a34002", now, 1.0, None)]))
        assert new.repair(c, own=True) == 1  # the new run starts: it folds the old run's debt
        Writer(new).write(c, Batch(readings=[Accepted(terminal_id, code, "a34004", now, 2.0, None)]))
        old.flush(c)  # the old process, taken over, writes what it held
        assert _debts(c) == ["worker-a"]  # the new run's debt is still owed
        assert LatestBehind("worker-a", every_s=1).repair(c, own=True) == 1  # the new run died: its next one folds
        assert _latest_values(c, terminal_id) == {"a34002": 1.0, "a34004": 2.0}
        assert _debts(c) == []


def test_a_run_whose_debt_a_repair_took_while_it_ran_owes_its_later_keys_again(conn, db_url):
    """A repair may take the debt of a run still running (the old process after a session takeover, a worker cut
    off from the database past STALE_S). That run recorded its debt only with its first held batch: the keys it
    held after the repair had no debt, and were lost when it died."""
    terminal_id, code = _terminal(conn, "最新值补欠")
    now = int(time.time() * 1000)
    old = LatestBehind("worker-a", every_s=3600)
    with psycopg.connect(db_url) as c:
        Writer(old).write(c, Batch(readings=[Accepted(terminal_id, code, "a34002", now, 1.0, None)]))
        since = c.execute("select since from latest_debt_run").fetchone()[0]
        assert LatestBehind("worker-a", every_s=3600).repair(c, own=True) == 1  # the new run takes it over
        assert _debts(c) == []
        Writer(old).write(c, Batch(readings=[Accepted(terminal_id, code, "a34004", now, 2.0, None)]))
        assert c.execute("select since from latest_debt_run").fetchone()[0] == since  # owed again, from the first
        # the old run dies holding a34004; the client id's next run folds it
        assert LatestBehind("worker-a", every_s=1).repair(c, own=True) == 1
        assert _latest_values(c, terminal_id) == {"a34002": 1.0, "a34004": 2.0}


_PREVIOUS_RELEASE_OWES = ("insert into latest_debt (worker, since) values (%(worker)s, now()) "
                          "on conflict (worker) do nothing")
"""``LatestBehind.within`` of the previous release (c41b087), verbatim: its workers keep running between
``migrate`` and ``up -d`` (docs/deploy.md §8)."""


class _PreviousReleaseLatest:
    """The previous release's latest values as its writer calls them: a held batch records the worker's debt."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def within(self, conn: psycopg.Connection, readings: list[Accepted]):
        if readings:
            conn.execute(_PREVIOUS_RELEASE_OWES, {"worker": self.owner})
        return lambda: None


def test_the_previous_releases_workers_keep_storing_during_an_upgrade_and_their_debts_are_folded(conn, db_url):
    """Migration 0085 first re-keyed latest_debt by (worker, run): the previous release's insert, run in every
    batch's transaction while the upgrade had migrated but not yet recreated the workers, failed (no unique key
    on worker), and every batch was bisected and dead-lettered. The runs' debts have a table of their own now;
    the previous release's rows are folded by this release's repair."""
    terminal_id, code = _terminal(conn, "最新值升级")
    now = int(time.time() * 1000)
    with psycopg.connect(db_url) as c:
        for owner, metric in (("ganzhi-ingest-2", "a34004"), ("ganzhi-ingest-1", "a34002")):
            previous = Writer()
            previous.latest = _PreviousReleaseLatest(owner)
            previous.write(c, Batch(readings=[Accepted(terminal_id, code, metric, now, 3.0, None)]))
        assert c.execute("select worker from latest_debt order by worker").fetchall() == [
            ("ganzhi-ingest-1",), ("ganzhi-ingest-2",)]
        c.execute("delete from latest_reading")  # the previous release held them back
        c.commit()
        assert LatestBehind("ganzhi-ingest-1", every_s=1).repair(c, own=True) == 1  # recreated: folds its own
        assert _latest_values(c, terminal_id) == {"a34002": 3.0}
        c.execute("update latest_debt set since = since - interval '2 minutes'")
        c.commit()
        assert LatestBehind("ganzhi-ingest-1", every_s=1).repair(c, own=False) == 1  # anyone's, once stale
        assert _latest_values(c, terminal_id) == {"a34002": 3.0, "a34004": 3.0}
        assert c.execute("select count(*) from latest_debt").fetchone()[0] == 0


def test_held_keys_that_meet_a_transient_failure_are_kept_with_their_debt(conn, db_url):
    """A lock timeout on the held keys' upsert gave them up and settled the debt: latest_reading stayed stale.
    Now they stay held (and owed) and are written by the next try."""
    held_id, held_code = _terminal(conn, "最新值锁住")
    other_id, other_code = _terminal(conn, "最新值其他")
    now = int(time.time() * 1000)
    behind = LatestBehind("worker-a", every_s=3600)
    writer = Writer(behind)
    with psycopg.connect(db_url) as c:
        writer.write(c, Batch(readings=[Accepted(held_id, held_code, "a34004", now, 1.0, None)]))
        c.execute(f"""create function test_busy_latest() returns trigger language plpgsql as $$
                      begin
                          if new.terminal_id = {held_id} then
                              raise exception 'busy for the test' using errcode = '55P03';
                          end if;
                          return new;
                      end $$""")
        c.execute("create trigger test_busy_latest before insert on latest_reading for each row"
                  " execute function test_busy_latest()")
        c.commit()
        behind.every_s = 0
        writer.write(c, Batch(readings=[Accepted(other_id, other_code, "a34004", now, 5.0, None)]))
        assert _latest_values(c, other_id) == {"a34004": 5.0}  # the batch's own keys are written
        assert behind.held == 1 and _debts(c) == ["worker-a"]  # the held key and its debt are kept
        c.execute("drop trigger test_busy_latest on latest_reading")
        c.execute("drop function test_busy_latest()")
        c.commit()
        behind.flush(c)
        assert _latest_values(c, held_id) == {"a34004": 1.0}
        assert behind.held == 0 and _debts(c) == []
