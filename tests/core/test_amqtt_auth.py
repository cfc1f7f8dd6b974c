"""The amqtt fallback broker enforces the same logins and topic rules as mosquitto."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import LocalBroker
from ganzhi.benchkit import free_port
from registry import credentials
from tests.mqtt import publish

DEVICE, OTHER = "23120224000001D", "23120232000001X"


@pytest.fixture
def amqtt_broker(tmp_path):
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "passwd").write_text(credentials.password_file(
        [(DEVICE, credentials.hash_secret("device-secret")), (OTHER, credentials.hash_secret("other-secret"))],
        {"ganzhi-ingest": "service-secret"}))
    (auth / "acl").write_text(credentials.acl_file(["ganzhi-ingest"]))
    broker = LocalBroker(tmp_path / "data", free_port(), auth_dir=auth, kind="amqtt")
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(broker.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(20)
    yield broker
    asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(20)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_logins_and_topic_rules(amqtt_broker):
    address = ("127.0.0.1", amqtt_broker.port)
    received: list[str] = []
    reader = paho.Client(CallbackAPIVersion.VERSION2, client_id="reader", protocol=paho.MQTTv311)
    reader.username_pw_set("ganzhi-ingest", "service-secret")
    reader.on_message = lambda c, u, m: received.append(m.topic)
    reader.connect(*address)
    reader.subscribe("ganzhi/v1/+/telemetry", qos=1)
    reader.loop_start()
    try:
        time.sleep(0.5)
        publish(address, DEVICE, "device-secret", [(f"ganzhi/v1/{DEVICE}/telemetry", b"{}")], mqtt5=False)
        publish(address, DEVICE, "device-secret", [(f"ganzhi/v1/{OTHER}/telemetry", b"{}")], mqtt5=False)
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        reader.disconnect()
        reader.loop_stop()
    assert received == [f"ganzhi/v1/{DEVICE}/telemetry"]  # not the one published as another device
    with pytest.raises(ConnectionRefusedError):
        publish(address, DEVICE, "wrong", [(f"ganzhi/v1/{DEVICE}/telemetry", b"{}")], mqtt5=False)
    with pytest.raises(ConnectionRefusedError):
        publish(address, "nobody", "x", [("ganzhi/v1/nobody/telemetry", b"{}")], mqtt5=False)
