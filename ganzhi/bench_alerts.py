"""Alert benchmark: publish a violating reading → alert readable from the API, under background load,
through the real broker, ingest workers, rule worker and HTTP API; and the rule engine's own rate."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import paho.mqtt.client as paho
import psycopg
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion

from analytics.engine import Point
from analytics.rules import TerminalInfo, rules_for
from api.app import create_app
from core.broker import LocalBroker
from core.settings import Settings
from ganzhi.bench_ingest import SECRET, SERVICE, _ledger, _publish, _scraped
from ganzhi.benchkit import bench_token, drop_database, free_port, scratch_database
from ganzhi.broker_auth import platform_accounts, write_files
from ganzhi.children import dying_and_niced
from ganzhi.database import prepare
from registry import credentials, service
from registry.changes import Actor
from registry.models import TerminalIn

RULE_WORKERS = 2
"""Rule workers sharing the terminals (one per core of the 2-core reference box)."""
READINGS = 10
"""Readings a background message carries."""
MEASURE_S = 90.0
"""How long a run without probes (``find_max``) measures the rate stored: a sustained window, not a burst (over
30 s the quiet box stored 7,206 msg/s, over the 173 s run that followed at that rate 6,233, falling behind)."""
TOLERANCE = 0.05
"""``find_max`` stops when the highest rate kept up is within this share of the lowest one that fell behind."""
LAG_SPAN_S = 5.0
LAG_SETTLED_S = 5.0
"""The backlog at the end is measured over ``LAG_SPAN_S`` ending this long before the end: the readings of a batch
still being written (seconds, on a platform behind) are not visible yet, and the few that are would be those of
the small batches alone."""
BEHIND_S = 1.0
"""A backlog grown by this much over the timed part: the platform is not keeping up."""
WARM_UP_S = 20.0
"""The background runs this long after the warm-up probe before the timed probes: they measure the steady state,
not the backlog of a platform that has just started (every terminal judged for the first time, the ingest's first
batches), which the warm-up probe's own latency shows."""


