"""Test helpers for MQTT: a broker whose logins come from the ledger, an ingest worker in a
thread, and a publisher that waits for every PUBACK."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import LocalBroker
from core.runtime import Service
from ganzhi.broker_auth import write_files
from ingest.worker import IngestWorker, WorkerConfig
from registry import credentials

SERVICE_USER = "ganzhi-ingest"
SERVICE_PASSWORD = "test-service-secret"


@dataclass
class AuthBroker:
    broker: LocalBroker
    db_url: str

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.broker.port

    def sync(self) -> None:
        """Rewrite passwd/acl from the ledger and make mosquitto re-read them."""
        with psycopg.connect(self.db_url) as conn:
            write_files(conn, self.broker.auth_dir, {SERVICE_USER: SERVICE_PASSWORD})
        self.broker.reload()
        time.sleep(0.3)


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
            window: int = 500, mqtt5: bool = True) -> list[int]:
    """Publish at QoS 1 and wait for every PUBACK; returns the MQTT 5 reason codes."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:6]}",
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
