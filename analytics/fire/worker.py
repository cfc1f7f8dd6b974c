"""`ganzhi fire`: camera frames in, fire detections, events and alerts out.

Frames arrive on ``ganzhi/v1/{code}/frame`` (QoS 0: a late frame is worth less than the next one) or
from snapshot URLs, RTSP streams and video files (``--source CODE=URI``). A camera's frames must all
reach the same worker (its background and tracks live here), so workers split cameras by terminal id
(``--shard K --shards N``) instead of sharing a subscription. When detection falls behind, the oldest
frames are dropped. Bad frames, unknown cameras and non-cameras are dead-lettered; the worker goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from analytics.fire import store
from analytics.fire.frames import Frame, FrameError, decode
from analytics.fire.pipeline import FirePipeline, FireSink
from analytics.fire.sources import SourceError, frames
from core.metrics import Metrics
from core.runtime import Service
from devices.topics import PREFIX, Channel, Topic, TopicError
from ingest.writer import DeadLetter, write_dead_letters
from registry.lookups import division_index

log = logging.getLogger(__name__)

QUIET = dt.timedelta(hours=2)
"""A fire event nothing has seen for this long is closed, and its alert resolved."""
CLOSE_EVERY_S = 60.0
RELOAD_EVERY_S = 60.0
MAX_DEAD_PAYLOAD = 1 << 20


@dataclass(frozen=True)
class FireConfig:
    database_url: str
    mqtt_host: str
    mqtt_port: int
    client_id: str = "ganzhi-fire"
    username: str | None = None
    password: str | None = None
    mqtt5: bool = True
    shard: int = 0
    shards: int = 1
    sources: tuple[tuple[str, str], ...] = ()
    """(camera code, URI) pairs read through OpenCV or HTTP."""
    source_fps: float = 2.0
    queue_max: int = 64


@dataclass(frozen=True, slots=True)
class _Item:
    topic: str
    code: str
    payload: bytes | Frame
    preset: int | None
    captured_at: dt.datetime
    """The frame's ``captured_at`` property, else when it arrived (never when it is taken off the queue: a backlog
    would squeeze frames seconds apart into a burst and fake a flicker)."""
    problem: str | None = None


class _FireMetrics:
    def __init__(self, metrics: Metrics, waiting: queue.Queue) -> None:
        self.registry = metrics
        self.frames = metrics.counter("fire_frames", "camera frames judged (rate(): frames per second)")
        self.dropped = metrics.counter("fire_dropped", "frames dropped while detection was behind")
        self.dead_letters = metrics.counter("fire_dead_letters", "frames dead-lettered")
        self.event_updates = metrics.counter("fire_event_updates", "fire events opened or updated")
        self.reconnects = metrics.counter("fire_reconnects", "database connections lost and made again")
        self.camera_errors = metrics.counter("fire_camera_errors",
                                             "frames whose detection failed unexpectedly (logged with the camera)")
        self.frame_seconds = metrics.histogram("fire_frame_seconds", "detection and storage of one frame")
        metrics.gauge("fire_queue_depth", "frames waiting for detection").set_function(waiting.qsize)


class FireWorker:
    def __init__(self, config: FireConfig, sink: FireSink) -> None:
        if not 0 <= config.shard < config.shards:
            raise ValueError(f"shard {config.shard} is not in 0..{config.shards - 1}")
        self.config, self.sink = config, sink
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=config.queue_max)
        self.metrics = _FireMetrics(Metrics(), self._queue)
        """Counted in a registry of its own until ``run`` gives it the service's."""
        self._cameras: dict[str, store.Camera] = {}
        self._loaded = 0.0
        self._last_close = 0.0
        self._client = self._make_client()

    @property
    def counters(self) -> dict[str, float]:
        """Counter totals by short name: frames, dropped, dead letters, event updates, reconnects, camera
        errors."""
        return {name.removeprefix("fire_").replace("_", " "): value
                for name, value in self.metrics.registry.totals().items()}

    def run(self, service: Service) -> None:
        """Detect until the service stops. A lost database connection is made again by the runtime (the outage
        logged once each way); the frame in hand is lost with it (frames are QoS 0: the next one matters more)."""
        self.metrics = _FireMetrics(service.metrics, self._queue)
        service.add_check("broker", lambda: None if self._client.is_connected() else "not connected to the broker")
        service.set_detail(shard=self.config.shard, shards=self.config.shards)
        conn = service.connect(self.config.database_url)
        if conn is None:
            return
        index = division_index(conn)
        pipeline = FirePipeline(self.sink, index.locate)
        self._reload(conn)
        self._client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=30)
        self._client.loop_start()
        for code, uri in self.config.sources:
            threading.Thread(target=self._read_source, args=(code, uri, service.stop), daemon=True,
                             name=f"source-{code}").start()
        try:
            while conn is not None:
                try:
                    self._detect_until_stopped(conn, pipeline, service)
                    return
                except psycopg.OperationalError as exc:
                    log.error("fire worker lost the database: %s; reconnecting", str(exc).strip())
                    self.metrics.reconnects.inc()
                    conn.close()
                    conn = service.connect(self.config.database_url)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            if conn is not None:
                conn.close()

    def _detect_until_stopped(self, conn: psycopg.Connection, pipeline: FirePipeline, service: Service) -> None:
        while not service.stop.is_set():
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                item = None
            if item is not None:
                self._handle(conn, pipeline, item)
            if time.monotonic() - self._last_close > CLOSE_EVERY_S:
                self._close_quiet(conn)
                self._last_close = time.monotonic()

    # -- one frame ------------------------------------------------------------------------------------

    def _handle(self, conn: psycopg.Connection, pipeline: FirePipeline, item: _Item) -> None:
        camera = self._camera(conn, item.code)
        problem = item.problem or self._refusal(item.code, camera)
        if problem is None and camera.id % self.config.shards != self.config.shard:
            return  # another worker's camera
        frame = item.payload
        if problem is None and not isinstance(frame, Frame):
            try:
                frame = decode(frame)
            except FrameError as exc:
                problem = str(exc)
        if problem is not None:
            self._dead_letter(conn, item, problem)
            return
        started = time.monotonic()
        try:
            updates = pipeline.handle(conn, camera, frame, item.preset, item.captured_at)
            conn.commit()
        except psycopg.OperationalError:
            raise  # the database is gone: ``run`` connects again
        except Exception:  # one camera's failure (a frame its scene model cannot take) stops no other camera
            conn.rollback()
            self.metrics.camera_errors.inc()
            log.exception("fire detection failed on a frame from camera %s (terminal %s); going on",
                          item.code, camera.id, extra={"terminal": item.code})
            return
        self.metrics.frames.inc()
        self.metrics.event_updates.inc(len(updates))
        self.metrics.frame_seconds.observe(time.monotonic() - started)

    def _camera(self, conn: psycopg.Connection, code: str) -> store.Camera | None:
        """From the cameras loaded each minute; a code not among them is looked up alone (a camera registered a
        moment ago, or a terminal that is not a camera)."""
        if time.monotonic() - self._loaded > RELOAD_EVERY_S:
            self._reload(conn)
        camera = self._cameras.get(code)
        if camera is None:
            camera = store.terminal(conn, code)
            conn.commit()
            if camera is not None and camera.kind in store.CAMERA_KINDS:
                self._cameras[code] = camera
        return camera

    def _reload(self, conn: psycopg.Connection) -> None:
        self._cameras = store.cameras(conn)
        conn.commit()
        self._loaded = time.monotonic()

    @staticmethod
    def _refusal(code: str, camera: store.Camera | None) -> str | None:
        if camera is None:
            return f"unknown camera {code}: no terminal with this code in the ledger"
        if camera.kind not in store.CAMERA_KINDS:
            return f"terminal {code} is a {camera.kind}, not a camera; only cameras send frames"
        if camera.status == "retired":
            return f"camera {code} is retired"
        return None

    def _dead_letter(self, conn: psycopg.Connection, item: _Item, reason: str) -> None:
        payload = item.payload if isinstance(item.payload, bytes) else b""
        with conn.transaction():
            write_dead_letters(conn, [DeadLetter(item.topic, item.code, payload[:MAX_DEAD_PAYLOAD], reason)])
        self.metrics.dead_letters.inc()
        log.info("frame from %s dead-lettered: %s", item.code, reason, extra={"terminal": item.code})

    def _close_quiet(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            for event_id in store.stale_events(conn, QUIET):
                self.sink.fire_closed(conn, event_id)

    # -- inputs ---------------------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        protocol = paho.MQTTv5 if self.config.mqtt5 else paho.MQTTv311
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=protocol)
        if self.config.username:
            client.username_pw_set(self.config.username, self.config.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the fire worker: %s", reason_code)
            return
        client.subscribe(f"{PREFIX}/+/{Channel.frame}", qos=0)
        log.info("fire worker %s subscribed to camera frames", self.config.client_id)

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            code = Topic.parse(message.topic).code
        except TopicError:
            return
        arrived = dt.datetime.now(dt.UTC)
        preset, captured, problem = _properties(message)
        self._offer(_Item(message.topic, code, message.payload, preset, captured or arrived, problem))

    def _offer(self, item: _Item) -> None:
        """Queue a frame; when detection is behind, the oldest waiting frame makes room."""
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.metrics.dropped.inc()
                except queue.Empty:
                    pass

    def _read_source(self, code: str, uri: str, stop: threading.Event) -> None:
        """A live source drops its oldest frames when detection is behind; a file is read at detection's pace."""
        topic = f"source:{uri}"
        is_file = Path(uri).exists()
        while not stop.is_set():
            started = dt.datetime.now(dt.UTC)
            try:
                for frame, offset in frames(uri, self.config.source_fps, stop):
                    at = started + dt.timedelta(seconds=offset) if offset is not None else dt.datetime.now(dt.UTC)
                    item = _Item(topic, code, frame, None, at)
                    if not is_file:
                        self._offer(item)
                        continue
                    while not stop.is_set():
                        try:
                            self._queue.put(item, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                return  # a file ended
            except (SourceError, FrameError) as exc:
                log.warning("source %s for %s: %s; retrying in 10 s", uri, code, exc)
                stop.wait(10)


def _properties(message: paho.MQTTMessage) -> tuple[int | None, dt.datetime | None, str | None]:
    """MQTT 5 user properties ``preset`` (integer) and ``captured_at`` (ISO 8601); both optional."""
    props = getattr(message, "properties", None)
    pairs = dict(getattr(props, "UserProperty", None) or [])
    preset = captured = None
    try:
        if "preset" in pairs:
            preset = int(pairs["preset"])
            if not 0 <= preset <= 255:
                raise ValueError(f"preset {preset} is not 0–255")
        if "captured_at" in pairs:
            captured = dt.datetime.fromisoformat(pairs["captured_at"].replace("Z", "+00:00"))
            if captured.tzinfo is None:
                raise ValueError(f"captured_at {pairs['captured_at']!r} has no time zone")
    except ValueError as exc:
        return None, None, f"bad user property: {exc}"
    return preset, captured, None
