"""The service runtime: heartbeats, stop signals, a dead component seen by /healthz, dying with the parent."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from core.runtime import Outage, Service
from ganzhi.benchkit import free_port
from tests.orphans import assert_dies_with

SERVICE_SCRIPT = """
import asyncio, sys
from core.logs import setup_logging
from core.runtime import run_service, run_service_async

setup_logging()
url, mode, name = sys.argv[1], sys.argv[2], sys.argv[3]

def steady(service):
    loops = service.metrics.counter("loops", "test loops")
    while not service.wait(0.1):
        loops.inc()

async def broken_writer():
    await asyncio.sleep(0.5)
    raise ValueError("a string literal cannot contain NUL (0x00) characters")

async def with_task(service):
    task = asyncio.create_task(broken_writer())
    task.add_done_callback(service.watch("writer"))
    await service.until_stopped()

async def deaf(service):
    await asyncio.sleep(120)  # waits on something that never comes (a dead database's pool) and never looks at stop

if mode == "steady":
    sys.exit(run_service("test", name, url, steady))
if mode == "deaf":
    sys.exit(run_service_async("test", name, url, deaf))
sys.exit(run_service_async("test", name, url, with_task))
"""


def _spawn(db_url: str, mode: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVICE_SCRIPT, db_url, mode, name],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _heartbeat(db_url: str, name: str, timeout_s: float = 15.0, state: str | None = None) -> tuple | None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("select state, pid, detail, counters from service_heartbeat where name = %(name)s",
                               {"name": name}).fetchone()
            if row is not None and (state is None or row[0] == state):
                return row
            time.sleep(0.1)
    return None


def test_a_service_beats_and_stops_cleanly_on_sigterm(db_url):
    process = _spawn(db_url, "steady", "steady-1")
    try:
        row = _heartbeat(db_url, "steady-1", state="running")
        assert row is not None and row[1] == process.pid
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        _, _, _, counters = _heartbeat(db_url, "steady-1", state="stopped")
        assert counters["loops"] > 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_a_dead_task_stops_the_process_and_shows_in_health(db_url, http):
    process = _spawn(db_url, "task", "gateway-1")
    try:
        assert process.wait(20) == 1, "a service whose writer died must exit non-zero for its supervisor"
        output = process.communicate()[0]
        assert "writer died" in output and "ValueError" in output
        _, _, detail, _ = _heartbeat(db_url, "gateway-1", state="failed")
        assert detail["failed"]["component"] == "writer"
        health = http.get("/healthz")
        assert health.status_code == 503
        failed = [s for s in health.json()["services"] if s["name"] == "gateway-1"]
        assert failed and failed[0]["status"] == "failed"
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_a_service_dies_with_its_parent(db_url):
    parent_script = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {SERVICE_SCRIPT!r}, {db_url!r}, "steady", "orphan-1"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert _heartbeat(db_url, "orphan-1", state="running") is not None
    assert_dies_with(parent, child_pid, "the service")


def test_an_outage_is_logged_once_each_way(caplog):
    outage = Outage("database", logging.getLogger("test.outage"))
    with caplog.at_level(logging.INFO, logger="test.outage"):
        for _ in range(50):
            outage.failed(ConnectionRefusedError("connection refused"))
        outage.recovered()
        outage.recovered()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("database unavailable: connection refused")
    assert messages[1].startswith("database back after")
    assert outage.failures == 50 and not outage.down


def test_connect_retries_through_an_outage_until_stopped():
    service = Service("test", "connect-1", f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    threading.Timer(1.5, service.request_stop).start()
    started = time.monotonic()
    assert service.connect() is None
    assert 1.4 < time.monotonic() - started < 5.0


def test_a_heartbeat_detail_takes_plain_values_only():
    """/healthz documents a service's detail as plain values: a list or a mapping is refused where it is set, so a
    service's mistake cannot turn /healthz into a 500 later."""
    service = Service("test", "detail-1", "postgresql://postgres@127.0.0.1:1/none")
    service.set_detail(shard=1, standby=False, store="plain", lag=0.5, peer=None)
    with pytest.raises(TypeError, match="members"):
        service.set_detail(members=["a", "b"])
    assert service.detail == {"shard": 1, "standby": False, "store": "plain", "lag": 0.5, "peer": None}


def test_an_async_service_that_does_not_heed_a_stop_is_cancelled_after_its_grace(db_url):
    """CI: `ganzhi deliver` outlived a killed `up` by over 10 s (its main waited on the dead database)."""
    from core.runtime import STOP_GRACE_S
    process = _spawn(db_url, "deaf", "deaf-1")
    try:
        assert _heartbeat(db_url, "deaf-1", state="running") is not None
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_GRACE_S + 10)
        assert "did not finish within" in process.stdout.read()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
