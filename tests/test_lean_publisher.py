"""The benchmarks' libmosquitto publisher against a real mosquitto: every QoS 1 message arrives once, in
order, and each PUBACK is counted."""

from __future__ import annotations

import queue
import socket
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ganzhi.lean_publisher import LeanPublisher, PublisherError

TOPIC = "ganzhi/v1/lean/telemetry"


def test_every_message_arrives_and_its_puback_is_counted(broker):
    received: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:6]}",
                             protocol=paho.MQTTv5)
    subscriber.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.on_message = lambda c, userdata, message: received.put((message.payload, message.qos))
    subscriber.connect(*broker)
    subscriber.loop_start()
    assert subscribed.wait(10)
    publisher = LeanPublisher(f"lean-{uuid.uuid4().hex[:6]}", window=50)
    publisher.connect(*broker)
    payloads = [f"{i:05d}".encode() for i in range(2_000)]
    for payload in payloads:
        while publisher.in_flight >= publisher.window:
            publisher.wait_acknowledged(timeout_s=0.01)
        publisher.publish(TOPIC.encode(), payload)
    assert publisher.wait_acknowledged(timeout_s=30)
    publisher.close()
    got = [received.get(timeout=10) for _ in payloads]
    subscriber.disconnect()
    subscriber.loop_stop()
    assert got == [(payload, 1) for payload in payloads]
    assert (publisher.published, publisher.acked, publisher.refused) == (2_000, 2_000, 0)


def test_a_connection_never_answered_is_given_up_with_its_loop_stopped():
    """A listener that accepts and never sends CONNACK: ``connect`` fails after its timeout and leaves no loop
    thread reconnecting with a client nobody will close."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        publisher = LeanPublisher(f"lean-{uuid.uuid4().hex[:6]}", window=10)
        with pytest.raises(PublisherError, match="no CONNACK"):
            publisher.connect("127.0.0.1", silent.getsockname()[1], timeout_s=1)
        assert publisher._loop is not None and not publisher._loop.is_alive()
        publisher.close()  # a second close does nothing
