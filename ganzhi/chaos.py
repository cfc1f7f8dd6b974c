"""`ganzhi bench chaos`: faults injected into a running platform, with figures.

Starts its own platform on free ports: an embedded PostgreSQL and a mosquitto that this
command owns (so that it can restart them), and `ganzhi up --no-simulate` against them
(ingest workers, rule worker, HJ 212 gateways, fire worker, API). Then, per fault, it runs
the simulators for a window, injects the fault a third of the way in (kill -9 of one
service process, or a restart of PostgreSQL or the broker), and prints:

- load: MQTT messages per second the simulators published (the demo fleet at ``--speed``);
- published: MQTT readings the simulators had acknowledged by the broker (their own count),
  and HJ 212 packets the gateway answered;
- stored: readings in the database with a publish time inside the window; lost: readings of the messages the
  broker acknowledged (each identified by terminal, metric and time, as the simulators recorded them) that are
  not in the database;
- redelivered: readings that came again (a message redelivered after a kill) and were skipped as stored
  before, from the ingest workers' and gateways' /metrics (a reading cannot be stored twice: the
  reading's primary key is (terminal, metric, time));
- events, alerted, twice: the pollution events the simulators injected (their ground-truth file), those
  that opened an alert, and alerts opened twice for one event (the same terminal and rule opened again
  within the event: what a replayed or restarted rule worker could do); the previous window's alerts
  are closed first, so that each window raises its own;
- recovery: seconds from the fault until the replacement process runs and has written its heartbeat
  (for the servers: until they answer) and readings are committed again.

The API and the broker sync run inside `ganzhi up` itself (uvicorn and an asyncio task; here the broker is
this command's, so `up` runs no sync): their fault is a kill -9 of `up`, which takes its workers down with
it; this command then starts `up` again, as the service manager of a deployment would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from core.broker import LocalBroker
from core.embedded import EmbeddedPostgres
from core.lifeline import dying_with_parent
from core.settings import Settings
from ganzhi.benchkit import free_port
from ganzhi.broker_auth import platform_accounts, write_files
from ganzhi.database import prepare
from registry import demo
from registry.changes import Actor
from simulators import truth
from simulators.faults import Fault

KILLS = {
    "ingest worker": ("ganzhi ingest", "ingest"),
    "rule worker": ("ganzhi analytics", "rules"),
    "HJ 212 gateway": ("ganzhi hj212", "hj212"),
    "fire worker": ("ganzhi fire", "fire"),
    "dispatch sweep": ("ganzhi dispatch-sweep", "dispatch"),
    "delivery worker": ("ganzhi deliver", "deliver"),
    "maintenance": ("ganzhi maintain", "maintenance"),
}
"""Fault name → (command line of the process killed, heartbeat kind of its replacement)."""
UP = "API (ganzhi up)"
"""kill -9 of `up`: the API and the broker sync, and with them every worker (they die with their parent)."""
RESTARTS = ("PostgreSQL", "broker")
FAULTS = (*KILLS, UP, *RESTARTS)
SERVICE_USER = "ganzhi-ingest"
RECOVERY_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 30.0
JUDGED_TIMEOUT_S = 60.0
REDELIVERED = "ganzhi_ingest_readings_repeated_total"
"""The MQTT ingest workers' readings that came again and were stored before (the HJ 212 gateways count theirs
too, but there a logger's minute and hourly packets can carry a time its real-time packets stored: no fault needed)."""
METRICS_PORTS = 16
"""`up` gives its n-th child GANZHI_METRICS_PORT + n; this many are scraped (there are fewer children)."""
GOAL_RECOVERY_S = 10.0
DRAIN_TIMEOUT_S = 90.0


