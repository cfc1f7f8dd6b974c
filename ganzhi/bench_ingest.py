"""Ingest benchmark: pole gateways publish N messages of K readings each, as fast as the path
allows, through mosquitto (logins from the ledger) and the ingest workers into PostgreSQL.

Prints sustained messages/s and readings/s committed, p50/p99 publish→committed latency
(``received_at`` is the insert's clock, ``ts`` the publish time), CPU seconds and peak RSS of
each process and their cost in CPU µs per message and per reading, lost and repeated counts
(the repeated ones scraped from each worker's /metrics), and the raw broker→paho-subscriber ceiling.

PostgreSQL's CPU is given twice: its backends serving this benchmark's database (the workers'
connections: parsing, COPY, indexes, commit) and the server's other processes (WAL writer,
checkpointer, background writer, autovacuum, and on a shared box everybody else's work).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import LocalBroker
from core.runtime import die_with_parent
from core.settings import Settings
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.broker_auth import platform_accounts, write_files
from ganzhi.database import prepare
from ganzhi.lean_publisher import LeanPublisher
from registry import credentials, service
from registry.changes import Actor
from registry.lookups import Lookups
from registry.models import PoleIn, TerminalIn

METRICS = ("w01001", "w01009", "w01010", "w01003", "w01014", "w01018", "w01019", "w21003", "w21011", "w21001")
SECRET = "bench-secret"
SERVICE = ("ganzhi-ingest", "bench-service-secret")
WINDOW = 500
BURST_S = 0.01
"""A paced publisher sends what fell due every 10 ms: a sleep per message cost more than the message."""


@dataclass(frozen=True)
class Figures:
    """What one run through the platform measured."""

    messages_per_s: float
    readings_per_s: float
    p99_ms: float
    lost: int
    twice: int


def run(url: str, settings: Settings, messages: int, readings_per_message: int, gateways: int, workers: int,
        terminals_per_gateway: int, rate: float | None, protocol: str, ceiling: bool = True) -> Figures:
    load = os.getloadavg()
    print(f"box: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.machine()}, "
          f"Python {platform.python_version()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    scratch = scratch_database(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-bench-"))
    root.chmod(0o755)
    try:
        prepare(scratch, settings)
        poles = _ledger(scratch, gateways, terminals_per_gateway, readings_per_message)
        broker = LocalBroker(root / "mqtt", free_port(), auth_dir=root / "auth")
        with psycopg.connect(scratch) as conn:
            write_files(conn, root / "auth", platform_accounts(*SERVICE))
        asyncio.run(broker.start())
        try:
            if ceiling:
                _ceiling(broker.port, next(iter(poles)), messages, readings_per_message)
            return _through_the_platform(scratch, broker, poles, messages, readings_per_message, workers, rate,
                                         protocol)
        finally:
            asyncio.run(broker.stop())
    finally:
        drop_database(url, scratch)
        shutil.rmtree(root, ignore_errors=True)


def _ledger(url: str, gateways: int, per_gateway: int, k: int) -> dict[str, list[str]]:
    """Gateways (smart poles) in 北林区, each carrying ``per_gateway`` multi-parameter terminals."""
    actor = Actor("bench")
    poles: dict[str, list[str]] = {}
    with psycopg.connect(url) as conn:
        for g in range(gateways):
            pole = service.create_pole(conn, PoleIn(name=f"bench gateway {g}", department="cgj", lon=126.98 + g * 1e-3,
                                                    lat=46.64), actor)
            items = [TerminalIn(name=f"bench {g}-{i}", kind="air_sensor", pole=pole, metrics=list(METRICS[:k]))
                     for i in range(per_gateway)]
            rows, errors = service.prepare_terminals(conn, items, Lookups.load(conn))
            service.raise_errors(errors)
            poles[pole] = service.save_terminals(conn, rows, actor).codes
            credentials.store(conn, [(pole, credentials.hash_secret(SECRET))], "bench")
        conn.commit()
    return poles


def _through_the_platform(url: str, broker: LocalBroker, poles: dict[str, list[str]], messages: int, k: int,
                          workers: int, rate: float | None, protocol: str) -> Figures:
    env = dict(os.environ, DATABASE_URL=url, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
               GANZHI_MQTT_USERNAME=SERVICE[0], GANZHI_MQTT_PASSWORD=SERVICE[1], GANZHI_LOG_LEVEL="WARNING")
    ports = [free_port() for _ in range(workers)]
    worker_procs = [subprocess.Popen([sys.executable, "-m", "ganzhi", "ingest", "--client-id", f"bench-{n}",
                                      "--protocol", protocol], env=dict(env, GANZHI_METRICS_PORT=str(ports[n])))
                    for n in range(workers)]
    _wait_ready(ports)
    backends, others = _postgres_pids(url)
    mosquitto = [p.pid for p in psutil.Process(broker._process.pid).children(recursive=True)]  # not its guard
    monitor = _Monitor({"mosquitto": mosquitto, **{f"ingest {n + 1}": [p.pid] for n, p in
                                                               enumerate(worker_procs)},
                        "postgres (this database)": backends, "postgres (the rest)": others})
    per_gateway = messages // len(poles)
    ctx = multiprocessing.get_context("spawn")
    answers = ctx.Queue()
    gateway_rate = rate / len(poles) if rate else None
    ready, go = ctx.Barrier(len(poles) + 1), ctx.Event()
    publishers = [ctx.Process(target=_publish, args=(broker.port, pole, codes, per_gateway, k, gateway_rate, answers,
                                                     ready, go))
                  for pole, codes in poles.items()]
    for p in publishers:
        p.start()
    ready.wait(120)  # every gateway started and connected: they begin together, and start-up is not counted
    commits = _CommitClock(url)
    rows_before = rows_written(url)
    monitor.start()
    go.set()
    answered = [answers.get() for _ in publishers]
    for p in publishers:
        p.join()
    acked, refused, publisher_cpu = (sum(a[i] for a in answered) for i in range(3))
    published = max(a[4] for a in answered) - min(a[3] for a in answered)
    expected = per_gateway * len(poles) * k
    _wait_stored(url, expected, timeout_s=900)  # it returns early when the count stops growing
    monitor.stop()
    commits.stop()
    repeated = sum(_scraped(port, "ganzhi_ingest_readings_repeated_total") for port in ports)
    handled = {f"ingest {n + 1}": _scraped(port, "ganzhi_ingest_messages_total") for n, port in enumerate(ports)}
    for n, port in enumerate(ports):
        batches = _scraped(port, "ganzhi_ingest_batches_total") or 1
        commit, waited = (_scraped(port, f"ganzhi_ingest_{name}_seconds_sum") / batches * 1000
                          for name in ("commit", "receive_to_commit"))
        print(f"ingest {n + 1}: {batches:,.0f} batches, {handled[f'ingest {n + 1}'] / batches:,.0f} messages each, "
              f"judged and committed in {commit:.1f} ms, first message received to commit {waited:.1f} ms (means)")
    for proc in worker_procs:
        proc.terminate()
        proc.wait(60)
    print(f"publishers: {len(poles)} gateways (MQTT 5, libmosquitto), {acked} PUBACKs, {refused} refusing; "
          f"{publisher_cpu / (acked + refused or 1) * 1e6:.1f} µs CPU/message")
    figures = _report(url, expected, k, published, per_gateway * len(poles), workers, int(repeated), monitor,
                      publisher_cpu, protocol, handled, rows_before)
    commits.report()
    for n in range(workers):  # end the benchmark's broker sessions (after the report: on a loaded box it is slow)
        try:
            subprocess.run([sys.executable, "-m", "ganzhi", "ingest", "--client-id", f"bench-{n}", "--protocol",
                            protocol, "--drain"], env=env, capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            print(f"ending the broker session of bench-{n} took more than 120 s (the broker is dropped anyway)")
    return figures


def _wait_ready(ports: list[int], timeout_s: float = 60) -> None:
    """Until every worker's /readyz says its database and broker answer."""
    deadline = time.monotonic() + timeout_s
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{waiting[0]}/readyz", timeout=5).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"ingest workers on metrics ports {waiting} not ready after {timeout_s:.0f} s")


