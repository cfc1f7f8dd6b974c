"""Broker logins at scale: with N device logins connected to a real mosquitto whose doors follow the ledger
(the broker sync of ``ganzhi up``), how long a credential issued in the ledger takes to open the door, how
long a retired device's session lives on, and how long the broker stalls meanwhile.

- issue → login: from the commit of a new secret for a new terminal to the first CONNACK 0 with it (a raw
  MQTT 3.1.1 CONNECT tried every 10 ms);
- retire → closed: from the commit of a connected terminal's retirement to its connection's end;
- stall: a probe device publishes every 5 ms (QoS 0) to a service subscriber; the longest publish→receive
  time of what was sent from the commit to 0.5 s after the door opened (3 s after it closed), taken once the broker
  serves the probe again (so a stall that begins after the door moved is counted whole), against the
  median before any change.

The N devices connect with lean raw sockets (CONNECT, CONNACK, then nothing: keep-alive 0), from as many
loopback source addresses as their ports need; N is bounded by the open-files limit (the broker holds one
descriptor per connection too). Their secrets are hashed as ``credentials.hash_secret`` does
(or, with ``legacy``, as the ledger did before: PBKDF2 with 101 iterations).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import DYNSEC_FILE, LocalBroker
from core.settings import Settings
from ganzhi import broker_auth
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.database import prepare
from registry import credentials, service
from registry.changes import Actor
from registry.lookups import Lookups
from registry.models import TerminalIn, TerminalPatch

SERVICE = ("ganzhi-ingest", "bench-service-secret")
ADMIN_SECRET = "bench-admin-secret"
SECRET = "bench-device-secret"
ACTOR = Actor("bench")
PORTS_PER_SOURCE = 25_000
"""Connections per loopback source address (the ephemeral port range holds about 28,000)."""
CONNECT_WINDOW = 500
PROBE_EVERY_S = 0.005
AFTER_S = 0.5
AFTER_RETIRE_S = 3.0
"""The session closes before the sync has finished (a password file re-read, if any, comes after)."""


@dataclass
class Probe:
    """A device publishing its clock every few ms to a service subscriber; publish→receive times kept."""

    port: int
    code: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(sent, seconds to arrive)"""
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe-subscriber")
        self._subscriber.username_pw_set(*SERVICE)
        self._subscriber.on_message = self._arrived
        self._subscriber.connect("127.0.0.1", self.port, keepalive=600)
        self._subscriber.subscribe(f"ganzhi/v1/{self.code}/telemetry")
        self._subscriber.loop_start()
        self._publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.code)
        self._publisher.username_pw_set(self.code, SECRET)
        self._publisher.connect("127.0.0.1", self.port, keepalive=600)
        self._publisher.loop_start()
        time.sleep(0.5)
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for client in (self._publisher, self._subscriber):
            client.loop_stop()
            client.disconnect()

    def _publish(self) -> None:
        topic = f"ganzhi/v1/{self.code}/telemetry"
        while not self._stop.wait(PROBE_EVERY_S):
            self._publisher.publish(topic, repr(time.perf_counter()).encode(), qos=0)

    def _arrived(self, client, userdata, message) -> None:
        sent = float(message.payload)
        self.samples.append((sent, time.perf_counter() - sent))

    def worst(self, since: float, until: float, timeout_s: float = 300) -> float:
        """Longest publish→receive in ms of what was sent in [since, until], once something sent after ``until``
        has arrived (the broker serves again)."""
        deadline = time.perf_counter() + timeout_s
        while not self.samples or self.samples[-1][0] <= until:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the broker did not serve the probe for {timeout_s:.0f} s")
            time.sleep(0.01)
        return 1000 * max((s for sent, s in self.samples if since <= sent <= until), default=0.0)

    def typical(self, since: float) -> float:
        return 1000 * statistics.median(s for sent, s in self.samples if sent >= since)


