"""The ingest worker's MQTT client against a real mosquitto: large reads lose and reorder nothing, what was
not acknowledged comes again after a reconnect, a batch's PUBACKs in one write each free their message, and
MQTT 5 properties still arrive."""

from __future__ import annotations

import queue
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt_client import READ_SIZE, BufferedClient, FastProperties, ReceivedMessage

TOPIC = "ganzhi/v1/test/telemetry"


def _subscriber(address, client_id: str, mqtt5: bool, receive_maximum: int | None = None,
                kind: type[paho.Client] = BufferedClient) -> tuple[BufferedClient, queue.Queue]:
    received: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = kind(CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
                            clean_session=None if mqtt5 else False, manual_ack=True)
    client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, userdata, message: received.put(message)
    kwargs = {}
    if mqtt5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600
        if receive_maximum:
            properties.ReceiveMaximum = receive_maximum
        kwargs = {"clean_start": False, "properties": properties}
    client.connect(*address, **kwargs)
    client.loop_start()
    assert subscribed.wait(10)
    return client, received


def _close(client: BufferedClient) -> None:
    """Disconnect once everything queued before (the PUBACKs) is written: paho writes in order, and calls
    on_disconnect after writing the DISCONNECT (loop_stop at once could drop what is still queued)."""
    gone = threading.Event()
    client.on_disconnect = lambda *_: gone.set()
    client.disconnect()
    assert gone.wait(10)
    client.loop_stop()


def _read_by_the_broker(client: BufferedClient) -> None:
    """Until the broker has read everything the client sent so far: it answers a SUBSCRIBE after the packets
    before it on the connection (a session taken over by a new connection drops what the old one had not read)."""
    answered = threading.Event()
    client.on_subscribe = lambda *_: answered.set()
    client.subscribe("ganzhi/v1/test/barrier", qos=1)
    assert answered.wait(10)


def _publish(address, payloads: list[bytes], properties: Properties | None = None) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5)
    client.connect(*address)
    client.loop_start()
    infos = [client.publish(TOPIC, payload, qos=1, properties=properties) for payload in payloads]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def _take(received: queue.Queue, count: int) -> list[paho.MQTTMessage]:
    return [received.get(timeout=10) for _ in range(count)]


@pytest.mark.parametrize("mqtt5", [True, False], ids=["mqtt5", "mqtt311"])
def test_what_was_not_acknowledged_comes_again_after_a_reconnect(broker, mqtt5):
    client_id = f"buffered-{uuid.uuid4().hex[:6]}"
    client, received = _subscriber(broker, client_id, mqtt5)
    payloads = [f"{i:05d}".encode() * 40 for i in range(2_000)]  # many packets per 256 KiB read
    _publish(broker, payloads)
    first = _take(received, len(payloads))
    assert [m.payload for m in first] == payloads  # nothing lost, nothing out of order
    client.ack_many((m.mid, m.qos) for m in first[:1_500])  # as after a commit of the first 1,500
    _close(client)
    client, received = _subscriber(broker, client_id, mqtt5)
    again = []
    while len(again) < 500 or not received.empty():
        again.append(received.get(timeout=10).payload)
    # At least once: the last 500 come again, in order; some acknowledged ones may too (a PUBACK still in the
    # old connection's socket when the new one takes the session over), never stored twice downstream.
    assert again == payloads[len(payloads) - len(again):]
    _close(client)


def test_a_batch_of_pubacks_in_one_write_frees_each_message(broker):
    """Every PUBACK of each one-write batch counts: after all 1,000 were acknowledged that way, the session holds
    nothing to deliver again (a PUBACK the broker did not take would bring its message back on reconnecting).

    Not checked through Receive Maximum alone (a batch never above 100): mosquitto 2.0.11 exceeds it when
    messages wait in its queue (on a PUBACK it refills the window counting only the in-flight messages ahead of
    the acknowledged one), which a loaded box causes: the publisher runs ahead of this subscriber."""
    client_id = f"window-{uuid.uuid4().hex[:6]}"
    client, received = _subscriber(broker, client_id, True, receive_maximum=100)
    payloads = [f"{i:05d}".encode() for i in range(1_000)]
    threading.Thread(target=_publish, args=(broker, payloads), daemon=True).start()
    taken: list[bytes] = []
    while len(taken) < len(payloads):
        batch = [received.get(timeout=10)]
        while not received.empty():
            batch.append(received.get_nowait())
        client.ack_many((m.mid, m.qos) for m in batch)
        taken += [m.payload for m in batch]
    assert taken == payloads
    _read_by_the_broker(client)
    _close(client)
    client, received = _subscriber(broker, client_id, True, receive_maximum=100)
    _publish(broker, [b"after"])
    after = received.get(timeout=10)
    client.ack_many([(after.mid, after.qos)])
    _close(client)
    assert after.payload == b"after" and received.empty()