@dataclass
class Figures:
    fault: str
    load: float
    published: int
    stored: int
    redelivered: int
    hj212_answered: int
    hj212_stored: int
    events: int
    alerted: int
    twice: int
    recovery_s: float | None
    lost: int

    @property
    def recovered(self) -> bool:
        return self.recovery_s is not None and self.recovery_s <= GOAL_RECOVERY_S

    def line(self) -> str:
        recovery = f"{self.recovery_s:5.1f} s" if self.recovery_s is not None else "  none"
        return (f"{self.fault:<16} {self.load:>6.0f} {self.published:>9} {self.stored:>9} {self.lost:>5} "
                f"{self.redelivered:>6} {self.hj212_answered:>8} {self.hj212_stored:>8} {self.events:>6} "
                f"{self.alerted:>7} {self.twice:>5}   {recovery}")


HEADER = (f"{'fault':<16} {'msg/s':>6} {'published':>9} {'stored':>9} {'lost':>5} {'redeli':>6} {'HJ212 ok':>8} "
          f"{'HJ212 in':>8} {'events':>6} {'alerted':>7} {'twice':>5}   recovery")


class Platform:
    """The database and broker this command owns, and `ganzhi up` running against them."""

    def __init__(self, settings: Settings) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ganzhi-chaos-"))
        self.root.chmod(0o755)  # the embedded server's own user must be able to enter it when we are root
        self.ports = {"pg": listen_port(), "mqtt": listen_port(), "metrics": listen_port()}
        self.postgres = EmbeddedPostgres(self.root / "pgdata", self.ports["pg"])
        self.broker = LocalBroker(self.root / "mqtt", self.ports["mqtt"], auth_dir=self.root / "auth")
        self.demo_secret = secrets.token_urlsafe(24)
        self.service_password = secrets.token_urlsafe(24)
        self.settings = settings
        self.up: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        self.url = self.postgres.start()
        prepare(self.url, self.settings)
        with psycopg.connect(self.url) as conn:
            demo.load(conn, Actor("chaos"), self.demo_secret)
            write_files(conn, self.root / "auth", platform_accounts(SERVICE_USER, self.service_password))
        asyncio.run(self.broker.start())
        self.ports.update(http=listen_port(), hj212=listen_port())
        self.start_up()
        self._wait_healthy()

    def start_up(self) -> None:
        """`ganzhi up --no-simulate`, its children's /metrics on GANZHI_METRICS_PORT + n; its log appended to."""
        env = {**self.env, "GANZHI_METRICS_PORT": str(self.ports["metrics"])}
        with (self.root / "up.log").open("a") as log:
            self.up = subprocess.Popen([sys.executable, "-m", "ganzhi", "up", "--no-simulate"], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, preexec_fn=dying_with_parent())

    def metrics_ports(self) -> range:
        return range(self.ports["metrics"] + 1, self.ports["metrics"] + 1 + METRICS_PORTS)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.url, "MQTT_URL": f"mqtt://127.0.0.1:{self.ports['mqtt']}",
                    "GANZHI_MQTT_USERNAME": SERVICE_USER, "GANZHI_MQTT_PASSWORD": self.service_password,
                    "GANZHI_DEMO_SECRET": self.demo_secret, "GANZHI_VAR_DIR": str(self.root / "var"),
                    "GANZHI_HTTP_PORT": str(self.ports["http"]), "GANZHI_HJ212_PORT": str(self.ports["hj212"])})
        return env

    def stop(self) -> None:
        if self.up is not None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(120)
            except subprocess.TimeoutExpired:
                self.up.kill()
        asyncio.run(self.broker.stop())
        self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.up.poll() is not None:
                raise RuntimeError(f"ganzhi up exited:\n{(self.root / 'up.log').read_text()[-3000:]}")
            if self.answers():
                return
            time.sleep(0.5)
        raise RuntimeError("the platform did not become healthy")

    def answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.ports['http']}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def listen_port() -> int:
    """A free port below Linux's ephemeral range: on a busy box, a port from that range (what binding port 0
    gives) is soon the local end of someone's outgoing connection, and `up` then finds it taken."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(100):
        port = random.randrange(max(1024, low - 12_000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def run(settings: Settings, speed: float, window_s: float, faults: tuple[str, ...]) -> list[Figures]:
    """Start a platform, run a quiet window and then one window per fault; print and return the figures."""
    platform = Platform(settings)
    results = []
    try:
        platform.start()
        print(HEADER)
        for seed, fault in enumerate(("none", *faults), start=1):
            figures = window(platform, fault, speed, window_s, seed)
            print(figures.line(), flush=True)
            results.append(figures)
    finally:
        platform.stop()
    return results


def window(platform: Platform, fault: str, speed: float, window_s: float, seed: int = 1) -> Figures:
    """Simulators for ``window_s`` seconds (up to RECOVERY_TIMEOUT_S more for a kill of `up`, whose restart takes
    longer than a window: recovery counts readings committed again, so they must still be sent), the fault a third
    of the way in; then count. Each window's ``seed`` gives other devices their pollution events (an event lasts
    simulated hours: with one seed for all, every window would see the same events going on, alerted once, in
    the first). The simulators stop themselves (``--duration``): stopped by a signal while still
    connecting on a loaded box, they once took over 120 s to exit. Only a window stretched for a recovery is
    ended sooner, by SIGTERM (the same stop as ``--duration``'s, long after connecting): ``window_s / 3`` after
    the recovery, as much traffic after it as a window has before its fault (the whole stretch ran every time:
    tests/test_chaos.py took 129 s before, 75 s after, at load 15–20 on 2026-12-01)."""
    _close_alerts(platform.url)
    truth_file = platform.root / f"truth-{secrets.token_hex(4)}.jsonl"
    acked_file = truth_file.with_name(truth_file.name.replace("truth", "acked"))
    repeated_before = _repeated(platform.metrics_ports())
    began = _now(platform.url)
    duration_s = window_s + (RECOVERY_TIMEOUT_S if fault == UP else 0.0)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "ganzhi", "simulate", "--speed", str(speed), "--ramp", "2", "--fault", "pollution",
         "--duration", str(duration_s), "--fault-share", "0.03", "--truth", str(truth_file),
         "--acked", str(acked_file), "--seed", str(seed)],
        env=platform.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=dying_with_parent())
    started = time.monotonic()
    time.sleep(window_s / 3)
    recovery = None if fault == "none" else inject(platform, fault)
    if duration_s > window_s and recovery is not None:
        _end_stretch(simulator, started, window_s, duration_s)
    summary = simulator.communicate(timeout=duration_s + 120)[0]
    ran_s = time.monotonic() - started
    ended = _now(platform.url)
    messages, published, answered = _published(summary)
    stored, hj212_stored = _drained(platform.url, began, ended, published)
    redelivered = _redelivered(repeated_before, _repeated(platform.metrics_ports()))
    events = _events_begun(truth_file, ended)
    _wait_judged(platform.url, began)
    alerted, twice = alerts_per_event(events, _opened(platform.url, began))
    lost = len(acked_readings(acked_file) - _stored_identities(platform.url, began, ended))
    return Figures(fault, messages / ran_s, published, stored, redelivered, answered, hj212_stored, len(events),
                   alerted, twice, recovery, lost)


def _end_stretch(simulator: subprocess.Popen, started: float, window_s: float, duration_s: float) -> None:
    """Stop the simulators of a window stretched for a recovery, just seen, ``window_s / 3`` after it (and not
    before ``window_s``); unless their own ``--duration`` ends them first."""
    end = max(window_s, time.monotonic() - started + window_s / 3)
    if end >= duration_s:
        return
    time.sleep(max(0.0, end - (time.monotonic() - started)))
    if simulator.poll() is None:
        simulator.send_signal(signal.SIGTERM)


def _close_alerts(url: str) -> None:
    """Close what the previous window raised (the same demo devices pollute in every window), so that each
    window's pollution events open alerts of their own."""
    with psycopg.connect(url) as conn:
        conn.execute("update alert set status = 'closed', observed_end = coalesce(observed_end, now()) "
                     "where status in ('open', 'acknowledged')")


def inject(platform: Platform, fault: str) -> float | None:
    """Cause the fault; seconds until the component is back and readings are committed again."""
    at = time.monotonic()
    kind, pattern, before = None, "", set()
    if fault == UP:
        _restart_up(platform)
    elif fault == "PostgreSQL":
        platform.postgres.stop()
        platform.postgres.start()
    elif fault == "broker":
        asyncio.run(platform.broker.stop())
        asyncio.run(platform.broker.start())
    else:
        pattern, kind = KILLS[fault]
        before = _processes(platform.up.pid, pattern)
        os.kill(min(before), signal.SIGKILL)
    since = _now(platform.url)
    deadline = at + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        replaced = kind is None or (_processes(platform.up.pid, pattern) - before
                                    and _beating(platform.url, kind, since))
        if replaced and (fault != UP or platform.answers()) and _flowing(platform.url, since):
            return time.monotonic() - at
        time.sleep(0.2)
    return None


def _restart_up(platform: Platform) -> None:
    """kill -9 of `up`; once its workers are gone (they get SIGTERM when it dies), `up` again, as a service manager
    would start it (before that, the new one would find the HJ 212 port still taken)."""
    workers = _descendants(platform.up.pid)
    platform.up.kill()
    platform.up.wait()
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"  (up's workers gone {GONE_TIMEOUT_S - deadline + time.monotonic():.1f} s after the kill of up; "
          f"starting it again)", flush=True)
    platform.start_up()


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (not zombies)."""
    found = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state != "Z":
            found.add(pid)
    return found


def _processes(root: int, pattern: str) -> set[int]:
    """The live processes below ``root`` whose command line contains ``pattern``."""
    found = set()
    for pid in _descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if pattern in command:
            found.add(pid)
    return found


def _descendants(root: int) -> set[int]:
    parents_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents_of.items() if parent in frontier} - found
        found |= frontier
    return found


def _now(url: str) -> dt.datetime:
    for _ in range(600):  # through a restart of the server
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                return conn.execute("select clock_timestamp()").fetchone()[0]
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError("the database did not come back within a minute")


def _flowing(url: str, since: dt.datetime) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("select exists (select 1 from reading where received_at > %s)", (since,)).fetchone()[0]
    except psycopg.OperationalError:
        return False


def _beating(url: str, kind: str, since: dt.datetime) -> bool:
    """A process of ``kind`` started after ``since`` has written its heartbeat; true when the kind writes none
    (services not yet on core/runtime: then the replacement process running is what counts)."""
    with psycopg.connect(url, connect_timeout=2) as conn:
        kinds = conn.execute("select count(*) from service_heartbeat where kind = %s", (kind,)).fetchone()[0]
        if not kinds:
            return True
        return conn.execute("select exists (select 1 from service_heartbeat where kind = %s and started_at > %s "
                            "and state = 'running')", (kind, since)).fetchone()[0]


_SUMMARY = re.compile(r"published (\d+) messages, (\d+) readings.*sent (\d+) packets, (\d+) refused", re.S)


def _published(summary: str) -> tuple[int, int, int]:
    """MQTT messages and readings acknowledged by the broker, and HJ 212 packets answered, from the simulators'
    own count."""
    found = _SUMMARY.search(summary)
    if found is None:
        raise RuntimeError(f"the simulators printed no summary: {summary[-500:]!r}")
    return int(found[1]), int(found[2]), int(found[3]) - int(found[4])


_STORED = """
select count(*) filter (where t.protocol <> 'hj212'),
       count(distinct (r.terminal_id, r.ts)) filter (where t.protocol = 'hj212')
  from reading r join terminal t on t.id = r.terminal_id
 where r.ts between %(began)s and %(ended)s
