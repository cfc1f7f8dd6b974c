"""Issue 10: no MQTT message, however malformed, stops ingest or takes other messages with it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from core.runtime import Service
from devices import encode_telemetry
from ingest.worker import IngestWorker, WorkerConfig
from registry import service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import pole_in, terminal_in
from tests.mqtt import SERVICE_PASSWORD, SERVICE_USER, WorkerThread, give_secret, publish, wait_until
from tests.refusals import refusing_readings

ACTOR = Actor("test")
POISON = [
    (b'{"readings":[{"metric":"a34004","value":' + b"9" * 310 + b"}]}", "integer of 310 digits"),
    (b'{"readings":[{"metric":"a34004","value":' + b"9" * 5000 + b"}]}", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
    (b'{"readings":[{"metric":"a34004","value":1,"ts":1e300}]}', "not epoch milliseconds"),
    (b'{"ts":NaN,"readings":[{"metric":"a34004","value":1}]}', "NaN"),
]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _terminals(conn, db_url, auth_broker, count: int) -> list[str]:
    made = [service.create_terminal(conn, terminal_in(f"空气{i}"), ACTOR) for i in range(count)]
    conn.commit()
    for code in made:
        give_secret(db_url, code)
    auth_broker.sync()
    return made


def _good(code: str, count: int, start_ms: int) -> list[tuple[str, bytes]]:
    return [(f"ganzhi/v1/{code}/telemetry", encode_telemetry([{"metric": "a34004", "value": i % 500}], start_ms + i))
            for i in range(count)]


def _rows(db_url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(db_url) as c:
        return c.execute(sql, params).fetchall()


def test_poison_messages_are_dead_lettered_and_every_good_one_stored(conn, db_url, auth_broker):
    bad, good = _terminals(conn, db_url, auth_broker, 2)
    start = _now_ms() - 60_000
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, bad, "s3cret", [(f"ganzhi/v1/{bad}/telemetry", p) for p, _ in POISON])
        publish(auth_broker.address, good, "s3cret", _good(good, 50, start))
        wait_until(lambda: worker.counters["messages"] >= len(POISON) + 50)
        assert worker._service.state == "running"
    # each poison message dead-lettered once with its reason, nothing else (all of them shown if not)
    letters = _rows(db_url, "select publisher, reason from dead_letter order by id")
    found = [next((expected for _, expected in POISON if publisher == bad and expected in reason), reason)
             for publisher, reason in letters]
    assert sorted(found) == sorted(expected for _, expected in POISON), letters
    assert _rows(db_url, "select count(*) from reading") == [(50,)]


def test_a_bad_message_never_takes_others_with_it(conn, db_url, auth_broker):
    devices = _terminals(conn, db_url, auth_broker, 3)
    start = _now_ms() - 3_600_000
    streams = [_good(code, 1_000, start) for code in devices]
    nul = json.dumps({"ts": start, "readings": [{"metric": "a34\u0000004", "value": 1}]}).encode()
    streams[1][500] = (streams[1][500][0], nul)
    with WorkerThread(db_url, auth_broker) as worker:
        senders = [threading.Thread(target=publish, args=(auth_broker.address, code, "s3cret", stream))
                   for code, stream in zip(devices, streams, strict=True)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        wait_until(lambda: worker.counters["messages"] >= 3_000, timeout_s=60)
    assert _rows(db_url, "select count(*) from reading") == [(2_999,)]
    letters = _rows(db_url, "select publisher, reason from dead_letter")
    assert len(letters) == 1 and letters[0][0] == devices[1] and "metric must be a metric key" in letters[0][1]


_GOOD = "select count(*) from reading where metric = 'a34004'"


def _wait_subscribed(auth_broker, code: str, db_url: str, round_: int) -> None:
    """Probe (another metric) until the new worker process stores: it is connected and subscribed."""
    probe = f"ganzhi/v1/{code}/telemetry"
    deadline = time.monotonic() + 30
    while _rows(db_url, "select count(*) from reading where metric = 'a34002'") < [(round_ + 1,)]:
        assert time.monotonic() < deadline, "the worker process did not start"
        publish(auth_broker.address, code, "s3cret", [(probe, encode_telemetry(
            [{"metric": "a34002", "value": 50}], _now_ms() - 30_000 + round_))])
        time.sleep(0.5)


def test_a_worker_process_survives_poison_and_restarts_cleanly(conn, db_url, auth_broker):
    bad, good = _terminals(conn, db_url, auth_broker, 2)
    env = dict(os.environ, DATABASE_URL=db_url, MQTT_URL=f"mqtt://127.0.0.1:{auth_broker.broker.port}",
               GANZHI_MQTT_USERNAME=SERVICE_USER, GANZHI_MQTT_PASSWORD=SERVICE_PASSWORD)
    command = [sys.executable, "-m", "ganzhi", "ingest", "--client-id", f"poison-{os.getpid()}"]
    start = _now_ms() - 60_000
    for round_ in range(2):  # the second start finds the same persistent session: no crash loop
        worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_subscribed(auth_broker, good, db_url, round_)
            publish(auth_broker.address, bad, "s3cret", [(f"ganzhi/v1/{bad}/telemetry", p) for p, _ in POISON])
            publish(auth_broker.address, good, "s3cret", _good(good, 20, start + 1_000 * round_))
            wait_until(lambda r=round_: _rows(db_url, _GOOD) == [(20 * (r + 1),)])
            assert worker.poll() is None
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
    # end the session, or the broker keeps giving it a share of the shared subscription
    assert subprocess.run([*command, "--drain"], env=env, timeout=60, capture_output=True).returncode == 0
    assert _rows(db_url, "select count(*) from dead_letter") == [(2 * len(POISON),)]
    assert _rows(db_url, "select state from service_heartbeat where name like 'ingest poison-%%'") == [("stopped",)]


def test_dead_letters_are_bounded_per_source(conn, db_url, auth_broker):
    noisy, quiet = _terminals(conn, db_url, auth_broker, 2)
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, noisy, "s3cret", [(f"ganzhi/v1/{noisy}/telemetry", b"{junk")] * 200)
        publish(auth_broker.address, quiet, "s3cret", [(f"ganzhi/v1/{quiet}/telemetry", b"{junk")])
        wait_until(lambda: worker.counters["messages"] >= 201)
        assert worker.counters["dead_letters_suppressed"] == 140
    kept = dict(_rows(db_url, "select publisher, count(*) from dead_letter group by 1"))
    assert kept == {noisy: 60, quiet: 1}


def test_ledger_changes_reach_the_worker_at_once(conn, db_url, auth_broker):
    """A terminal registered a moment ago is accepted; a retired one is refused with its very next message."""
    pole = service.create_pole(conn, pole_in(), ACTOR)
    conn.commit()
    give_secret(db_url, pole)
    auth_broker.sync()
    topic = f"ganzhi/v1/{pole}/telemetry"
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, pole, "s3cret", [(f"ganzhi/v1/{pole}/status", b"online")])
        wait_until(lambda: worker.counters["messages"] >= 1)
        air = service.create_terminal(conn, terminal_in(at=None, pole=pole), ACTOR)
        conn.commit()
        publish(auth_broker.address, pole, "s3cret", [(topic, encode_telemetry(
            [{"code": air, "metric": "a34004", "value": 12}], _now_ms()))])
        wait_until(lambda: worker.counters["messages"] >= 2)
        service.update_terminal(conn, air, TerminalPatch(status="retired"), ACTOR)
        conn.commit()
        publish(auth_broker.address, pole, "s3cret", [(topic, encode_telemetry(
            [{"code": air, "metric": "a34004", "value": 13}], _now_ms()))])
        wait_until(lambda: worker.counters["messages"] >= 3)
    assert _rows(db_url, "select value from reading") == [(12.0,)]
    assert [r for (r,) in _rows(db_url, "select reason from dead_letter")] == [
        f"readings[0] ({air} a34004): terminal is retired"]


def test_a_new_terminal_first_status_and_telemetry_are_stored(conn, db_url, auth_broker):
    (warm,) = _terminals(conn, db_url, auth_broker, 1)
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, warm, "s3cret", _good(warm, 1, _now_ms()))
        wait_until(lambda: worker.counters["messages"] >= 1)
        (fresh,) = _terminals(conn, db_url, auth_broker, 1)
        publish(auth_broker.address, fresh, "s3cret", [(f"ganzhi/v1/{fresh}/status", b"online"),
                                                        *_good(fresh, 1, _now_ms())])
        wait_until(lambda: worker.counters["messages"] >= 3)
    assert _rows(db_url, "select count(*) from dead_letter") == [(0,)]
    assert _rows(db_url, "select connection from device_state where code = %s", fresh) == [("online",)]
    assert _rows(db_url, "select count(*) from reading r join terminal t on t.id = r.terminal_id "
                         "where t.code = %s", fresh) == [(1,)]


def test_an_unexpected_failure_is_counted_and_traced_once_without_totalling_every_counter(db_url, monkeypatch,
                                                                                         caplog):
    """The last-resort path of one bad message reads its own counter, not the totals of every counter of the
    service (a flood of such messages paid for all of them each time); its first traceback is logged, once."""
    svc = Service("ingest", "ingest poison-count", db_url)
    worker = IngestWorker(WorkerConfig(db_url, "127.0.0.1", 1, "poison-count"), svc)
    monkeypatch.setattr(svc.metrics, "totals", lambda: pytest.fail("every counter totalled for one message"))
    caplog.set_level(logging.WARNING, logger="ingest.worker")
    for n in range(3):
        try:
            raise ValueError(f"bad {n}")
        except ValueError as exc:
            reason = worker._unexpected("decoding", exc, "c1")
    monkeypatch.undo()
    assert reason == "decoding failed: ValueError: bad 2"
    assert worker.counters["messages_unexpected_error"] == 3
    logged = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert [bool(r.exc_info and r.exc_info[0]) for r in logged] == [True, False, False]


@pytest.mark.parametrize("sqlstate", ["57014", "54000"])  # query_canceled, program_limit_exceeded
def test_a_statement_failing_for_one_device_is_its_dead_letter_not_a_stall(conn, db_url, auth_broker, sqlstate):
    """These are OperationalErrors, yet the database is there: the batch is split, not retried forever."""
    bad, good = _terminals(conn, db_url, auth_broker, 2)
    start = _now_ms() - 60_000
    with refusing_readings(db_url, bad, sqlstate), WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, bad, "s3cret", _good(bad, 3, start))
        publish(auth_broker.address, good, "s3cret", _good(good, 50, start))
        wait_until(lambda: worker.counters["messages"] >= 53)
        assert not worker._database.down
    assert _rows(db_url, "select count(*) from reading") == [(50,)]
    letters = _rows(db_url, "select publisher, reason from dead_letter")
    assert len(letters) == 3 and {p for p, _ in letters} == {bad}
    assert all("refused for the test" in reason for _, reason in letters)
