"""The MQTT receive path alone: messages/s and CPU µs per message of the ingest worker's client variants.

N messages of K readings wait in mosquitto for a persistent session (published before the client connects,
so no publisher shares the CPU); each variant then drains them in a process of its own, acknowledging from
a second thread in batches, as the ingest worker does after its commit. Variants:

- ``paho`` and ``paho-buffered`` (``ingest.mqtt_client.BufferedClient``: 256 KiB socket reads, a batch's
  PUBACKs in one write, MQTT 5 properties decoded without rebuilding paho's tables), each with MQTT 5 and
  3.1.1; both keep the guarantees (manual acknowledgement after commit, sessions, shared subscriptions).
- ``pymosquitto`` (libmosquitto through ctypes), when installed: libmosquitto 2.0 has no manual
  acknowledgement, it answers PUBACK as it reads a message, so it cannot keep "acknowledged only after the
  commit"; it is measured to show what a C receive path would save, not as a candidate.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.broker import LocalBroker
from ganzhi.benchkit import free_port
from ingest.mqtt_client import BufferedClient

TOPIC = "ganzhi/v1/23120224000001D/telemetry"
METRICS = ("w01001", "w01009", "w01010", "w01003", "w01014", "w01018", "w01019", "w21003", "w21011", "w21001")
VARIANTS = [("paho", "5"), ("paho-buffered", "5"), ("paho", "3.1.1"), ("paho-buffered", "3.1.1"),
            ("pymosquitto", "3.1.1")]


def run(messages: int, k: int, rounds: int) -> None:
    payload = json.dumps({"ts": int(time.time() * 1000), "readings": [
        {"code": "23120224000001D", "metric": m, "value": 7.25} for m in METRICS[:k]]}, separators=(",", ":")).encode()
    root = Path(tempfile.mkdtemp(prefix="ganzhi-bench-receive-"))
    root.chmod(0o755)
    broker = LocalBroker(root / "mqtt", free_port())
    asyncio.run(broker.start())
    ctx = multiprocessing.get_context("spawn")
    print(f"{messages} messages of {len(payload)} B ({k} readings) queued for each client, then drained; "
          f"{rounds} round(s), medians")
    try:
        for variant, protocol in VARIANTS:
            if variant == "pymosquitto" and not _has_pymosquitto():
                print(f"  {variant:14s} MQTT {protocol:5s} not installed (pip install pymosquitto to compare)")
                continue
            figures = sorted((_round(ctx, broker.port, variant, protocol, messages, payload) for _ in range(rounds)),
                             key=lambda f: f[0])
            rate, cpu_us = figures[len(figures) // 2]
            note = "  (acks on receipt: not eligible)" if variant == "pymosquitto" else ""
            print(f"  {variant:14s} MQTT {protocol:5s} {rate:9,.0f} msg/s  CPU {cpu_us:6.1f} µs/message  "
                  f"{cpu_us / k:5.1f} µs/reading{note}")
    finally:
        asyncio.run(broker.stop())
        shutil.rmtree(root, ignore_errors=True)


def _round(ctx, port: int, variant: str, protocol: str, messages: int, payload: bytes) -> tuple[float, float]:
    client_id = f"receive-{variant}-{protocol}-{time.monotonic_ns()}"
    results = ctx.Queue()
    _run_in(ctx, _drain, port, variant, protocol, client_id, 0, results)  # subscribe, keep the session
    results.get(timeout=60)
    _run_in(ctx, _publish, port, payload, messages)
    _run_in(ctx, _drain, port, variant, protocol, client_id, messages, results)
    return results.get(timeout=600)


def _run_in(ctx, target, *args) -> None:
    process = ctx.Process(target=target, args=args)
    process.start()
    process.join(900)
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed with exit code {process.exitcode}")


def _publish(port: int, payload: bytes, count: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="receive-publisher", protocol=paho.MQTTv311)
    window = threading.Semaphore(1000)
    client.on_publish = lambda *args: window.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for _ in range(count):
        window.acquire()
        client.publish(TOPIC, payload, qos=1)
    for _ in range(1000):
        window.acquire()
    client.disconnect()
    client.loop_stop()


def _drain(port: int, variant: str, protocol: str, client_id: str, count: int, results) -> None:
    """Take ``count`` messages (0: only subscribe) and put (messages/s, CPU µs per message) on ``results``."""
    received: queue.Queue = queue.Queue()
    connected = threading.Event()
    client, ack = (_pymosquitto if variant == "pymosquitto" else _paho)(
        port, variant, protocol, client_id, received, connected)
    if not connected.wait(30):
        raise RuntimeError(f"{variant} did not connect")
    if count == 0:
        time.sleep(0.5)  # the SUBACK
        client.disconnect()
        results.put((0.0, 0.0))
        return
    taken, first = 0, None
    cpu0 = time.process_time()
    while taken < count:
        batch = [received.get(timeout=60)]
        first = first or time.monotonic()
        while len(batch) < 5000:
            try:
                batch.append(received.get_nowait())
            except queue.Empty:
                break
        ack(batch)
        taken += len(batch)
    elapsed, cpu = time.monotonic() - first, time.process_time() - cpu0
    client.disconnect()
    results.put((count / elapsed, cpu / count * 1e6))


def _paho(port, variant, protocol, client_id, received, connected):
    v5 = protocol == "5"
    cls = BufferedClient if variant == "paho-buffered" else paho.Client
    client = cls(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                 clean_session=None if v5 else False, manual_ack=True)

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        c.subscribe(TOPIC, qos=1)
        connected.set()

    client.on_connect = on_connect
    client.on_message = lambda c, userdata, message: received.put(message)
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = 10_000
    client.connect("127.0.0.1", port, **({"clean_start": False, "properties": properties} if v5 else {}))
    client.loop_start()

    def ack(batch) -> None:
        if variant == "paho-buffered":
            client.ack_many((message.mid, message.qos) for message in batch)
            return
        for message in batch:
            client.ack(message.mid, message.qos)

    return client, ack


def _pymosquitto(port, variant, protocol, client_id, received, connected):
    from pymosquitto import Mosquitto

    client = Mosquitto(client_id, clean_start=False)
    client.on_connect = lambda c, userdata, rc: (c.subscribe(TOPIC, 1), connected.set())
    client.on_message = lambda c, userdata, message: received.put(message)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, lambda batch: None  # libmosquitto acknowledged each one as it read it


def _has_pymosquitto() -> bool:
    try:
        import pymosquitto  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return False
    return True
