"""Faults: a worker killed mid-stream, the database restarted during ingest. Nothing is lost,
nothing is stored twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from core.embedded import EmbeddedPostgres
from devices import encode_telemetry
from ganzhi.benchkit import free_port
from ganzhi.database import prepare
from registry import codes, service
from registry.changes import Actor
from tests.factories import terminal_in
from tests.mqtt import SERVICE_PASSWORD, SERVICE_USER, WorkerThread, give_secret, publish, wait_until

pytestmark = pytest.mark.slow
ACTOR = Actor("test")


START_MS = int(time.time() * 1000) - 2 * 3_600_000
"""Readings of the counted stream start here; probes sent before it are older."""


def _messages(code: str, count: int, start: int = START_MS) -> list[tuple[str, bytes]]:
    return [(f"ganzhi/v1/{code}/telemetry", encode_telemetry([{"metric": "a34004", "value": i % 900}], start + i))
            for i in range(count)]


def _wait_for_subscriber(address: tuple[str, int], code: str, timeout_s: float = 60.0) -> None:
    """Until the worker has subscribed: mosquitto answers 0x10 (no matching subscribers) before that and
    drops the message, so a fixed sleep loses readings when the worker is slow to start."""
    deadline = time.monotonic() + timeout_s
    probe = START_MS - 86_400_000
    while publish(address, code, "s3cret", _messages(code, 1, probe)) != [0]:
        assert time.monotonic() < deadline, "the ingest worker never subscribed"
        probe += 1
        time.sleep(0.2)


def _counted(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*), count(distinct ts) from reading where ts >= %(start)s",
                            {"start": datetime.fromtimestamp(START_MS / 1000, UTC)}).fetchone()


def _stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from reading").fetchone()[0]


def _worker_process(db_url: str, broker_port: int, client_id: str, *options: str) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=db_url, MQTT_URL=f"mqtt://127.0.0.1:{broker_port}",
               GANZHI_MQTT_USERNAME=SERVICE_USER, GANZHI_MQTT_PASSWORD=SERVICE_PASSWORD)
    return subprocess.Popen([sys.executable, "-m", "ganzhi", "ingest", "--client-id", client_id, *options], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_mid_stream_then_restart_stores_every_reading_once(conn, db_url, auth_broker):
    code = service.create_terminal(conn, terminal_in(), ACTOR)
    conn.commit()
    give_secret(db_url, code)
    auth_broker.sync()
    total = 20_000
    client_id = f"kill-test-{os.getpid()}"
    worker = _worker_process(db_url, auth_broker.broker.port, client_id)
    publisher = threading.Thread(target=publish, args=(auth_broker.address, code, "s3cret", _messages(code, total)))
    try:
        _wait_for_subscriber(auth_broker.address, code)
        publisher.start()
        wait_until(lambda: _stored(db_url) > 3_000, timeout_s=60, interval_s=0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = _stored(db_url)
        publisher.join(120)
        worker = _worker_process(db_url, auth_broker.broker.port, client_id)
        wait_until(lambda: _counted(db_url)[0] >= total, timeout_s=120, interval_s=0.2)
        time.sleep(1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        # End the worker's broker session, or mosquitto keeps queueing a share of the group for it.
        assert _worker_process(db_url, auth_broker.broker.port, client_id, "--drain").wait(60) == 0
    assert killed_at < total
    count, distinct = _counted(db_url)
    assert count == distinct == total


def test_database_restart_during_ingest_loses_nothing(conn, db_url, auth_broker):
    data_dir = Path(tempfile.mkdtemp(prefix="ganzhi-pg-restart-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir / "pgdata", free_port())
    own_url = server.start()
    try:
        prepare(own_url, _settings())
        code = codes.make("231202", "24", 4242).value
        for url in (own_url, db_url):  # the broker logins come from the session ledger
            with psycopg.connect(url) as c:
                service.create_terminal(c, terminal_in(code=code), ACTOR)
                c.commit()
        give_secret(db_url, code)
        auth_broker.sync()
        total = 6_000
        with WorkerThread(own_url, auth_broker, inflight=2_000, batch_max=500) as worker:
            publisher = threading.Thread(target=publish,
                                         args=(auth_broker.address, code, "s3cret", _messages(code, total)))
            publisher.start()
            wait_until(lambda: _stored(own_url) > 1_000, timeout_s=60, interval_s=0.02)
            server.stop()
            time.sleep(3)
            server.start()
            publisher.join(120)
            wait_until(lambda: _stored(own_url) >= total, timeout_s=120, interval_s=0.2)
        assert _stored(own_url) == total
        assert worker.counters["readings_stored"] + worker.counters["readings_repeated"] >= total
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _settings():
    from core.settings import Settings

    return Settings(database_url=None, retention_days=30, partition_premake_days=2)
