"""The ingest worker: MQTT in, batches into PostgreSQL, acknowledgements out after commit.

paho's network thread (``ingest.mqtt_client``: paho with large socket reads, one write for a batch's
PUBACKs, cheap MQTT 5 properties) hands each QoS 1 message to a queue; this worker's own thread takes
batches from it, judges them, writes them in one transaction and only then sends the
PUBACKs (paho's manual-ack mode). Nothing is acknowledged that is not stored or
dead-lettered, so a worker killed at any moment loses nothing: the broker redelivers what
it did not acknowledge and the store keeps each reading once. A batch closes when its oldest
message has waited ``batch_wait_s`` since it arrived; the newest values (``latest_reading``)
follow within ``latest_every_s`` (``ingest.latest``).

MQTT 5 (mosquitto): a persistent session, a shared subscription so N workers split the
load, and Receive Maximum so the broker never has more unacknowledged messages in flight
to us than ``inflight``: while the database is down the worker holds at most that many and
the rest wait in the broker. MQTT 3.1.1 (GANZHI_INGEST_PROTOCOL, cheaper for paho): the same subscription,
and the bounded queue blocks paho's thread instead.
"""

from __future__ import annotations

import functools
import gc
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

from core import db
from core.pgerrors import is_outage, is_transient
from core.runtime import Outage, Service
from devices import Channel, PayloadError, Reading, Topic, TopicError, decode_telemetry
from devices.topics import subscription
from ingest import validate
from ingest.dead_letters import DeadLetter, Limiter
from ingest.directory import Directory
from ingest.latest import STALE_S, LatestBehind
from ingest.metrics import IngestMetrics
from ingest.mqtt_client import BufferedClient
from ingest.writer import Batch, Writer

log = logging.getLogger(__name__)

DRAIN_IDLE_S = 3.0
_parse_topic = functools.lru_cache(maxsize=1 << 16)(Topic.parse)
"""Topics repeat (one per publisher and channel): each is parsed once (errors are not cached)."""


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
    """Join the shared subscription (mosquitto, EMQX); without it (a broker that has none) one worker subscribes."""
    retention_days: int = 400
    inflight: int = 10_000
    batch_max: int = 5_000
    batch_wait_s: float = 0.05
    """A batch closes when its oldest message has waited this long since it was received (or at ``batch_max``):
    messages that queued while the previous batch was being written go at once, with what has queued since."""
    latest_every_s: float = 1.0
    """``latest_reading`` follows the committed readings within this (``ingest.latest``; 0: with every batch)."""
    session_expiry_s: int = 7 * 86_400
    drain: bool = False
    """Take what the broker holds for this client id, then end its session (for a worker that is retired)."""


@dataclass(slots=True)
class _Received:
    epoch: int
    message: paho.MQTTMessage
    at_ms: int