def _scraped(port: int, name: str) -> float:
    """One unlabelled sample of a worker's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name)


def _publish(port: int, pole: str, codes: list[str], count: int, k: int, rate: float | None, answers,
             ready=None, go=None) -> None:
    """One gateway: ``count`` messages round-robin over its terminals, at most WINDOW unacknowledged; paced at
    ``rate`` messages/s when given, in bursts every BURST_S (what fell due since the last one), each message
    stamped with the time its burst went out. Once connected it waits at ``ready`` (a barrier) and then for
    ``go``, so that every gateway starts together. Puts (messages acknowledged, refused, CPU seconds spent from
    the connection to the last PUBACK, wall-clock time of the first and of the last message) on ``answers``.
    It dies with the bench: a bench killed mid-run must not leave gateways loading the box."""
    die_with_parent(parent=multiprocessing.parent_process().pid)
    publisher = LeanPublisher(pole, pole, SECRET, window=WINDOW)
    publisher.connect("127.0.0.1", port)
    if ready is not None:
        ready.wait(120)
        go.wait(120)
    cpu_before = time.process_time()
    topic = f"ganzhi/v1/{pole}/telemetry".encode()
    last = dict.fromkeys(codes, 0)
    templates = _templates(codes, k)
    started = time.monotonic()
    first_s = last_s = time.time()
    sent = 0
    while sent < count:
        due = count if rate is None else min(count, int((time.monotonic() - started) * rate) + 1)
        end = min(due, sent + WINDOW - publisher.in_flight)
        if end > sent:
            now_ms = int(time.time() * 1000)
            for i in range(sent, end):
                code = codes[i % len(codes)]
                last[code] = ts = max(now_ms, last[code] + 1)
                publisher.publish(topic, templates[code] % (ts, *(i // len(codes) % 10,) * k))
            sent, last_s = end, now_ms / 1000
        time.sleep(BURST_S if rate else 0.001)  # unpaced: only when the window is full
    publisher.wait_acknowledged(timeout_s=300)
    answers.put((publisher.acked, publisher.refused, time.process_time() - cpu_before, first_s, last_s))
    publisher.close()


def _templates(codes: list[str], k: int) -> dict[str, bytes]:
    """Per-terminal payloads to fill with % (ts, k values): json.dumps per message would cost the publisher more
    CPU than it is fair to take from the broker, workers and database sharing this box. The value moves with each
    message (7.0, 7.1, ... 7.9): a healthy sensor, not a stuck one."""
    return {code: json.dumps({"ts": 0, "readings": [{"code": code, "metric": m, "value": 7.25}
                                                    for m in METRICS[:k]]}, separators=(",", ":"))
            .replace('"ts":0', '"ts":%d').replace("7.25", "7.%d").encode() for code in codes}


def rows_written(url: str) -> dict[str, int]:
    """Rows inserted and updated in latest_reading and device_state since the statistics began (with the
    database: setting it up writes some)."""
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            "select relname, (n_tup_ins + n_tup_upd)::bigint from pg_stat_user_tables "
            "where relname in ('latest_reading', 'device_state')").fetchall())


def _wait_stored(url: str, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last, still = -1, 0
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            count = conn.execute("select count(*) from reading").fetchone()[0]
        if count >= expected:
            return
        still = still + 1 if count == last else 0
        if still > 20:
            return  # nothing more is coming
        last = count
        time.sleep(0.5)


def _report(url: str, expected: int, k: int, published_s: float, sent: int, workers: int, repeated: int, monitor,
            publisher_cpu: float, protocol: str, handled: dict[str, float], rows_before: dict[str, int]) -> Figures:
    """``handled``: messages each worker took (its cost per message is its CPU over those); ``rows_before``: the
    tables' ``rows_written`` when publishing began (the statistics count from the database's creation)."""
    with psycopg.connect(url) as conn:
        count, first, last, percentiles, worst = conn.execute(
            """
            select count(*), min(received_at), max(received_at),
                   percentile_cont(array[0.5, 0.9, 0.99, 0.999]) within group (order by extract(epoch from
                       received_at - ts) * 1000),
                   max(extract(epoch from received_at - ts) * 1000)
              from reading
            """
        ).fetchone()
        distinct = conn.execute("select count(*) from (select distinct terminal_id, metric, ts from reading) s"
                                ).fetchone()[0]
        spikes = conn.execute(
            """
            select extract(epoch from date_trunc('second', ts)
                                      - (select date_trunc('second', min(ts)) from reading))::int,
                   max(extract(epoch from received_at - ts) * 1000)::int, count(*) / %(k)s
              from reading group by date_trunc('second', ts) order by 2 desc limit 5
            """, {"k": k}).fetchall()
    print(f"ingest workers: {workers} (MQTT {protocol})")
    print(f"published {sent} messages × {k} readings in {published_s:.1f} s from the first to the last "
          f"({sent / (published_s or 1e-9):,.0f} msg/s offered)")
    if not count:
        print(f"committed no readings: every message was refused or lost ({expected:,} readings expected); see the "
              f"workers' dead letters")
        return Figures(0.0, 0.0, 0.0, expected, 0)
    span = (last - first).total_seconds() or 1e-9
    p50, p90, p99, p999 = percentiles
    print(f"committed {count:,} readings in {span:.1f} s: {count / k / span:,.0f} messages/s, {count / span:,.0f} "
          f"readings/s sustained")
    print(f"publish→stored latency (received_at, the clock at the row's COPY): p50 {p50:.0f} ms, p90 {p90:.0f}, "
          f"p99 {p99:.0f}, p99.9 {p999:.0f}, max {worst:.0f} ms")
    print("  the 5 worst seconds of publishing (second of the run: max latency ms, messages): "
          + ", ".join(f"{at}: {ms} ({n:,})" for at, ms, n in spikes))
    print(f"lost {expected - count}, stored twice {count - distinct}, redelivered and skipped {repeated}")
    written = {table: rows - rows_before.get(table, 0) for table, rows in rows_written(url).items()}
    print(f"rows written per message (during the run): latest_reading {written['latest_reading'] / (count / k):.2f}, "
          f"device_state {written['device_state'] / (count / k):.2f}")
    wall = max(span, published_s)
    messages = count / k or 1
    for name, (cpu, rss) in monitor.results().items():
        own = handled.get(name) or messages
        print(f"  {name:25s} CPU {cpu:6.1f} s ({cpu / wall * 100:5.1f} % of one core)  peak RSS {rss / 2**20:7.1f} MiB"
              f"  {cpu / own * 1e6:6.1f} µs/message {cpu / own / k * 1e6:5.1f} µs/reading")
    print(f"  {'publishers':25s} CPU {publisher_cpu:6.1f} s ({publisher_cpu / wall * 100:5.1f} % of one core)")
    platform_cpu = sum(cpu for name, (cpu, _) in monitor.results().items() if name != "postgres (the rest)")
    print(f"  platform (workers, broker, this database's backends): {platform_cpu / messages * 1e6:.1f} µs/message, "
          f"{platform_cpu / (count or 1) * 1e6:.1f} µs/reading")
    return Figures(count / k / span, count / span, float(p99 or 0), expected - count, count - distinct)


class _CommitClock:
    """When each batch committed, heard on the workers' NOTIFY (delivered at commit): for each terminal of a batch
    the notice names its oldest reading, so ``now - that reading's ts`` is publish→committed for the oldest
    message of each terminal in each batch (every message, when a batch holds one message per terminal)."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute("listen ganzhi_readings")
        self._heard: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            for notice in self._conn.notifies(timeout=0.5):
                self._heard.append((time.time(), notice.payload))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()

    def report(self) -> None:
        import numpy as np

        latencies = [heard_s * 1000 - int(item.rsplit(":", 1)[1]) for heard_s, payload in self._heard
                     for item in payload.split("|", 1)[1].split(",")]
        if latencies:
            p50, p90, p99, p999 = np.percentile(latencies, [50, 90, 99, 99.9])
            print(f"publish→committed (NOTIFY heard, oldest message of each terminal in each batch; "
                  f"{len(latencies):,} of them): p50 {p50:.0f} ms, p90 {p90:.0f}, p99 {p99:.0f}, p99.9 {p999:.0f}, "
                  f"max {max(latencies):.0f} ms")