def run(url: str, settings: Settings, rate: float, probes: int, warm_up_s: float = WARM_UP_S,
        profile: Path | None = None, measure_s: float = MEASURE_S) -> Sustained:
    """Returns what the platform sustained over the timed part. ``probes`` 0: no probes, the
    background alone for ``measure_s`` (a run offered more than the platform sustains measures its maximum).
    ``profile``: profile each rule worker's CPU time (``ganzhi analytics --profile``), its stats written to
    ``profile``/bench-rules-N.prof when it stops."""
    print(f"box: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; background {rate:,.0f} msg/s × 10 "
          f"readings; {settings.ingest_workers} ingest workers, {RULE_WORKERS} rule workers at nice "
          f"{settings.background_nice}; {probes} probes after {warm_up_s:.0f} s of warm-up")
    engine_rate()
    scratch = scratch_database(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-bench-alerts-"))
    root.chmod(0o755)
    processes: list[subprocess.Popen] = []
    try:
        prepare(scratch, settings)
        poles = _ledger(scratch, 4, 250, 10)
        detectors = _detectors(scratch, probes + 1)
        broker = LocalBroker(root / "mqtt", free_port(), auth_dir=root / "auth")
        with psycopg.connect(scratch) as conn:
            write_files(conn, root / "auth", platform_accounts(*SERVICE))
        asyncio.run(broker.start())
        env = dict(os.environ, DATABASE_URL=scratch, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                   GANZHI_MQTT_USERNAME=SERVICE[0], GANZHI_MQTT_PASSWORD=SERVICE[1], GANZHI_LOG_LEVEL="WARNING")
        ingest_ports = [free_port() for _ in range(settings.ingest_workers)]  # as `up` starts them
        processes += [subprocess.Popen([sys.executable, "-m", "ganzhi", "ingest", "--client-id", f"alerts-bench-{n}"],
                                       env=dict(env, GANZHI_METRICS_PORT=str(port)))
                      for n, port in enumerate(ingest_ports)]
        processes += [subprocess.Popen([sys.executable, "-m", "ganzhi", "analytics", "--name", f"bench-rules-{n}",
                                        *_profiled(profile, f"bench-rules-{n}")], env=env,
                                       preexec_fn=dying_and_niced(settings.background_nice))  # as `up` runs them
                      for n in range(RULE_WORKERS)]
        api_port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(Settings(), scratch), port=api_port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        time.sleep(3)
        ctx = multiprocessing.get_context("spawn")
        published: dict[str, tuple[float, float]] = {}
        # Enough to publish through the slowest run (the probes' 60 s timeouts on a loaded box); the publishers
        # are stopped after the probes, and the rate stored is measured only while they publish.
        planned_s = probes * 3 + 60 + warm_up_s + (0 if probes else measure_s)
        per_gateway = int(rate / len(poles) * planned_s)
        cpu_used = ctx.Queue()
        background = [ctx.Process(target=_publish, args=(broker.port, pole, codes, per_gateway, READINGS,
                                                         rate / len(poles), cpu_used))
                      for pole, codes in poles.items()]
        for p in background:
            p.start()
        publishing_until = time.time() + planned_s
        time.sleep(5)
        headers = bench_token(scratch, "bench-operator", ["operator"], "zjj")  # receives the housing (gas) alerts
        # Until the ingest and rule workers are up (a message published before the ingest subscribed is not
        # delivered), the warm-up probe is published again every 10 s.
        tracer = _Tracer(ctx, scratch, detectors[1:])
        warm_up = next((found for _ in range(12) if (found := _probe(broker.port, api_port, headers, detectors[:1],
                                                                     timeout_s=10))), [])
        print(f"warm-up probe (backlog from start-up): {warm_up[0]:.0f} ms" if warm_up else "warm-up probe lost")
        time.sleep(warm_up_s)
        began = time.time()
        latencies = _probe(broker.port, api_port, headers, detectors[1:], published) if probes else []
        if not probes:
            time.sleep(measure_s)
        sustained = Sustained.measure(scratch, rate, began, min(time.time(), publishing_until))
        for p in background:
            p.terminate()
        heard = tracer.stop()
        server.should_exit = True
        sustained.report()
        _print_ingest(ingest_ports)
        if not probes:
            print_rule_counters(scratch, [p.pid for p in processes[-RULE_WORKERS:]])
            return sustained
        if latencies:
            print(f"publish → alert readable from the API at {rate:,.0f} msg/s, {len(latencies)} of {probes} probes: "
                  f"p50 {np.percentile(latencies, 50):.0f} ms, p99 {np.percentile(latencies, 99):.0f} ms, "
                  f"missed {probes - len(latencies)}")
        else:
            print(f"publish → alert readable from the API at {rate:,.0f} msg/s: every probe missed ({probes})")
        stored = _stored_to_alert(scratch, detectors[1:])
        if stored:
            print(f"reading stored → alert opened (the rule workers' part, database clock), {len(stored)} probes: "
                  f"p50 {np.percentile(stored, 50):.0f} ms, p99 {np.percentile(stored, 99):.0f} ms")
        _print_stages(_stages(scratch, detectors[1:], published, heard))
        print_rule_counters(scratch, [p.pid for p in processes[-RULE_WORKERS:]])
        return sustained
    finally:
        for p in processes:
            p.terminate()
        for p in processes:  # an ingest worker writing a batch of thousands of messages may take longer
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if "broker" in locals():
            asyncio.run(broker.stop())
        drop_database(url, scratch)
        shutil.rmtree(root, ignore_errors=True)


def find_max(url: str, settings: Settings, high: float, measure_s: float = MEASURE_S, steps: int = 5,
             warm_up_s: float = WARM_UP_S) -> float | None:
    """The platform's maximum with the rule workers: the highest rate offered that it sustained (``kept_up``:
    stored ≈ offered, the backlog not growing) over a window of ``measure_s``, found by bisecting sustained
    windows without probes (each run on a fresh database). ``high`` must be more than it sustains: the first
    window offers it, the second what it stored then (an overloaded ingest writes huge batches and stores less
    than its maximum), less 3 %; then halves the bracket until the rate kept up is within ``TOLERANCE`` of the
    one that fell behind or ``steps`` windows have run. None: the platform kept up with ``high`` (offer more)
    or with none of the rates tried."""
    kept, fell = 0.0, high
    rate = high
    for step in range(steps):
        print(f"-- find-max window {step + 1} of at most {steps}: offering {rate:,.0f} msg/s for {measure_s:.0f} s "
              f"(kept up with {kept:,.0f}, fell behind at {fell:,.0f} so far)")
        sustained = run(url, settings, rate, 0, warm_up_s, measure_s=measure_s)
        if sustained.kept_up:
            if rate >= high:
                return None
            kept = rate
        else:
            fell = rate
        if kept and (fell - kept) <= TOLERANCE * fell:
            break
        rate = (kept + fell) / 2 if kept else min(0.97 * sustained.stored, 0.9 * fell)
        rate = round(rate, -1)
    print(f"-- the platform's maximum with {RULE_WORKERS} rule workers, sustained over {measure_s:.0f} s: "
          f"{kept:,.0f} msg/s (fell behind at {fell:,.0f})" if kept else
          f"-- kept up with none of the rates tried (the lowest {fell:,.0f} msg/s)")
    return kept or None


@dataclass(frozen=True)
class Sustained:
    """What the platform kept up with over the timed part of a run (the rule workers running): messages stored a
    second (their readings' ``received_at``, the ingest transaction's start, in [began, ended)), and the backlog
    (publish → ingest transaction, the readings' ``ts`` being their publish time) at its start and at its end. A
    backlog that grows means the rate offered is more than the platform sustains, and the rate stored is then the
    platform's maximum on this box (ingest, rule workers, broker, API and publishers sharing it)."""

    offered: float
    stored: float
    lag_start_s: float
    lag_end_s: float
    seconds: float
    lag_p50_s: float
    lag_p99_s: float
    """Publish → ingest transaction of every background reading stored over the timed part."""

    @classmethod
    def measure(cls, url: str, offered: float, began: float, ended: float) -> Sustained:
        with psycopg.connect(url) as conn:
            count, quantiles = conn.execute(
                "select count(*), percentile_cont(array[0.5, 0.99]) within group (order by extract(epoch from "
                "received_at - ts)) from reading where received_at >= to_timestamp(%s) and received_at < "
                "to_timestamp(%s)", (began, ended)).fetchone()
            lags = [conn.execute("select coalesce(extract(epoch from avg(received_at - ts)), 0) from reading "
                                 "where received_at >= to_timestamp(%s) and received_at < to_timestamp(%s)",
                                 (start, start + LAG_SPAN_S)).fetchone()[0]
                    for start in (began, ended - LAG_SPAN_S - LAG_SETTLED_S)]
        p50, p99 = quantiles or (0.0, 0.0)
        return cls(offered, count / READINGS / (ended - began), float(lags[0]), float(lags[1]), ended - began,
                   float(p50), float(p99))

    @property
    def kept_up(self) -> bool:
        return self.stored >= 0.97 * self.offered and self.lag_end_s - self.lag_start_s < BEHIND_S

    def report(self) -> None:
        verdict = (f"kept up: the platform's maximum with {RULE_WORKERS} rule workers is at least {self.stored:,.0f}"
                   if self.kept_up else
                   f"FELL BEHIND: the platform's maximum with {RULE_WORKERS} rule workers is {self.stored:,.0f} "
                   f"msg/s on this box now (the rate stored while offered more)")
        print(f"sustained over the timed {self.seconds:.0f} s: stored {self.stored:,.0f} of {self.offered:,.0f} msg/s "
              f"offered; backlog (publish → ingest transaction, mean of {LAG_SPAN_S:.0f} s) {self.lag_start_s:.2f} s "
              f"at the start, {self.lag_end_s:.2f} s {LAG_SETTLED_S:.0f} s before the end (every reading: p50 "
              f"{self.lag_p50_s * 1000:.0f} ms, p99 {self.lag_p99_s * 1000:.0f} ms); {verdict}")


def _print_ingest(ports: list[int]) -> None:
    """Each ingest worker's batches over the whole run (its /metrics): the part of publish → ingest transaction
    spent in the worker is the wait for the batch in hand to commit, then the batch's own ``batch_wait_s``."""
    for n, port in enumerate(ports):
        batches = _scraped(port, "ganzhi_ingest_batches_total") or 1
        messages = _scraped(port, "ganzhi_ingest_messages_total")
        commit, waited = (_scraped(port, f"ganzhi_ingest_{name}_seconds_sum") / batches * 1000
                          for name in ("commit", "receive_to_commit"))
        print(f"  ingest {n + 1}: {batches:,.0f} batches of {messages / batches:,.0f} messages, judged and committed "
              f"in {commit:.0f} ms, first message received to commit {waited:.0f} ms (means)")


def _profiled(profile: Path | None, name: str) -> list[str]:
    """The rule worker's options that profile it, its stats going to ``profile``/``name``.prof."""
    if profile is None:
        return []
    profile.mkdir(parents=True, exist_ok=True)
    return ["--profile", str(profile / f"{name}.prof")]


def _stored_to_alert(url: str, detectors: list[str]) -> list[float]:
    """Per probe, from its reading's commit-time arrival to its alert's opening, in ms."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            select extract(epoch from a.opened_at - min(r.received_at)) * 1000
              from terminal t join reading r on r.terminal_id = t.id join alert a on a.terminal_id = t.id
             where t.code = any(%s) and a.rule = 'gas:methane'
             group by t.id, a.id
            """,
            (detectors,),
        ).fetchall()
    return [float(ms) for (ms,) in rows]