def run(url: str, settings: Settings, connected: list[int], changes: int, legacy: bool) -> None:
    load = os.getloadavg()
    print(f"box: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.machine()}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; open files per process "
          f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]:,} (bounds N, for the bench and the broker alike)")
    secret_hash = credentials.hash_secret(SECRET, iterations=101) if legacy else credentials.hash_secret(SECRET)
    print(f"device hashes: {secret_hash.rsplit('$', 2)[0]}$… ({'legacy' if legacy else 'as issued now'})")
    for count in connected:
        _one(url, settings, count, changes, secret_hash)


def _one(url: str, settings: Settings, count: int, changes: int, secret_hash: str) -> None:
    scratch = scratch_database(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-bench-broker-auth-"))
    root.chmod(0o755)
    try:
        prepare(scratch, settings)
        started = time.perf_counter()
        codes = _terminals(scratch, count + 1 + 2 * changes)
        devices, probe_code, fresh = codes[:count], codes[count], codes[count + 1:]
        _store(scratch, [*devices, probe_code], secret_hash)
        print(f"--- {count:,} device logins connected (ledger made in {time.perf_counter() - started:.0f} s)")
        auth_dir = root / "auth"
        with psycopg.connect(scratch) as conn:
            auth = broker_auth.write_files(conn, auth_dir, broker_auth.platform_accounts(*SERVICE, ADMIN_SECRET))
        print(f"passwd {(auth_dir / 'passwd').stat().st_size / 2**20:.1f} MiB, plugin file "
              f"{(auth_dir / DYNSEC_FILE).stat().st_size / 2**20:.1f} MiB as written (the plugin saves it indented)")
        broker = LocalBroker(root / "data", free_port(), auth_dir=auth_dir)
        asyncio.run(broker.start())
        try:
            probe = Probe(broker.port, probe_code)
            with _syncing(scratch, auth, broker):
                probe.start()  # first: paho's select() takes no descriptor above 1023
                try:
                    with _connected(broker.port, devices) as sockets:
                        _changes(scratch, broker.port, probe, fresh, sockets, changes)
                finally:
                    probe.stop()
        finally:
            asyncio.run(broker.stop())
    finally:
        drop_database(url, scratch)
        shutil.rmtree(root, ignore_errors=True)


def _changes(url: str, port: int, probe: Probe, fresh: list[str], sockets: dict[str, socket.socket],
             changes: int) -> None:
    quiet = time.perf_counter()
    time.sleep(1.0)
    print(f"probe publish→receive before any change: median {probe.typical(quiet):.1f} ms")
    issued, retired = [], []
    victims = list(sockets)[:changes]
    for code, victim in zip(fresh, victims, strict=False):
        issued.append(_issue(url, port, probe, code))
        print(f"issue → login {issued[-1][0]:7.0f} ms, stall {issued[-1][1]:7.0f} ms", flush=True)
        time.sleep(1.0)
        retired.append(_retire(url, probe, victim, sockets[victim]))
        print(f"retire → closed {retired[-1][0]:6.0f} ms, stall {retired[-1][1]:7.0f} ms", flush=True)
        time.sleep(1.0)
    median = statistics.median
    print(f"median of {len(issued)}: issue → login {median(i for i, _ in issued):.0f} ms (stall "
          f"{median(s for _, s in issued):.0f} ms); retire → closed {median(r for r, _ in retired):.0f} ms (stall "
          f"{median(s for _, s in retired):.0f} ms)")


def _issue(url: str, port: int, probe: Probe, code: str) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        secret = credentials.issue(conn, code, ACTOR)
        conn.commit()
    committed = time.perf_counter()
    while not _logs_in(port, code, secret):
        time.sleep(0.01)
    opened = time.perf_counter()
    time.sleep(AFTER_S)
    return 1000 * (opened - committed), probe.worst(committed, opened + AFTER_S)


def _retire(url: str, probe: Probe, code: str, connection: socket.socket) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        service.update_terminal(conn, code, TerminalPatch(status="retired"), ACTOR)
        conn.commit()
    committed = time.perf_counter()
    if connection.recv(16):  # blocks until the broker closes it (the socket's timeout: 120 s)
        raise RuntimeError(f"{code}'s connection was not closed when it was retired")
    closed = time.perf_counter()
    time.sleep(AFTER_RETIRE_S)
    return 1000 * (closed - committed), probe.worst(committed, closed + AFTER_RETIRE_S)


def _terminals(url: str, count: int, batch: int = 5000) -> list[str]:
    codes: list[str] = []
    with psycopg.connect(url) as conn:
        lookups = Lookups.load(conn)
        for first in range(0, count, batch):
            items = [TerminalIn(name=f"bench door {i}", kind="air_sensor", lon=126.98 + (i % 997) * 1e-5,
                                lat=46.64 + (i // 997 % 997) * 1e-5) for i in range(first, min(count, first + batch))]
            rows, errors = service.prepare_terminals(conn, items, lookups)
            service.raise_errors(errors)
            codes += service.save_terminals(conn, rows, ACTOR).codes
            conn.commit()
    return codes


def _store(url: str, codes: list[str], secret_hash: str) -> None:
    with psycopg.connect(url) as conn:
        credentials.store(conn, [(code, secret_hash) for code in codes], "bench")


@contextlib.contextmanager
def _syncing(url: str, auth: broker_auth.BrokerAuth, broker: LocalBroker) -> Iterator[None]:
    """The broker sync of ``ganzhi up``, in a thread of its own."""
    loop = asyncio.new_event_loop()
    syncing = loop.create_task(broker_auth.keep_in_step(url, auth, broker))

    def follow() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(syncing)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(syncing.cancel)
        thread.join(10)


@contextlib.contextmanager
def _connected(port: int, codes: list[str]) -> Iterator[dict[str, socket.socket]]:
    started = time.perf_counter()
    sockets: dict[str, socket.socket] = {}
    try:
        for first in range(0, len(codes), CONNECT_WINDOW):
            window = codes[first:first + CONNECT_WINDOW]
            opened = [(code, _open(port, code, SECRET, source=f"127.0.0.{2 + (first + n) // PORTS_PER_SOURCE}"))
                      for n, code in enumerate(window)]
            for code, connection in opened:
                sockets[code] = connection
                if _connack(connection) != 0:
                    raise RuntimeError(f"{code} was refused")
        elapsed = time.perf_counter() - started
        print(f"{len(codes):,} devices logged in in {elapsed:.1f} s ({len(codes) / elapsed:,.0f}/s)")
        yield sockets
    finally:
        for connection in sockets.values():
            connection.close()


def _logs_in(port: int, code: str, secret: str) -> bool:
    with contextlib.closing(_open(port, code, secret)) as connection:
        try:
            return _connack(connection) == 0
        except (OSError, RuntimeError):
            return False


def _open(port: int, code: str, secret: str, source: str | None = None) -> socket.socket:
    connection = socket.socket()
    if source:
        connection.bind((source, 0))
    connection.settimeout(120)
    connection.connect(("127.0.0.1", port))
    connection.sendall(_connect_packet(code, secret))
    return connection


def _connack(connection: socket.socket) -> int:
    answer = b""
    while len(answer) < 4:
        chunk = connection.recv(4 - len(answer))
        if not chunk:
            raise RuntimeError("closed before CONNACK")
        answer += chunk
    return answer[3]


def _connect_packet(code: str, secret: str) -> bytes:
    """MQTT 3.1.1 CONNECT: client id = username = code, clean session, keep-alive 0 (none)."""
    def text(value: str) -> bytes:
        return len(value.encode()).to_bytes(2, "big") + value.encode()

    body = text("MQTT") + bytes([4, 0xC2, 0, 0]) + text(code) + text(code) + text(secret)
    return bytes([0x10]) + _remaining_length(len(body)) + body


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)