def _ceiling(port: int, pole: str, messages: int, k: int) -> None:
    """Raw broker→paho subscriber rate with the same payload size: the most any subscriber could take."""
    payload = json.dumps({"ts": 1, "readings": [{"code": "23120224000001D", "metric": m, "value": 7.0}
                                                for m in METRICS[:k]]}, separators=(",", ":")).encode()
    count = [0, 0.0, 0.0]  # received, first, last
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        count[0] += 1
        count[2] = time.monotonic()
        if count[0] == 1:
            count[1] = count[2]
        if count[0] >= messages:
            done.set()

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-ceiling-sub", protocol=paho.MQTTv5)
    sub.username_pw_set(*SERVICE)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("ganzhi/v1/+/telemetry", qos=1)  # not shared: the ingest workers are not running yet
    sub.loop_start()
    time.sleep(0.5)
    ctx = multiprocessing.get_context("spawn")
    publisher = ctx.Process(target=_raw_publish, args=(port, pole, payload, messages))
    publisher.start()
    done.wait(300)
    publisher.join()
    sub.disconnect()
    sub.loop_stop()
    rate = (count[0] - 1) / (count[2] - count[1]) if count[0] > 1 else 0.0
    print(f"ceiling: broker→paho subscriber {rate:,.0f} msg/s at QoS 1 ({len(payload)} B payloads, "
          f"{count[0]} of {messages} received)")