"""


def _drained(url: str, began: dt.datetime, ended: dt.datetime, published: int) -> tuple[int, int]:
    """MQTT readings and HJ 212 (logger, time) pairs stored, once the platform has caught up (nothing new for
    5 s)."""
    window = {"began": began - dt.timedelta(seconds=1), "ended": ended + dt.timedelta(seconds=1)}
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last, steady_since = None, time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            counts = conn.execute(_STORED, window).fetchone()
            if counts != last:
                last, steady_since = counts, time.monotonic()
            elif counts[0] >= published or time.monotonic() - steady_since > 5:
                break
            time.sleep(0.5)
    return last[0], last[1]


def acked_readings(path: Path) -> set[tuple[str, str, int]]:
    """(terminal code, metric, time in ms) of every reading in the messages the simulators recorded as acknowledged
    (a pole's readings name their terminal; a lone device's are its own)."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        try:
            body = json.loads(message["payload"])
            found |= {(r.get("code", message["publisher"]), r["metric"], body["ts"]) for r in body["readings"]}
        except (ValueError, KeyError, TypeError):  # malformed on purpose: nothing to store
            continue
    return found


def _stored_identities(url: str, began: dt.datetime, ended: dt.datetime) -> set[tuple[str, str, int]]:
    with psycopg.connect(url) as conn:
        return set(conn.execute(
            "select t.code, r.metric, (extract(epoch from r.ts) * 1000)::bigint from reading r "
            "join terminal t on t.id = r.terminal_id "
            "where t.protocol <> 'hj212' and r.ts between %(began)s and %(ended)s",
            {"began": began - dt.timedelta(seconds=1), "ended": ended + dt.timedelta(seconds=1)}).fetchall())


