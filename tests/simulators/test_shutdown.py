"""`ganzhi simulate` stops quietly: on SIGTERM, with its devices connecting, connected, or cut off by a broker
that went first (Ctrl-C in `up`'s terminal reaches every process of the group), it leaves the broker, says how
it ended in one line, and prints no asyncio traceback."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from registry import credentials, service
from registry.changes import Actor
from simulators.run import SimConfig, simulate
from tests.factories import terminal_in
from tests.mqtt import SERVICE_PASSWORD, SERVICE_USER, AuthBroker, wait_until

pytestmark = pytest.mark.slow
KEY = "test-demo-key"
DEVICES = 50
NOISE = ("Traceback", "Exception in callback", "never retrieved", "Task was destroyed", "Unclosed")


def _devices(conn) -> list[str]:
    codes = [service.create_terminal(conn, terminal_in(f"停机测试{n}", "methane_detector"), Actor("test"))
             for n in range(DEVICES)]
    credentials.store(conn, [(c, credentials.hash_secret(credentials.demo_secret(KEY, c))) for c in codes], "test")
    conn.commit()
    return codes


class _Statuses:
    """The devices' retained status messages, as the platform's service account sees them."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.latest: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"status-{os.getpid()}")
        self.client.username_pw_set(SERVICE_USER, SERVICE_PASSWORD)
        self.client.on_connect = lambda c, *_: c.subscribe("ganzhi/v1/+/status", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(*address)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.latest[message.topic.split("/")[2]] = message.payload

    def count(self, payload: bytes) -> int:
        with self._lock:
            return sum(v == payload for v in self.latest.values())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _simulate(db_url: str, address: tuple[str, int], ramp_s: float) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": db_url, "MQTT_URL": f"mqtt://{address[0]}:{address[1]}",
           "GANZHI_DEMO_SECRET": KEY, "GANZHI_LOG_FORMAT": "text"}
    return subprocess.Popen([sys.executable, "-m", "ganzhi", "simulate", "--speed", "60", "--ramp", str(ramp_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stopped(process: subprocess.Popen) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)  # no speed asserted: only that it does not hang
    return process.returncode, out, err


def _assert_quiet(err: str) -> None:
    noisy = [line for line in err.splitlines() if any(word in line for word in NOISE)]
    assert not noisy, "\n".join(noisy[:20]) + f"\n... {len(noisy)} noisy lines of stderr:\n{err[-3000:]}"


def test_sigterm_while_devices_connect_and_publish_is_quiet(conn, db_url, auth_broker):
    codes = _devices(conn)
    auth_broker.sync()
    statuses = _Statuses(auth_broker.address)
    process = _simulate(db_url, auth_broker.address, ramp_s=6)
    try:
        wait_until(lambda: statuses.count(b"online") >= DEVICES // 3, timeout_s=60)  # the rest still connecting
        code, out, err = _stopped(process)
        wait_until(lambda: all(statuses.latest.get(c) != b"offline" for c in codes), timeout_s=5)
    finally:
        statuses.close()
        if process.poll() is None:
            process.kill()
    assert code == 0, err[-3000:]
    assert "published" in out and err.count("devices stopped") == 1
    _assert_quiet(err)
    # Every device that got on left with a DISCONNECT: none of their wills ("offline") fired.
    assert statuses.count(b"offline") == 0


def test_sigterm_after_the_broker_went_first_is_quiet(conn, db_url):
    _devices(conn)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-stop-"))
    root.chmod(0o755)
    broker = AuthBroker.start(db_url, root)
    stopped_broker = False
    try:
        broker.sync()
        statuses = _Statuses(broker.address)
        process = _simulate(db_url, broker.address, ramp_s=1)
        try:
            wait_until(lambda: statuses.count(b"online") >= DEVICES, timeout_s=60)
        finally:
            statuses.close()
        broker.stop()  # every device is cut off at once, as Ctrl-C does to `up`'s mosquitto
        stopped_broker = True
        time.sleep(2)  # let the devices see the connection go (and try to get back on)
        code, out, err = _stopped(process)
    finally:
        if process.poll() is None:
            process.kill()
        if not stopped_broker:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert code == 0, err[-3000:]
    assert "published" in out and err.count("devices stopped") == 1
    _assert_quiet(err)
    assert err.count("unavailable") == 1  # the broker's loss, once for the fleet


def test_a_run_with_no_mqtt_devices_stops_cleanly():
    """A ledger whose only reporting terminals are HJ 212 loggers (or a bench running loggers alone) has no MQTT
    devices: the run still stops when told, with nothing to wait for."""
    async def run() -> int:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, stop.set)
        return (await simulate([], SimConfig(host="127.0.0.1", port=1, secret_key=KEY), stop)).messages

    assert asyncio.run(run()) == 0