def _detectors(url: str, count: int) -> list[str]:
    with psycopg.connect(url) as conn:
        codes = [service.create_terminal(conn, TerminalIn(name=f"probe {i}", kind="methane_detector",
                                                          lon=126.98 + i * 1e-4, lat=46.65), Actor("bench"))
                 for i in range(count)]
        credentials.store(conn, [(c, credentials.hash_secret(SECRET)) for c in codes], "bench")
        conn.commit()
    return codes


def _probe(broker_port: int, api_port: int, headers: dict[str, str], detectors: list[str],
           published: dict[str, tuple[float, float]] | None = None, timeout_s: float = 60) -> list[float]:
    """Publish a violating reading from each detector in turn, polling the API for its alert; ``published``
    gets each detector's (publish, readable) wall-clock times."""
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10, headers=headers) as api:
        for code in detectors:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=code, protocol=paho.MQTTv311)
            client.username_pw_set(code, SECRET)
            client.connect("127.0.0.1", broker_port)
            client.loop_start()
            payload = json.dumps({"ts": int(time.time() * 1000), "readings": [{"metric": "methane_lel", "value": 60}]})
            started, sent = time.perf_counter(), time.time()
            client.publish(f"ganzhi/v1/{code}/telemetry", payload, qos=1).wait_for_publish(10)
            while time.perf_counter() - started < timeout_s:
                try:
                    found = api.get("/api/v1/alerts", params={"status": "open", "terminal": code}).json()["data"]
                except httpx.TimeoutException:  # an API slow to answer on a loaded box: the probe is only late
                    continue
                if found:
                    latencies.append((time.perf_counter() - started) * 1000)
                    if published is not None:
                        published[code] = (sent, time.time())
                    break
                time.sleep(0.02)
            client.disconnect()
            client.loop_stop()
            time.sleep(0.3)
    return latencies


