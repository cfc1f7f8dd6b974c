"""Issue 10 §3 inside `ganzhi up`: the broker sync is restarted when it dies of something it does not expect, and
it reports a heartbeat, as every service does, so /healthz lists it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest

from core.runtime import Service
from core.settings import Settings
from ganzhi import broker_auth, children, up
from ganzhi.benchkit import free_port
from ganzhi.children import Server

pytestmark = pytest.mark.slow


def _heartbeat(url: str, name: str) -> tuple[str, dict] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("select state, detail from service_heartbeat where name = %(name)s",
                           {"name": name}).fetchone()
    return None if row is None else (row[0], row[1] if isinstance(row[1], dict) else json.loads(row[1]))


def test_the_broker_sync_that_dies_is_restarted_logged_and_in_the_heartbeats(db_url, monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="ganzhi.children")
    calls: list[int] = []

    async def sync_that_fails_once(*args, **kwargs) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise KeyError("a bug outside the retried failures")
        await asyncio.Event().wait()

    monkeypatch.setattr(broker_auth, "keep_in_step", sync_that_fails_once)
    var_dir = Path(tempfile.mkdtemp(prefix="ganzhi-up-sync-"))
    var_dir.chmod(0o755)  # mosquitto, started as root, runs as its own user
    settings = Settings(database_url=db_url, mqtt_url=None, var_dir=var_dir, embedded_mqtt_port=free_port())

    async def scenario() -> tuple[str, dict] | None:
        async with contextlib.AsyncExitStack() as stack:
            await up._broker(settings, stack, db_url, "service-password")
            for _ in range(200):
                beat = await asyncio.to_thread(_heartbeat, db_url, "broker sync")
                if len(calls) >= 2 and beat and beat[1].get("restarts") == 1:
                    return beat
                await asyncio.sleep(0.1)
        return None

    beat = asyncio.run(scenario())
    assert len(calls) == 2, "the broker sync was not started again"
    assert beat is not None and beat[0] == "running", beat
    assert "KeyError" in beat[1]["failure"]
    assert any("broker sync died: KeyError" in r.getMessage() for r in caplog.records)
    assert _heartbeat(db_url, "broker sync")[0] == "stopped"


def test_a_broker_sync_that_keeps_failing_shows_its_outage_in_its_heartbeat(db_url, tmp_path):
    """It used to log the outage and beat "running" all along, so /healthz said the platform was ok."""
    from core.broker import SharedBroker
    from core.runtime import heartbeat

    dead_database = f"postgresql://postgres@127.0.0.1:{free_port()}/ganzhi"
    auth = broker_auth.BrokerAuth(tmp_path, broker_auth.platform_accounts("svc", "x", "admin-secret"))
    sync = Service("broker-sync", "broker sync outage test", db_url)

    async def scenario() -> tuple[str, dict] | None:
        with heartbeat(sync):
            syncing = asyncio.create_task(broker_auth.keep_in_step(dead_database, auth, SharedBroker(free_port()),
                                                                   service=sync))
            try:
                for _ in range(300):
                    beat = await asyncio.to_thread(_heartbeat, db_url, sync.name)
                    if beat and beat[0] == "failed":
                        return beat
                    await asyncio.sleep(0.1)
                return None
            finally:
                syncing.cancel()
                await asyncio.gather(syncing, return_exceptions=True)

    beat = asyncio.run(scenario())
    assert beat is not None, "the outage never reached the heartbeat"
    assert beat[1]["failed"]["component"] == broker_auth.OUTAGE and "OperationalError" in beat[1]["failed"]["reason"]
    assert _heartbeat(db_url, sync.name)[0] == "stopped"  # an outage at the stop is no failure of the sync


def test_a_server_that_died_is_started_again_through_a_failed_attempt(monkeypatch, caplog):
    """The death and the recovery are logged once each, a failed attempt with its reason; the restarts counted."""
    monkeypatch.setattr(children, "FIRST_DELAY_S", 0.05)
    monkeypatch.setattr(children, "POLL_S", 0.01)
    caplog.set_level(logging.INFO, logger="ganzhi.children")
    process = {"exit_code": None, "starts": 0}
    back = asyncio.Event()

    async def start() -> None:
        process["starts"] += 1
        if process["starts"] == 1:
            raise RuntimeError("port still taken")
        process["exit_code"] = None
        back.set()

    async def scenario() -> Server:
        server = Server(Service("broker", "embedded mosquitto", "postgresql://unused"), lambda: process["exit_code"],
                        start)
        watching = asyncio.create_task(server.watch())
        await asyncio.sleep(0.1)
        process["exit_code"] = -9
        await back.wait()
        await asyncio.sleep(0.1)
        watching.cancel()
        return server

    server = asyncio.run(asyncio.wait_for(scenario(), 30))
    lines = [r.getMessage() for r in caplog.records]
    assert server.restarts == 2 and server.service.detail["restarts"] == 2
    assert [line for line in lines if "unavailable" in line] == [
        "embedded mosquitto unavailable: exited with signal SIGKILL; retrying"]
    assert any("restart 1 failed: port still taken" in line for line in lines)
    assert sum("embedded mosquitto back after" in line for line in lines) == 1


class _SlowPostgres:
    """An embedded server whose restart takes a while (a postmaster starting under load)."""

    def __init__(self) -> None:
        self.running = True
        self.restarting = threading.Event()
        self.may_finish = threading.Event()
        self.url = "postgresql://unused"

    @property
    def exit_code(self) -> int | None:
        return None if self.running else -9

    def start(self) -> str:
        self.restarting.set()
        self.may_finish.wait(30)
        self.running = True
        return self.url

    def stop(self) -> None:
        self.running = False


def test_a_stop_during_a_database_restart_leaves_no_server_running(db_url, monkeypatch):
    """Ctrl-C while the embedded PostgreSQL is being started again: the restart's thread cannot be cancelled; the
    stop used to see the dead postmaster and return, and the thread then started one that nobody stopped."""
    monkeypatch.setattr(children, "FIRST_DELAY_S", 0.05)
    monkeypatch.setattr(children, "POLL_S", 0.01)
    postgres = _SlowPostgres()

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:  # as `up` pushes them: the server's stop first
            embedded = up.EmbeddedServer(postgres)
            stack.push_async_callback(asyncio.to_thread, embedded.stop)
            up._supervise_database(stack, embedded, db_url)
            postgres.running = False  # killed; the watcher starts it again
            assert await asyncio.to_thread(postgres.restarting.wait, 30)
            threading.Timer(0.5, postgres.may_finish.set).start()  # the restart ends while `up` is stopping

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not postgres.running