def _raw_publish(port: int, pole: str, payload: bytes, count: int) -> None:
    """The ceiling's publisher: a gateway login writing to its own topic."""
    die_with_parent(parent=multiprocessing.parent_process().pid)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=pole, protocol=paho.MQTTv5)
    client.username_pw_set(pole, SECRET)
    acked = threading.Semaphore(WINDOW)
    client.on_publish = lambda *args: acked.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for _ in range(count):
        acked.acquire()
        client.publish(f"ganzhi/v1/{pole}/telemetry", payload, qos=1)
    for _ in range(WINDOW):
        acked.acquire()
    client.disconnect()
    client.loop_stop()


class _Monitor:
    """CPU seconds and peak RSS of groups of processes, sampled every half second. A process that ends keeps
    the CPU it had at its last sample (a sum over the live ones would drop it, and could even go down)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = {name: _processes(pids) for name, pids in groups.items()}
        self.first = {name: self._cpu(ps) for name, ps in self.groups.items()}
        self.last = {name: dict(cpu) for name, cpu in self.first.items()}
        self.peak = dict.fromkeys(self.groups, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def results(self) -> dict[str, tuple[float, int]]:
        return {name: (sum(self.last[name][pid] - start for pid, start in self.first[name].items()),
                       self.peak[name]) for name in self.groups}

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self._take()

    def _take(self) -> None:
        for name, procs in self.groups.items():
            self.last[name].update(self._cpu(procs))
            self.peak[name] = max(self.peak[name], sum(_rss(p) for p in procs))

    @staticmethod
    def _cpu(procs) -> dict[int, float]:
        """CPU seconds of each process that still runs."""
        seconds = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            seconds[proc.pid] = times.user + times.system
        return seconds


def _processes(pids: list[int]) -> list[psutil.Process]:
    """Those of ``pids`` still running (a database backend listed a moment ago may have ended since)."""
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def _rss(proc) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _postgres_pids(url: str) -> tuple[list[int], list[int]]:
    """The server's backends connected to ``url``'s database, and all its other processes."""
    with psycopg.connect(url) as conn:
        backends = {pid for (pid,) in conn.execute(
            "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()")}
    everything = {p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")}
    return sorted(backends & everything), sorted(everything - backends)
