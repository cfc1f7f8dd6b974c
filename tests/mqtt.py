"""Test helpers for MQTT: a broker whose logins come from the ledger, an ingest worker in a
thread, and a publisher that waits for every PUBACK."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import LocalBroker
from core.runtime import Service
from ganzhi import broker_auth
from ganzhi.benchkit import free_port
from ingest.worker import IngestWorker, WorkerConfig
from registry import credentials

SERVICE_USER = "ganzhi-ingest"
SERVICE_PASSWORD = "test-service-secret"
ADMIN_PASSWORD = "test-admin-secret"


@dataclass
class AuthBroker:
    """A mosquitto whose doors follow the ledger, with the broker sync of `ganzhi up` in a thread."""

    broker: LocalBroker
    db_url: str
    auth: broker_auth.BrokerAuth
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stopping: asyncio.Event | None = None

    @classmethod
    def start(cls, db_url: str, root: Path) -> AuthBroker:
        accounts = broker_auth.platform_accounts(SERVICE_USER, SERVICE_PASSWORD, ADMIN_PASSWORD)
        with psycopg.connect(db_url) as conn:
            auth = broker_auth.write_files(conn, root / "auth", accounts)
        local = cls(LocalBroker(root / "data", free_port(), auth_dir=root / "auth"), db_url, auth)
        asyncio.run(local.broker.start())
        ready = threading.Event()
        local._thread = threading.Thread(target=asyncio.run, args=(local._sync_until_stopped(ready),), daemon=True)
        local._thread.start()
        ready.wait(10)
        return local

    async def _sync_until_stopped(self, ready: threading.Event) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        syncing = asyncio.create_task(broker_auth.keep_in_step(self.db_url, self.auth, self.broker))
        await self._stopping.wait()
        syncing.cancel()
        await asyncio.gather(syncing, return_exceptions=True)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        asyncio.run(self.broker.stop())

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.broker.port

    def sync(self, timeout_s: float = 10.0) -> None:
        """Wait until the broker has every login of the ledger (and none other)."""
        with psycopg.connect(self.db_url) as conn:
            wanted = credentials.broker_logins(conn)
        wait_until(lambda: dict(self.auth.logins) == wanted, timeout_s, 0.02)
        time.sleep(0.1)  # mosquitto re-reads its password file on SIGHUP, in its main loop


def give_secret(db_url: str, code: str, secret: str = "s3cret") -> str:
    with psycopg.connect(db_url) as conn:
        credentials.store(conn, [(code, credentials.hash_secret(secret))], "test")
    return secret


class WorkerThread:
    def __init__(self, db_url: str, broker: AuthBroker, client_id: str | None = None, **options) -> None:
        host, port = broker.address
        config = WorkerConfig(database_url=db_url, mqtt_host=host, mqtt_port=port,
                              client_id=client_id or f"test-ingest-{uuid.uuid4().hex[:6]}", username=SERVICE_USER,
                              password=SERVICE_PASSWORD, **({"session_expiry_s": 0} | options))
        self.service = Service("ingest", f"ingest {config.client_id}", db_url)
        self.worker = IngestWorker(config, self.service)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> IngestWorker:
        self.thread.start()
        if not self.worker._connected.wait(10):
            raise RuntimeError("the ingest worker did not connect")
        return self.worker

    def __exit__(self, *exc) -> None:
        self.service.request_stop()
        self.thread.join(30)


def publish(address: tuple[str, int], username: str, password: str, messages: list[tuple[str, bytes]],
            window: int = 500, mqtt5: bool = True, client_id: str | None = None) -> list[int]:
    """Publish at QoS 1 as a device (client id = its code) and wait for every PUBACK; returns the MQTT 5
    reason codes."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username,
                         protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311)
    client.username_pw_set(username, password)
    codes: dict[int, int] = {}
    done = threading.Condition()

    def on_publish(c, userdata, mid, reason_code, properties) -> None:
        with done:
            codes[mid] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
            done.notify_all()

    connected = threading.Event()
    refused: list = []

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(reason_code)
        connected.set()

    client.on_publish = on_publish
    client.on_connect = on_connect
    client.connect(*address)
    client.loop_start()
    try:
        connected.wait(10)
        if refused:
            raise ConnectionRefusedError(str(refused[0]))
        mids = []
        for topic, payload in messages:
            with done:
                done.wait_for(lambda: len(mids) - len(codes) < window, timeout=30)
            mids.append(client.publish(topic, payload, qos=1).mid)
        with done:
            if not done.wait_for(lambda: len(codes) >= len(mids), timeout=60):
                raise TimeoutError(f"{len(mids) - len(codes)} PUBACKs missing")
        return [codes[m] for m in mids]
    finally:
        client.disconnect()
        client.loop_stop()


def wait_until(predicate, timeout_s: float = 20.0, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError("condition not met in time")


class Session:
    """A connected client that records its disconnection: ``with Session(address, user, secret) as s``."""

    def __init__(self, address: tuple[str, int], username: str, password: str, client_id: str | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=paho.MQTTv5)
        self.client.username_pw_set(username, password)
        self.address = address
        self.connack: list = []
        self.disconnected = threading.Event()
        self.granted: list[list[int]] = []
        self._answered = threading.Event()
        self._subacked = threading.Condition()
        self.client.on_connect = lambda c, u, flags, rc, p: (self.connack.append(rc), self._answered.set())
        self.client.on_disconnect = lambda *args: (self._answered.set(), self.disconnected.set())
        self.client.on_subscribe = self._on_subscribe

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._subacked:
            self.granted.append([code.value for code in reason_codes])
            self._subacked.notify_all()

    def __enter__(self) -> Session:
        self.client.reconnect_delay_set(0.01, 0.01)  # else loop_stop after a refusal waits out a 1 s delay
        self.client.connect(*self.address)
        self.client.loop_start()
        self._answered.wait(10)
        if not self.connack or self.connack[0].is_failure:
            self.__exit__()
            raise ConnectionRefusedError(str(self.connack[0] if self.connack else "no CONNACK"))
        return self

    def __exit__(self, *exc) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic_filter: str) -> int:
        """The broker's answer: the QoS granted (0-2) or a failure code (0x87: not authorized)."""
        with self._subacked:
            before = len(self.granted)
            self.client.subscribe(topic_filter, qos=1)
            if not self._subacked.wait_for(lambda: len(self.granted) > before, timeout=10):
                raise TimeoutError(f"no SUBACK for {topic_filter}")
            return self.granted[before][0]


def can_log_in(address: tuple[str, int], username: str, password: str, client_id: str | None = None) -> bool:
    try:
        with Session(address, username, password, client_id):
            return True
    except ConnectionRefusedError:
        return False
