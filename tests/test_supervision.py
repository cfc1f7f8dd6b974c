"""Supervision (issue 10 §3): crashed workers are restarted with a backoff that resets after a healthy run and
logged with their exit code or signal; a worker waits out a database outage logging it once, not every poll."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ganzhi import children
from ganzhi.benchkit import free_port
from ganzhi.children import Child

pytestmark = pytest.mark.slow

DEAD_DATABASE = f"postgresql://postgres@127.0.0.1:{free_port()}/ganzhi"
"""Nothing listens there: a worker pointed at it waits out an outage."""


def _environment() -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": DEAD_DATABASE}


async def _new_process(child: Child, old_pid: int | None, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process is not None and child.process.pid != old_pid and child.process.returncode is None:
            return child.process.pid
        await asyncio.sleep(0.05)
    raise AssertionError(f"{child.name} was not restarted within {timeout_s} s")


def test_a_killed_worker_is_restarted_logged_at_once_after_a_healthy_run_with_backoff_in_a_crash_loop(monkeypatch,
                                                                                                       caplog):
    monkeypatch.setattr(children, "HEALTHY_RUN_S", 4.0)
    caplog.set_level(logging.ERROR, logger="ganzhi.children")

    async def scenario() -> None:
        child = Child("rule worker 1", ["analytics"], _environment())
        await child.start()
        try:
            pid = await _new_process(child, None)
            for lived_s in (5.0, 0.5, 5.0):  # healthy, a crash loop, healthy again
                await asyncio.sleep(lived_s)
                os.kill(pid, signal.SIGKILL)
                pid = await _new_process(child, pid)
        finally:
            await child.stop()
        assert child.restarts == 3

    asyncio.run(scenario())
    exits = [r.getMessage() for r in caplog.records if "exited with" in r.getMessage()]
    assert len(exits) == 3 and all("exited with signal SIGKILL" in line for line in exits), exits
    assert [line.rsplit(" in ", 1)[1] for line in exits] == ["0 s", "1 s", "0 s"]  # was 1 s, 2 s, 1 s
    assert [line.split("restart ")[1].split()[0] for line in exits] == ["1", "2", "3"]


def test_the_backoff_is_none_after_a_healthy_run_and_doubles_in_a_crash_loop():
    backoff = children.Backoff()
    delays = [backoff.after(ran_s) for ran_s in (120.0, 0.5, 0.5, 0.5, 120.0, 0.5)]
    assert delays == [0.0, children.FIRST_DELAY_S, 2 * children.FIRST_DELAY_S, 4 * children.FIRST_DELAY_S, 0.0,
                      children.FIRST_DELAY_S]
    for _ in range(20):
        assert backoff.after(0.5) <= children.MAX_DELAY_S


def test_a_worker_logs_a_database_outage_once_and_stops_on_sigterm(tmp_path):
    log_file = tmp_path / "worker.log"
    with log_file.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "ganzhi", "analytics"], env=_environment(), stdout=out,
                                  stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while "started" not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # eight polls of the rule worker
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    output = log_file.read_text()
    assert worker.returncode == 0, output
    outage = [line for line in output.splitlines() if "unavailable" in line and "heartbeat" not in line]
    assert len(outage) == 1, output  # it used to warn on every poll, twice a second
    assert "stopped" in output.splitlines()[-1]


def test_ctrl_c_in_the_terminal_reaches_up_alone_not_its_workers_or_broker():
    """A terminal's Ctrl-C is a SIGINT to its whole foreground process group. The workers and the broker are in
    sessions of their own, so `up` stops them in order (workers, then the broker) instead of all dying at once."""
    from core.broker import LocalBroker

    async def scenario() -> tuple[int, int]:
        child = Child("rule worker 1", ["analytics"], _environment())
        await child.start()
        data_dir = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-group-"))
        local = LocalBroker(data_dir, free_port())
        await local.start()
        try:
            worker = await _new_process(child, None)
            return os.getpgid(worker), os.getpgid(local._process.pid)
        finally:
            await child.stop()
            await local.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

    ours = os.getpgid(0)
    assert ours not in asyncio.run(scenario())


def test_a_broker_deaf_to_sigterm_is_killed_with_its_guard():
    """A mosquitto busy in its plugin hears SIGTERM only when the command at hand is done (minutes, for a change
    of thousands sent at once); `stop` waited 10 s, raised, and left the broker and its guard holding the port."""
    import psutil

    from core.broker import LocalBroker

    async def scenario() -> list[psutil.Process]:
        data_dir = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-deaf-"))
        local = LocalBroker(data_dir, free_port())
        await local.start()
        guard = psutil.Process(local._process.pid)
        processes = [guard, *guard.children(recursive=True)]
        processes[-1].suspend()  # mosquitto: SIGTERM stays pending, as in a long plugin command
        try:
            await local.stop(grace_s=1.0)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        return processes

    processes = asyncio.run(scenario())
    assert len(processes) == 2
    _, alive = psutil.wait_procs(processes, timeout=5)
    assert not alive


def test_a_worker_asked_to_stop_while_its_broker_is_away_stops_at_once(tmp_path, db_url):
    """CI: a killed `up` took its broker along while an ingest worker was still waiting for its first connection;
    the worker waited that out (30 s) before it looked at the stop it had been given."""
    log_file = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": db_url, "MQTT_URL": f"mqtt://127.0.0.1:{free_port()}"}
    with log_file.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "ganzhi", "ingest"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while " started (pid" not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # now waiting for the broker
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(8)  # generous: it has nothing left to wait for
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"the worker outlived its stop by 8 s:\n{log_file.read_text()}")
    assert worker.returncode == 0, log_file.read_text()


def test_up_runs_the_readings_path_and_the_field_at_full_priority_and_the_rest_below_it():
    """On a box short of CPU the readings are stored first (``background_nice``); the simulators stand in for devices
    and are never slowed down."""
    from core.settings import Settings
    from ganzhi.up import _child, _worker_commands

    commands = _worker_commands(Settings(background_nice=7, hj212_workers=1), simulate=True)
    niceness = {args[0]: _child(n, name, args, {}, "", 7).nice for n, (name, args) in enumerate(commands, 1)}
    assert niceness == {"ingest": 0, "hj212": 0, "simulate": 0, "analytics": 7, "fire": 7, "dispatch-sweep": 7,
                        "deliver": 7, "maintain": 7}


def test_a_child_runs_at_its_niceness():
    async def scenario() -> int:
        child = Child("rule worker 1", ["analytics"], _environment(), nice=5)
        await child.start()
        try:
            pid = await _new_process(child, None)
            return os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0)
        finally:
            await child.stop()

    assert asyncio.run(scenario()) == 5