def engine_rate() -> None:
    """Readings judged per second by the rules of a river station (9 metrics, GB 3838 + device health)."""
    info = TerminalInfo(1, "x", "water_quality_station", "sthjj", "231202", None, 126.9, 46.5, 1800,
                        ("w01001", "w01009", "w01010", "w01003", "w01014", "w01019", "w21003", "w21011", "w21001"),
                        {"river": "呼兰河", "chainage_km": 100, "target_class": "III"})
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    series = {m: [Point(start + dt.timedelta(minutes=30 * i), 1.0 + (i % 7) * 0.2) for i in range(2000)]
              for m in info.metrics}
    rules = rules_for(info)
    began = time.perf_counter()
    judged = sum(len(series[r.metric]) for r in rules if r.evaluate(series) is not None)
    elapsed = time.perf_counter() - began
    print(f"rule engine: {judged / elapsed:,.0f} readings judged/s ({len(rules)} rules on one core)")


# -- where a probe's time goes -------------------------------------------------------------------------------

STAGES = ("publish → ingest transaction", "ingest transaction → commit", "commit → rule chunk starts",
          "chunk starts → alert committed", "alert committed → read from the API")
"""A probe's path, stage by stage: the ingest's transaction start is its readings' ``received_at``, the commits
are heard as the NOTIFY each one sends (``ganzhi_readings``, ``alert_feed``), a chunk's start is its alert's
``opened_at`` (the chunk transaction's ``now()``); all on the box's one clock."""