def test_mqtt5_properties_arrive_through_the_cheaper_decoder(broker):
    client, received = _subscriber(broker, f"props-{uuid.uuid4().hex[:6]}", True)
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("preset", "3"), ("captured", "2026-11-29T10:00:00Z")]
    properties.MessageExpiryInterval = 60
    _publish(broker, [b"with"], properties)
    with_props = received.get(timeout=10)
    assert with_props.properties.UserProperty == [("preset", "3"), ("captured", "2026-11-29T10:00:00Z")]
    assert 0 < with_props.properties.MessageExpiryInterval <= 60
    client.ack_many([(with_props.mid, with_props.qos)])
    _close(client)


def test_the_cheaper_decoder_is_the_ingest_clients_alone(broker):
    """FastProperties shares its lookup tables between packets: only the ingest client decodes with it, every
    other paho client in the process (aiomqtt's, the simulators', a library's) keeps paho's own class."""
    ours, ours_received = _subscriber(broker, f"fast-{uuid.uuid4().hex[:6]}", True)
    plain, plain_received = _subscriber(broker, f"plain-{uuid.uuid4().hex[:6]}", True, kind=paho.Client)
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("preset", "3")]
    _publish(broker, [b"both"], properties)
    mine, theirs = ours_received.get(timeout=10), plain_received.get(timeout=10)
    ours.ack_many([(mine.mid, mine.qos)])
    plain.ack(theirs.mid, theirs.qos)
    _close(ours)
    _close(plain)
    assert type(mine.properties) is FastProperties and mine.properties.UserProperty == [("preset", "3")]
    assert type(theirs.properties) is Properties and theirs.properties.UserProperty == [("preset", "3")]

def test_per_topic_callbacks_still_take_their_messages(broker):
    """on_message is called without paho's topic matching only while no per-topic callback exists."""
    client, received = _subscriber(broker, f"filtered-{uuid.uuid4().hex[:6]}", True)
    _publish(broker, [b"plain"])
    (plain,) = _take(received, 1)
    filtered: queue.Queue = queue.Queue()
    client.message_callback_add("ganzhi/v1/+/telemetry", lambda c, userdata, message: filtered.put(message))
    _publish(broker, [b"filtered"])
    assert filtered.get(timeout=10).payload == b"filtered"
    assert received.empty()
    client.message_callback_remove("ganzhi/v1/+/telemetry")
    _publish(broker, [b"plain again"])
    (again,) = _take(received, 1)
    assert (plain.payload, again.payload) == (b"plain", b"plain again")
    client.ack_many([(m.mid, m.qos) for m in (plain, again)])
    _close(client)


@pytest.mark.parametrize("mqtt5", [True, False], ids=["mqtt5", "mqtt311"])
def test_packets_split_across_reads_arrive_whole_and_in_order(broker, mqtt5):
    """Packets wholly in the buffer skip paho's reading state machine; one larger than a read, and the ones
    that straddle the end of a read, take paho's own way: both give the same messages, in order."""
    client, received = _subscriber(broker, f"split-{uuid.uuid4().hex[:6]}", mqtt5)
    payloads = [f"{i:05d}".encode() * (1 + i % 97) for i in range(3_000)]
    payloads[1_500] = b"L" * (READ_SIZE + 12_345)
    _publish(broker, payloads)
    got = _take(received, len(payloads))
    client.ack_many((m.mid, m.qos) for m in got)
    _close(client)
    assert [m.payload for m in got] == payloads
    assert {(m.topic, m.qos) for m in got} == {(TOPIC, 1)}
    assert len({m.mid for m in got}) == len(got) > 1


def test_a_received_messages_info_is_made_when_asked_for(broker):
    client, received = _subscriber(broker, f"info-{uuid.uuid4().hex[:6]}", True)
    _publish(broker, [b"one"])
    (message,) = _take(received, 1)
    client.ack_many([(message.mid, message.qos)])
    _close(client)
    assert type(message) is ReceivedMessage
    assert message.info.mid == message.mid and message.info is message.info
