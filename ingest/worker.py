"""The ingest worker: MQTT in, batches into PostgreSQL, acknowledgements out after commit.

paho's network thread hands each QoS 1 message to a queue; this worker's own thread takes
batches from it, judges them, writes them in one transaction and only then sends the
PUBACKs (paho's manual-ack mode). Nothing is acknowledged that is not stored or
dead-lettered, so a worker killed at any moment loses nothing: the broker redelivers what
it did not acknowledge and the store keeps each reading once.

MQTT 5 (mosquitto): a persistent session, a shared subscription so N workers split the
load, and Receive Maximum so the broker never has more unacknowledged messages in flight
to us than ``inflight``: while the database is down the worker holds at most that many and
the rest wait in the broker. MQTT 3.1.1 (the embedded amqtt broker): a plain subscription,
and the bounded queue blocks paho's thread instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import Channel, PayloadError, Topic, TopicError, decode_telemetry
from devices.topics import subscription
from ingest import validate
from ingest.directory import Directory
from ingest.writer import Batch, DeadLetter, Writer

log = logging.getLogger(__name__)

DRAIN_IDLE_S = 3.0


@dataclass(frozen=True)
class WorkerConfig:
    database_url: str
    mqtt_host: str
    mqtt_port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    mqtt5: bool = True
    shared: bool = True
    """Join the shared subscription (mosquitto, EMQX); amqtt has none, so there one worker subscribes plainly."""
    retention_days: int = 400
    inflight: int = 10_000
    batch_max: int = 5_000
    batch_wait_s: float = 0.05
    session_expiry_s: int = 7 * 86_400
    drain: bool = False
    """Take what the broker holds for this client id, then end its session (for a worker that is retired)."""


@dataclass
class Counters:
    messages: int = 0
    readings_stored: int = 0
    readings_repeated: int = 0
    dead_letters: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        return (f"messages {self.messages}, readings stored {self.readings_stored}, repeated {self.readings_repeated}, "
                f"dead letters {self.dead_letters}, batches {self.batches}")


@dataclass(frozen=True, slots=True)
class _Received:
    epoch: int
    message: paho.MQTTMessage
    at_ms: int


class IngestWorker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.counters = Counters()
        # MQTT 5: Receive Maximum bounds what is in flight to us. 3.1.1: the broker's max_inflight_messages does,
        # and a full queue stops paho's thread reading the socket.
        self._queue: queue.Queue[_Received] = queue.Queue(maxsize=0 if config.mqtt5 else config.inflight)
        self._epoch = 0
        self._connected = threading.Event()
        self._directory = Directory(config.database_url)
        self._writer = Writer()
        self._client = self._make_client()

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then finish the batch in hand, acknowledge it and disconnect."""
        conn = self._connect_database(stop)
        if conn is None:
            return
        self._directory.refresh(force=True)
        self._connect_broker()
        last_report = last_message = time.monotonic()
        try:
            while not stop.is_set():
                batch = self._take()
                if batch:
                    conn = self._commit(conn, batch, stop)
                    last_message = time.monotonic()
                elif self.config.drain and time.monotonic() - last_message > DRAIN_IDLE_S:
                    log.info("ingest %s drained; ending its broker session", self.config.client_id)
                    break
                self._directory.refresh()
                if time.monotonic() - last_report > 30:
                    log.info("ingest %s: %s", self.config.client_id, self.counters.line())
                    last_report = time.monotonic()
        finally:
            self._disconnect()
            self._client.loop_stop()
            if conn is not None:
                conn.close()
            log.info("ingest %s stopped: %s", self.config.client_id, self.counters.line())

    # -- MQTT ---------------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        protocol = paho.MQTTv5 if self.config.mqtt5 else paho.MQTTv311
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=protocol,
                             clean_session=None if self.config.mqtt5 else False, manual_ack=True)
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        return client

    def _connect_broker(self) -> None:
        properties = None
        if self.config.mqtt5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.config.session_expiry_s
            properties.ReceiveMaximum = min(self.config.inflight, 65_535)
        kwargs = {"clean_start": False, "properties": properties} if self.config.mqtt5 else {}
        self._client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=30, **kwargs)
        self._client.loop_start()
        if not self._connected.wait(30):
            log.warning("broker %s:%d not reachable yet; paho keeps trying", self.config.mqtt_host,
                        self.config.mqtt_port)

    def _disconnect(self) -> None:
        """Keep the session (the broker queues for us while we are away), unless draining."""
        if self.config.drain and self.config.mqtt5:
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
            self._client.disconnect(properties=properties)
        elif self.config.drain:  # 3.1.1: a clean-session connect discards the stored session
            self._client.disconnect()
            self._client.loop_stop()
            self._client.reinitialise(client_id=self.config.client_id, clean_session=True)
            if self.config.username:
                self._client.username_pw_set(self.config.username, self.config.password)
            self._client.connect(self.config.mqtt_host, self.config.mqtt_port)
            self._client.disconnect()
        else:
            self._client.disconnect()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused ingest %s: %s", self.config.client_id, reason_code)
            return
        self._epoch += 1
        shared = self.config.shared
        client.subscribe([(subscription(Channel.telemetry, shared), 1), (subscription(Channel.status, shared), 1)])
        self._connected.set()
        log.info("ingest %s connected (session present: %s)", self.config.client_id, flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        log.warning("ingest %s lost the broker (%s); reconnecting", self.config.client_id, reason_code)

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self._queue.put(_Received(self._epoch, message, int(time.time() * 1000)))

    def _acknowledge(self, received: list[_Received]) -> None:
        """PUBACK what this connection delivered; older deliveries come again and are stored once."""
        for item in received:
            if item.epoch == self._epoch and item.message.qos > 0:
                self._client.ack(item.message.mid, item.message.qos)

    # -- batches ------------------------------------------------------------------------------------

    def _take(self) -> list[_Received]:
        """The next batch: what arrives within ``batch_wait_s`` of its first message, up to ``batch_max``."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        taken = [first]
        deadline = time.monotonic() + self.config.batch_wait_s
        while len(taken) < self.config.batch_max:
            remaining = deadline - time.monotonic()
            try:
                taken.append(self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return taken

    def _judge(self, received: list[_Received]) -> Batch:
        batch = Batch()
        for item in received:
            self._judge_one(batch, item)
        return batch

    def _judge_one(self, batch: Batch, item: _Received) -> None:
        message = item.message
        try:
            topic = Topic.parse(message.topic)
        except TopicError as exc:
            batch.dead_letters.append(DeadLetter(message.topic, None, message.payload, str(exc)))
            return
        if not self._directory.knows(topic.code):
            self._directory.refresh(force=True)
        if not self._directory.knows(topic.code):
            batch.dead_letters.append(DeadLetter(message.topic, topic.code, message.payload,
                                                 f"{topic.code} is not a pole or terminal in the ledger"))
            return
        batch.saw(topic.code, item.at_ms)
        if topic.channel is Channel.status:
            self._status(batch, topic, item)
        elif topic.channel is Channel.telemetry:
            self._telemetry(batch, topic, item)

    def _status(self, batch: Batch, topic: Topic, item: _Received) -> None:
        state = item.message.payload.decode("utf-8", "replace").strip().lower()
        if state not in ("online", "offline"):
            batch.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload,
                                                 "status payload must be 'online' or 'offline'"))
            return
        batch.connections[topic.code] = (state, item.at_ms)

    def _telemetry(self, batch: Batch, topic: Topic, item: _Received) -> None:
        try:
            readings = decode_telemetry(item.message.payload)
        except PayloadError as exc:
            batch.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload, str(exc)))
            return
        accepted, problems = validate.check(self._directory, topic.code, readings, self.config.retention_days)
        batch.readings += accepted
        for code in {reading.code for reading in accepted}:
            batch.saw(code, item.at_ms)
        if problems:
            reason = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
            batch.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload, reason,
                                                 stored=len(accepted)))

    def _commit(self, conn: psycopg.Connection | None, received: list[_Received],
                stop: threading.Event) -> psycopg.Connection | None:
        """Write the batch, retrying through database outages; acknowledge only after the commit."""
        batch = self._judge(received)
        failed_since = None
        while True:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.config.database_url, connect_timeout=5)
                    self._writer.forget()
                stored = self._writer.write(conn, batch)
                break
            except psycopg.OperationalError as exc:
                if failed_since is None:
                    failed_since = time.monotonic()
                    log.error("database unavailable, holding %d messages unacknowledged: %s", len(received),
                              str(exc).strip())
                if conn is not None:
                    conn.close()
                conn = None
                if stop.wait(1.0):
                    log.warning("stopping with %d messages unwritten; the broker will redeliver them",
                                len(received))
                    return None
            except psycopg.Error as exc:
                # The database is up but refuses this batch (a bug, or a ledger change under our feet): keep every
                # message as a dead letter rather than crash or loop on it.
                if batch.readings == [] and all(d.publisher is None for d in batch.dead_letters):
                    raise  # even the dead letters were refused: the schema is broken; let the supervisor restart us
                log.exception("database refused a batch of %d messages; dead-lettering them", len(received))
                batch = _refused(received, exc)
        if failed_since is not None:
            log.info("database back after %.1f s", time.monotonic() - failed_since)
        self._acknowledge(received)
        self.counters.messages += len(received)
        self.counters.readings_stored += stored
        self.counters.readings_repeated += len(batch.readings) - stored
        self.counters.dead_letters += len(batch.dead_letters)
        self.counters.batches += 1
        return conn

    def _connect_database(self, stop: threading.Event) -> psycopg.Connection | None:
        while not stop.is_set():
            try:
                return psycopg.connect(self.config.database_url, connect_timeout=5)
            except psycopg.OperationalError as exc:
                log.warning("database not reachable yet: %s", str(exc).strip())
                stop.wait(1.0)
        return None


def _refused(received: list[_Received], exc: Exception) -> Batch:
    reason = f"database refused the batch: {type(exc).__name__}: {str(exc).strip()[:300]}"
    batch = Batch()
    for item in received:
        batch.dead_letters.append(DeadLetter(item.message.topic, None, item.message.payload, reason))
    return batch