class _Tracer:
    """A process of its own (the API shares this one's interpreter) listening to both NOTIFY channels and
    noting when each probe terminal's readings and every alert feed entry were committed."""

    def __init__(self, ctx, url: str, detectors: list[str]) -> None:
        with psycopg.connect(url) as conn:
            ids = [tid for (tid,) in conn.execute("select id from terminal where code = any(%s)", (detectors,))]
        self._done, self._heard = ctx.Event(), ctx.Queue()
        self._process = ctx.Process(target=_listen, args=(url, ids, self._done, self._heard), daemon=True)
        self._process.start()

    def stop(self) -> tuple[dict[int, float], dict[int, float]]:
        self._done.set()
        heard = self._heard.get(timeout=30)
        self._process.join(10)
        return heard


def _listen(url: str, terminal_ids: list[int], done, heard) -> None:
    from analytics.worker import parse
    from ingest.writer import READINGS_CHANNEL

    probes, readings, feed = set(terminal_ids), {}, {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"listen {READINGS_CHANNEL}")
        conn.execute("listen alert_feed")
        while not done.is_set():
            for note in conn.notifies(timeout=0.2):
                at = time.time()
                if note.channel == "alert_feed":
                    feed[int(note.payload)] = at
                    continue
                for terminal_id in probes.intersection(parse(note.payload)[1]):
                    readings.setdefault(terminal_id, at)
    heard.put((readings, feed))


def _stages(url: str, detectors: list[str], published: dict[str, tuple[float, float]],
            heard: tuple[dict[int, float], dict[int, float]]) -> dict[str, list[float]]:
    """Per probe that was read from the API and heard at both commits, each stage's share in ms."""
    readings, feed = heard
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            select t.code, t.id, extract(epoch from (select min(r.received_at) from reading r
                                                      where r.terminal_id = t.id)),
                   extract(epoch from a.opened_at),
                   (select array_agg(f.id) from alert_feed f where f.alert_id = a.id)
              from terminal t join alert a on a.terminal_id = t.id and a.rule = 'gas:methane'
             where t.code = any(%s)
            """,
            (detectors,),
        ).fetchall()
    found: dict[str, list[float]] = {}
    for code, terminal_id, received, opened, feed_ids in rows:
        committed = min((feed[f] for f in feed_ids or [] if f in feed), default=None)
        if code not in published or terminal_id not in readings or committed is None:
            continue
        sent, read = published[code]
        marks = [sent, float(received), readings[terminal_id], float(opened), committed, read]
        found[code] = [(b - a) * 1000 for a, b in itertools.pairwise(marks)]
    return found


def _print_stages(stages: dict[str, list[float]]) -> None:
    if not stages:
        print("stages: no probe was heard at both commits")
        return
    table = np.array(list(stages.values()))
    print(f"where the time goes ({len(stages)} probes), ms p50 / p99 / max:")
    for name, column in zip(STAGES, table.T, strict=True):
        print(f"  {name:<38} {np.percentile(column, 50):7.0f} {np.percentile(column, 99):7.0f} {column.max():7.0f}")
    slowest = sorted(stages.items(), key=lambda item: -sum(item[1]))[:3]
    for code, parts in slowest:
        print(f"  slowest {code}: " + ", ".join(f"{p:.0f}" for p in parts) + f" (total {sum(parts):.0f} ms)")


def print_rule_counters(url: str, workers: list[int]) -> None:
    """The rule workers' counters as their last heartbeat has them (at most 5 s old), their CPU per reading, and
    their processes' CPU in all (``workers``: their process ids), the start-up, the notifications and the loop
    between chunks included."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select name, counters from service_heartbeat where kind = 'rules' order by name"
                            ).fetchall()
        stored = conn.execute("select count(*) from reading").fetchone()[0]
    for name, counters in rows:
        print(f"  {name}: " + ", ".join(f"{key} {value:,}" for key, value in sorted(counters.items())))
    cpu = sum(counters.get("rules_cpu_seconds", 0) for _, counters in rows)
    read = sum(counters.get("rules_rows_read", 0) for _, counters in rows)
    if read:
        print(f"  rule workers' CPU (their threads judging, the database's share apart): {cpu:.1f} s, "
              f"{cpu / read * 1e6:.1f} µs per reading read, {cpu / max(1, stored) * 1e6:.1f} µs per reading stored")
    total = sum(_process_cpu(pid) for pid in workers)
    print(f"  rule worker processes' CPU in all: {total:.1f} s, "
          f"{total / max(1, stored) * 1e6:.1f} µs per reading stored")


def _process_cpu(pid: int) -> float:
    """A live process's user and system CPU seconds (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