def _repeated(ports: range) -> dict[int, tuple[float, float]]:
    """Per metrics port that answers: its process's start time and the readings it skipped as stored before."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for port in ports:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        started = next((s.value for s in samples if s.name == "process_start_time_seconds"), 0.0)
        found[port] = (started, sum(s.value for s in samples if s.name == REDELIVERED))
    return found


def _redelivered(before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]) -> int:
    """Readings skipped as stored before during the window: a process started since counts from zero."""
    total = 0.0
    for port, (started, repeated) in after.items():
        earlier = before.get(port)
        total += repeated - (earlier[1] if earlier and earlier[0] == started else 0.0)
    return int(total)


def _events_begun(path: Path, ended: dt.datetime) -> list[truth.Truth]:
    """The pollution events the simulators injected that began before the window ended (the ground truth holds a
    day of simulated time)."""
    if not path.exists():
        return []
    return [t for t in truth.load(path) if t.kind is Fault.pollution and t.start < ended]


def _wait_judged(url: str, began: dt.datetime) -> None:
    """Until every rule worker has taken what arrived (its watermark past the window's last reading), or a minute:
    a restarted rule worker catches up after the readings are stored."""
    deadline = time.monotonic() + JUDGED_TIMEOUT_S
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("select (select min(received_at) from rule_watermark) >= "
                            "(select max(received_at) from reading where ts >= %(began)s)",
                            {"began": began}).fetchone()[0]:
                return
            time.sleep(0.5)


def _opened(url: str, since: dt.datetime) -> list[tuple[str, str, dt.datetime]]:
    """(terminal code, rule, time) of every alert opened since ``since``."""
    with psycopg.connect(url) as conn:
        return conn.execute("select t.code, a.rule, e.at from alert_event e join alert a on a.id = e.alert_id "
                            "join terminal t on t.id = a.terminal_id where e.action = 'open' and e.at >= %(since)s",
                            {"since": since}).fetchall()


def alerts_per_event(events: list[truth.Truth], opened: list[tuple[str, str, dt.datetime]]) -> tuple[int, int]:
    """Of the injected events, how many opened an alert, and how many alerts were opened twice for one event: on a
    terminal with n events, a rule opening more than n alerts (counted whenever they opened: a rule worker
    catching up after a fault opens them late)."""
    per_terminal = Counter(event.terminal for event in events)
    opens = Counter((code, rule) for code, rule, _ in opened if code in per_terminal)
    alerted = twice = 0
    for terminal, n in per_terminal.items():
        per_rule = [count for (code, _), count in opens.items() if code == terminal]
        alerted += min(n, max(per_rule, default=0))
        twice += sum(max(0, count - n) for count in per_rule)
    return alerted, twice