class IngestWorker:
    """The ingest handlers; the process around them (stop, heartbeat, metrics) is ``core.runtime``'s."""

    def __init__(self, config: WorkerConfig, service: Service) -> None:
        self.config = config
        self._service = service
        self.metrics = IngestMetrics(service.metrics, "ingest", "MQTT messages")
        # MQTT 5: Receive Maximum bounds what is in flight to us. 3.1.1: the broker's max_inflight_messages does,
        # and a full queue stops paho's thread reading the socket.
        # SimpleQueue (in C) costs a tenth of Queue per message; Queue only where it must block paho's thread.
        self._queue: queue.SimpleQueue[_Received] | queue.Queue[_Received] = (
            queue.SimpleQueue() if config.mqtt5 else queue.Queue(maxsize=config.inflight))
        self._epoch = 0
        self._connected = threading.Event()
        self._directory = Directory(config.database_url)
        self._writer = Writer(LatestBehind(config.client_id, config.latest_every_s))
        self._repaired_at: float | None = None
        """When the debts of ``latest_reading`` were last repaired (monotonic); None: not since starting."""
        self._limiter = Limiter()
        self._conn: psycopg.Connection | None = None
        self._database = Outage("database", log)
        self._broker = Outage(f"broker {config.mqtt_host}:{config.mqtt_port}", log)
        self._client = self._make_client()
        self._in_hand = 0
        """Messages taken from the queue, not acknowledged yet."""
        service.metrics.gauge("ingest_queue_depth", "messages received, waiting for a batch").set_function(
            self._queue.qsize)
        service.metrics.gauge("ingest_inflight", "messages received and not acknowledged yet (at most Receive "
                              "Maximum: the broker holds the rest)").set_function(
            lambda: self._queue.qsize() + self._in_hand)
        service.metrics.gauge("ingest_latest_held", "newest values committed as readings, not yet written to "
                              "latest_reading (ingest.latest)").set_function(lambda: self._writer.latest.held)
        service.metrics.gauge("ingest_broker_connected", "1 while connected to the broker").set_function(
            lambda: int(self._connected.is_set()))
        service.add_check("broker", lambda: None if self._connected.is_set() else "not connected to the broker")

    @property
    def counters(self) -> dict[str, float]:
        """The worker's counter totals by short name (``messages``, ``readings_stored``, ...)."""
        return {name.removeprefix("ingest_"): value for name, value in self._service.metrics.totals().items()}

    def run(self) -> None:
        """Consume until the service stops; then finish the batch in hand, acknowledge it and disconnect."""
        self._conn = self._service.connect(self.config.database_url)
        if self._conn is None:
            return
        self._directory.start(stop=self._service.stop)
        self._connect_broker()
        # What start-up made (modules, the ledger's directory: ≈ 64,000 objects) lives as long as the process:
        # out of the collector's way, a full collection walks only the messages in hand (it took 15–18 ms).
        gc.freeze()
        last_message = time.monotonic()
        try:
            while not self._service.stop.is_set():
                batch = self._take()
                if batch:
                    self._commit(batch)
                    last_message = time.monotonic()
                elif self.config.drain and time.monotonic() - last_message > DRAIN_IDLE_S:
                    log.info("ingest %s drained; ending its broker session", self.config.client_id)
                    break
                else:
                    self._keep_latest(self._writer.latest.due())
        finally:
            self._keep_latest(True)
            self._disconnect()
            self._client.loop_stop()
            self._directory.close()
            if self._conn is not None:
                self._conn.close()

    # -- MQTT ---------------------------------------------------------------------------------------

    def _make_client(self) -> BufferedClient:
        protocol = paho.MQTTv5 if self.config.mqtt5 else paho.MQTTv311
        client = BufferedClient(CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=protocol,
                                clean_session=None if self.config.mqtt5 else False, manual_ack=True)
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = lambda c, userdata: self._broker.failed("cannot connect")
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
        if not self._service.wait_for(self._connected, 30) and not self._service.stop.is_set():
            self._broker.failed("not reachable yet; paho keeps trying")

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
            self._broker.failed(f"refused ingest {self.config.client_id}: {reason_code}")
            return
        self._broker.recovered()
        self._epoch += 1
        shared = self.config.shared
        client.subscribe([(subscription(Channel.telemetry, shared), 1), (subscription(Channel.status, shared), 1)])
        self._connected.set()
        log.info("ingest %s connected (session present: %s)", self.config.client_id, flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._service.stop.is_set():
            self._broker.failed(f"ingest {self.config.client_id} lost it ({reason_code})")

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self._queue.put(_Received(self._epoch, message, int(time.time() * 1000)))

    def _acknowledge(self, received: list[_Received]) -> None:
        """PUBACK what this connection delivered; older deliveries come again and are stored once."""
        epoch = self._epoch
        self._client.ack_many((item.message.mid, item.message.qos) for item in received
                              if item.epoch == epoch and item.message.qos > 0)

    # -- batches ------------------------------------------------------------------------------------

    def _take(self) -> list[_Received]:
        """The next batch: what is queued and what arrives until its first message has waited ``batch_wait_s``
        since it was received, up to ``batch_max``."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        taken = [first]
        deadline = first.at_ms / 1000 + self.config.batch_wait_s
        while len(taken) < self.config.batch_max:
            try:
                taken.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = min(deadline - time.time(), self.config.batch_wait_s)  # a clock stepped back waits no more
            if remaining <= 0:
                break
            try:
                taken.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return taken

    def _keep_latest(self, flush: bool) -> None:
        """Between batches: write the latest values held back (``flush``), and settle the debts of workers that
        stopped without writing theirs (every ``STALE_S``). A database away now is retried later."""
        try:
            if self._conn is None or self._conn.closed:
                if not self._writer.latest.held:
                    return
                self._conn = psycopg.connect(self.config.database_url, **db.LINK)
                self._writer.forget()
            self._repair_latest()
            if flush:
                self._writer.latest.flush(self._conn)
        except psycopg.Error as exc:
            self._database.failed(exc)
            if self._conn is not None:
                self._conn.close()  # whatever state the failure left it in, the next try starts on a new one
            self._conn = None

    def _repair_latest(self) -> None:
        """Settle this client id's debt left by its previous run (before this run adds to it), then every
        ``STALE_S`` the stale debts of others."""
        if self._repaired_at is None or time.monotonic() - self._repaired_at > STALE_S:
            self._writer.latest.repair(self._conn, own=self._repaired_at is None)
            self._repaired_at = time.monotonic()

    def _judge(self, received: list[_Received]) -> list[Batch]:
        """One part per message: its readings, state and dead letter. The codes the batch names are looked up
        in one query first (``OperationalError`` goes to the caller: the database is away)."""
        decoded = [self._decode(item) for item in received]
        codes = set()
        for message in decoded:
            if message.topic is not None:
                codes.add(message.topic.code)
                codes.update(r.code for r in message.readings if r.code)
        self._directory.ensure(codes)
        return [self._admitted(self._judge_one(message)) for message in decoded]

    def _decode(self, item: _Received) -> _Decoded:
        try:
            topic = _parse_topic(item.message.topic)
        except TopicError as exc:
            return _Decoded(item, None, reason=str(exc), kind="topic")
        except Exception as exc:  # the last resort: one message never stops the worker
            return _Decoded(item, None, reason=self._unexpected("decoding", exc), kind="unexpected")
        if topic.channel is not Channel.telemetry:
            return _Decoded(item, topic)
        try:
            return _Decoded(item, topic, decode_telemetry(item.message.payload))
        except PayloadError as exc:
            return _Decoded(item, topic, reason=str(exc), kind="payload")
        except Exception as exc:  # the last resort
            return _Decoded(item, topic, reason=self._unexpected("decoding", exc, topic.code), kind="unexpected")

    def _judge_one(self, message: _Decoded) -> Batch:
        part = Batch()
        item = message.item
        if message.topic is None:
            part.dead_letters.append(DeadLetter(_topic_text(item.message), None, item.message.payload,
                                                message.reason or "unreadable topic", kind=message.kind or "topic"))
            return part
        try:
            self._judge_known(part, message)
        except Exception as exc:  # the last resort: one message never stops the worker
            part = Batch(dead_letters=[DeadLetter(item.message.topic, message.topic.code, item.message.payload,
                                                  self._unexpected("judging", exc, message.topic.code),
                                                  kind="unexpected")])
        return part

    def _judge_known(self, part: Batch, message: _Decoded) -> None:
        topic, item = message.topic, message.item
        if not self._directory.knows(topic.code):
            part.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload,
                                                f"{topic.code} is not a pole or terminal in the ledger",
                                                kind="unknown_publisher"))
            return
        part.saw(topic.code, item.at_ms)
        if message.reason is not None:
            part.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload, message.reason,
                                                kind=message.kind or "payload"))
        elif topic.channel is Channel.status:
            self._status(part, topic, item)
        elif topic.channel is Channel.telemetry:
            self._telemetry(part, topic, item, message.readings)

    def _unexpected(self, stage: str, exc: Exception, code: str | None = None) -> str:
        self.metrics.unexpected.inc()
        first = self.metrics.unexpected.collect()[0].samples[0].value == 1  # its own total, not every counter's
        log.warning("a message failed %s and is dead-lettered: %s: %s", stage, type(exc).__name__, str(exc)[:200],
                    exc_info=first, extra={"terminal": code})
        return f"{stage} failed: {type(exc).__name__}: {str(exc).strip()[:300]}"

    def _admitted(self, part: Batch) -> Batch:
        """The part with only the dead letters its source still has budget for (the others are counted)."""
        if part.dead_letters:
            part.dead_letters = [letter for letter in (self._limiter.admit(d.publisher or d.topic, d)
                                                       for d in part.dead_letters) if letter is not None]
        return part

    def _status(self, batch: Batch, topic: Topic, item: _Received) -> None:
        state = item.message.payload.decode("utf-8", "replace").strip().lower()
        if state not in ("online", "offline"):
            batch.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload,
                                                 "status payload must be 'online' or 'offline'", kind="status"))
            return
        batch.connections[topic.code] = (state, item.at_ms)

    def _telemetry(self, batch: Batch, topic: Topic, item: _Received, readings: list[Reading]) -> None:
        accepted, problems = validate.check(self._directory, topic.code, readings, self.config.retention_days)
        batch.readings += accepted
        for code in {reading.code for reading in accepted}:
            batch.saw(code, item.at_ms)
        if problems:
            reason = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
            batch.dead_letters.append(DeadLetter(item.message.topic, topic.code, item.message.payload, reason,
                                                 stored=len(accepted), kind="readings"))

    def _commit(self, received: list[_Received]) -> bool:
        """Judge and write the batch, retrying through database outages and transient failures (a lock, a
        timeout) of any step; acknowledge only after the commit. False when stopping before it was written (the
        broker redelivers it)."""
        self._in_hand = len(received)
        started = time.monotonic()
        failures = 0
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.config.database_url, **db.LINK)
                    self._writer.forget()
                self._repair_latest()
                parts = self._judge(received)
                written = self._writer.write_parts(self._conn, parts)
                if written.refused:
                    self._write_refused(self._refused(received, parts, written.refused))
                break
            except psycopg.Error as exc:
                # Every step's failure is retried here, in process: raised, the worker would exit, the broker
                # redeliver the batch to the next one, and a failure that persists would loop through restarts.
                failures += 1
                self._database.failed(exc)
                if not is_outage(exc, self._conn) and not is_transient(exc):
                    log.error("a step before or after the write failed (%s: %s); the batch is retried",
                              type(exc).__name__, str(exc).strip()[:300])
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if self._service.wait(min(1.0, 0.1 * 2 ** failures)):
                    log.warning("stopping with %d messages unwritten; the broker will redeliver them",
                                len(received))
                    return False
        self._database.recovered()
        self._acknowledge(received)
        self._in_hand = 0
        self._count(received, parts, written, started)
        return True

    def _write_refused(self, letters: list[DeadLetter]) -> None:
        """The refused messages' dead letters, through the split path: a letter the database refuses too is
        logged and dropped, so the batch is always acknowledged."""
        written = self._writer.write_parts(self._conn, [Batch(dead_letters=[letter]) for letter in letters])
        for index, reason in written.refused.items():
            log.error("the dead letter of a refused message from %s was refused too (%s); it is dropped",
                      letters[index].publisher or letters[index].topic, reason)

    def _count(self, received: list[_Received], parts: list[Batch], written, started: float) -> None:
        now_s = time.time()
        m = self.metrics
        m.commit_seconds.observe(time.monotonic() - started)
        m.wait_seconds.observe(now_s - received[0].at_ms / 1000)
        m.batch_size.observe(len(received))
        m.messages.inc(len(received))
        m.batches.inc()
        readings = 0
        for index, part in enumerate(parts):
            if index in written.refused:
                continue
            if part.readings:
                readings += len(part.readings)
                m.lag_seconds.observe(now_s - part.readings[0].ts_ms / 1000)
            if part.dead_letters:
                m.dead_lettered(part.dead_letters)
        m.readings_stored.inc(written.stored)
        m.readings_repeated.inc(readings - written.stored)
        if written.refused:
            m.dead_letters.labels("refused").inc(len(written.refused))
        m.suppressed_now(self._limiter.suppressed)

    def _refused(self, received: list[_Received], parts: list[Batch], refused: dict[int, str]) -> list[DeadLetter]:
        """Dead letters for the messages the database refused (the rest of the batch is stored)."""
        log.warning("the database refused %d of %d messages; they are dead-lettered", len(refused), len(received))
        letters = []
        for index, reason in refused.items():
            message = received[index].message
            code = next(iter(parts[index].seen_ms), None)
            letters.append(DeadLetter(_topic_text(message), code, message.payload, reason, kind="refused"))
        return letters


@dataclass(frozen=True, slots=True)
class _Decoded:
    item: _Received
    topic: Topic | None
    readings: list[Reading] = field(default_factory=list)
    reason: str | None = None
    """Why the topic or payload cannot be read."""
    kind: str | None = None
    """The category of ``reason`` (the dead letters metric's label)."""


def _topic_text(message: paho.MQTTMessage) -> str:
    try:
        return message.topic
    except UnicodeDecodeError:
        return "(a topic that is not UTF-8)"
