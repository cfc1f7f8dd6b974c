"""Alert quality end to end: the alerts STORED by the rule workers scored against a simulator's ground truth file,
with the in-process bench's scoring (``bench_alert_quality._score``: strict and loose precision, recall, time to
alert), and a live run that makes both: the demo ledger on a scratch database, a mosquitto with the ledger's
logins, an ingest worker, an HJ 212 gateway and a rule worker as `ganzhi up` runs them, the demo's simulated
MQTT devices publishing through the broker and its simulated HJ 212 loggers (river stations, sewage outlets)
talking to the gateway, with faults and events, for H simulated hours at speed S.

What the live figures add to the in-process ones: the broker, ingest, late and out-of-order arrival, the workers'
streamed state and their reconciliation. The simulators compress time (readings every interval / S) and stamp
them with simulated time (``SimConfig.observed_from``: the run's H hours end when it began), so the rules, which
judge observation time, see a flat line last its hours and a drift its windows, as in the field. What stays
compressed is what the workers time on the wall clock (the spike screen's wait for the next reading, an episode's
expiry). Transport-level alerts (``device:nodata``: the worker's silence sweep, which compares observation time with the
database's clock and finds every simulated reading hours old) have no ground truth and are counted apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from analytics.engine import Episode
from analytics.queries import terminal_by_code
from analytics.rules import Rule, TerminalInfo, rules_for
from core.broker import LocalBroker
from core.settings import Settings
from ganzhi.bench_alert_quality import FAMILIES, FAULTS, Raised, Score, _answers, _print_run, _score
from ganzhi.bench_alerts import print_rule_counters
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.broker_auth import platform_accounts, write_files
from ganzhi.database import prepare
from registry import demo
from simulators import truth
from simulators.faults import Fault

if TYPE_CHECKING:
    from simulators.loggers import LoggerStats
    from simulators.run import SimStats

SERVICE = ("ganzhi-ingest", "live-quality-service-secret")
TRANSPORT_PREFIX = "device:nodata:"
"""Rules with no ground truth (a silence is not injected): reported apart, not scored."""
LOGGERS_PER_KIND = 8
"""HJ 212 loggers of each kind (river stations, sewage outlets) in a live run: with the default share, one of each
of ``FAULTS`` and as many healthy."""
DRAIN_QUIET_S = 10.0
"""After the simulators stop: the workers have drained when no reading was stored and no alert changed for this long."""


@dataclass
class Stored:
    """The alerts of a database scored against a truth file."""

    scores: dict[str, Score]
    transport: Counter
    """Alerts with no ground truth (no-data), by rule family of the metric: counted apart."""
    unknown: list[str]
    """Alerts whose terminal the database no longer knows (not scored)."""


_ALERTS = """
    select t.code, a.rule, a.family, a.bureau, a.metric, a.observed_start, a.observed_end, a.updated_at,
           a.severity, a.detail, coalesce(a.worst_value, 'NaN'),
           exists (select 1 from alert_event e where e.alert_id = a.id and e.action = 'retract')
      from alert a join terminal t on t.id = a.terminal_id
     where a.fire_event_id is null and a.observed_start >= %(since)s and a.observed_start < %(until)s
     order by a.observed_start, a.id
"""


def score_stored(conn: psycopg.Connection, truths: list[truth.Truth], since: dt.datetime | None = None,
                 until: dt.datetime | None = None) -> Stored:
    """The stored alerts observed in [since, until) (default: from the truth's first window, until now) scored
    against what had happened by ``until`` (``truth.as_of``)."""
    until = until or dt.datetime.now(dt.UTC)
    happened = truth.as_of(truths, until)
    since = since or min((t.start for t in happened), default=until) - dt.timedelta(minutes=1)
    happened = [t for t in happened if t.end >= since]
    infos: dict[str, TerminalInfo | None] = {}
    rules: dict[str, dict[str, Rule]] = {}

    def info_of(code: str) -> TerminalInfo | None:
        if code not in infos:
            infos[code] = terminal_by_code(conn, code)
            rules[code] = {r.key: r for r in rules_for(infos[code])} if infos[code] else {}
        return infos[code]

    alerts, transport, unknown = [], Counter(), []
    for code, key, family, bureau, metric_key, start, end, updated, severity, detail, worst, retracted in \
            conn.execute(_ALERTS, {"since": since, "until": until}):
        info = info_of(code)
        if info is None:
            unknown.append(f"{code} {key}")
            continue
        if key.startswith(TRANSPORT_PREFIX):
            transport[key] += 1
            continue
        # The rule as the worker knew it; one the ledger's rules no longer list is kept with its stored family.
        rule = rules[code].get(key) or Rule(key, family, bureau, metric_key, lambda s: None)
        episode = Episode(start, end or min(updated, until), end, severity, detail, worst, 0.0)
        alerts.append((info, Raised(rule, episode, retracted)))
    chosen = [i for t in happened if (i := info_of(t.terminal)) is not None]
    happened = [t for t in happened if infos.get(t.terminal) is not None]
    chosen = list({i.code: i for i in chosen + [info for info, _ in alerts]}.values())
    by_code = {i.code: i for i in chosen}
    return Stored(_score(chosen, happened, _frozen(conn, happened, by_code), alerts,
                         _cut_unseen(conn, happened, by_code, rules, until)), transport, unknown)


_SPAN = """
    select count(*), coalesce(max(ts) - min(ts), interval '0') from reading
     where terminal_id = %(terminal)s and metric = %(metric)s and ts >= %(start)s and ts < %(until)s
"""


def _cut_unseen(conn: psycopg.Connection, truths: list[truth.Truth], infos: dict[str, TerminalInfo],
                rules: dict[str, dict[str, Rule]], until: dt.datetime) -> frozenset[truth.Truth]:
    """The events and spikes the run's end cut (``truth.as_of`` ended them at ``until``) before the stored readings
    could show them. A window that ended before the run's end is the plan's, long enough to see: never unseen.
    Stuck and drift windows cut short are judged by their length (``_visible``)."""
    return frozenset(t for t in truths if t.end >= until and t.kind in (Fault.spike, Fault.pollution)
                     and not _shown(conn, t, infos[t.terminal], rules[t.terminal], until))


def _shown(conn: psycopg.Connection, t: truth.Truth, info: TerminalInfo, rules: dict[str, Rule],
           until: dt.datetime) -> bool:
    """Whether a rule that answers the injection (``_answers``) had readings inside to show it: a spike is told
    only by the reading after it (``_jump_judge``), so two; an event one, and readings spanning the rule's
    ``min_duration`` (a sewage outlet's real-time limit holds for a reporting interval)."""
    needed = 2 if t.kind is Fault.spike else 1
    answering = [r for r in rules.values()
                 if _answers(t, r) and (t.metric is None or r.metric.split(":")[0] == t.metric)]
    for rule in answering:
        count, reach = conn.execute(_SPAN, {"terminal": info.id, "metric": rule.metric, "start": t.start,
                                            "until": until}).fetchone()
        if count >= needed and reach >= rule.min_duration:
            return True
    return False


def _frozen(conn: psycopg.Connection, truths: list[truth.Truth],
            infos: dict[str, TerminalInfo]) -> dict[truth.Truth, float]:
    """What ``_score`` needs of the simulators' state, read back from the stored readings: the value each stuck
    window froze at (its first reading in the window; the two pieces of a window the run's period cut freeze apart),
    so that a sensor stuck at a resting value (a detector at 0 %LEL in clean air) is counted invisible, as the
    in-process bench does."""
    found = {}
    for t in truths:
        if t.kind is not Fault.stuck or t.metric is None:
            continue
        row = conn.execute("""
            select r.value from reading r
             where r.terminal_id = %s and r.metric = %s and r.ts >= %s and r.ts < %s
             order by r.ts limit 1""", (infos[t.terminal].id, t.metric, t.start, t.end)).fetchone()
        if row is not None:
            found[t] = row[0]
    return found


def print_stored(stored: Stored, label: str) -> None:
    _print_run(label, stored.scores)  # type: ignore[arg-type]  (printed as the run's name)
    if stored.transport:
        print(f"  apart (no ground truth, not scored): {sum(stored.transport.values())} transport alerts: "
              + ", ".join(f"{key} {n}" for key, n in stored.transport.most_common(6)))
    if stored.unknown:
        print(f"  {len(stored.unknown)} alerts on terminals the database does not know, not scored")


def score_file(url: str, path: Path, since: dt.datetime | None, until: dt.datetime | None) -> Stored:
    with psycopg.connect(url) as conn:
        stored = score_stored(conn, truth.load(path), since, until)
    print_stored(stored, f"stored alerts against {path}")
    return stored


# The live run.


def run_live(url: str, settings: Settings, hours: float, speed: float, seed: int, publishers: int,
             share: float, loggers_per_kind: int = LOGGERS_PER_KIND) -> Stored:
    """The platform on a scratch database, the fleet and the HJ 212 loggers with faults for ``hours`` simulated hours
    at ``speed``, the workers drained, the stored alerts scored."""
    from simulators.fleet import load_fleet
    from simulators.loggers import load_loggers

    wall_s = hours * 3600 / speed
    print(f"box: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; live: {publishers} publishers and "
          f"{loggers_per_kind} HJ 212 loggers of each kind of the demo ledger, share {share:g} given a fault or event "
          f"({', '.join(FAULTS)}), {hours:g} simulated hours at speed {speed:g} ({wall_s:.0f} s), seed {seed}")
    scratch = scratch_database(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-live-quality-"))
    root.chmod(0o755)  # mosquitto, started as root, drops to its own user
    secret = settings.demo_secret.get_secret_value()
    processes: list[subprocess.Popen] = []
    broker = None
    try:
        prepare(scratch, settings)
        with psycopg.connect(scratch) as conn:
            demo.load(conn, secret_key=secret)
            conn.commit()
            write_files(conn, root / "auth", platform_accounts(*SERVICE))
            fleet = pick_fleet(load_fleet(conn), publishers, seed)
            loggers = pick_loggers(load_loggers(conn, secret), loggers_per_kind, seed)
        broker = LocalBroker(root / "mqtt", free_port(), auth_dir=root / "auth")
        asyncio.run(broker.start())
        hj212_port = free_port()
        env = dict(os.environ, DATABASE_URL=scratch, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                   GANZHI_MQTT_USERNAME=SERVICE[0], GANZHI_MQTT_PASSWORD=SERVICE[1], GANZHI_LOG_LEVEL="WARNING",
                   GANZHI_HJ212_HOST="127.0.0.1", GANZHI_HJ212_PORT=str(hj212_port))
        processes = start_workers(env, gateway=True)
        wait_listening(hj212_port)
        truth_path = root / "truth.jsonl"
        observed_from = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=hours)
        stats, logged = asyncio.run(run_simulators(fleet, loggers, broker.port, hj212_port, secret, speed, hours,
                                                   seed, share, truth_path, observed_from=observed_from))
        drained = wait_drained(scratch)
        print(f"published {stats.messages} messages ({stats.readings} readings), {stats.failures} connection "
              f"failures; {len(loggers)} HJ 212 loggers sent {logged.packets} packets ({logged.refused} refused); "
              f"workers drained {drained:.0f} s after the simulators stopped (no change for {DRAIN_QUIET_S:.0f} s)")
        print_rule_counters(scratch, [p.pid for p in processes if "analytics" in p.args])
        with psycopg.connect(scratch) as conn:
            stored = score_stored(conn, truth.load(truth_path), observed_from,
                                  observed_from + dt.timedelta(hours=hours, minutes=1))
        print_stored(stored, f"{seed} (live, speed {speed:g})")
        _print_summary(stored, speed)
        return stored
    finally:
        stop_workers(processes)
        if broker is not None:
            asyncio.run(broker.stop())
        drop_database(url, scratch)
        shutil.rmtree(root, ignore_errors=True)


def pick_fleet(fleet: list, count: int, seed: int) -> list:
    """``count`` publishers drawn with the seed, those with readings an event can change first in the mix (a river
    station, a gas pole, a water meter), so that a small fleet has every family."""
    rng = random.Random(seed)
    by_kind: dict[tuple, list] = {}
    for p in fleet:
        by_kind.setdefault(tuple(sorted({t.kind for t in p.terminals})), []).append(p)
    chosen: list = []
    pools = [rng.sample(ps, len(ps)) for _, ps in sorted(by_kind.items())]
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return chosen


def pick_loggers(loggers: list, per_kind: int, seed: int) -> list:
    """``per_kind`` of the ledger's HJ 212 loggers of each kind (river stations, sewage outlets), drawn with the
    seed."""
    rng = random.Random(seed)
    return [lg for _, kind in sorted(_by_kind(loggers).items())
            for lg in rng.sample(kind, min(per_kind, len(kind)))]


def logger_faults(loggers: list, seed: int, share: float) -> dict[str, Fault]:
    """``share`` of the loggers of each kind get ``rotated_faults``, as the in-process bench gives them per kind:
    every kind has each fault and an event."""
    faults: dict[str, Fault] = {}
    for kind in _by_kind(loggers).values():
        faults |= rotated_faults(kind, seed, share)
    return faults


def rotated_faults(devices: list, seed: int, share: float) -> dict[str, Fault]:
    """The first ``faulty_count`` of ``devices`` (by code) get one of ``FAULTS`` each, in turn from a place the seed
    shifts."""
    return {d.code: FAULTS[(n + seed) % len(FAULTS)] for n, d in enumerate(devices[:faulty_count(len(devices), share)])}


def _by_kind(loggers: list) -> dict[str, list]:
    by_kind: dict[str, list] = {}
    for lg in loggers:
        by_kind.setdefault(lg.kind, []).append(lg)
    return by_kind


def faulty_count(devices: int, share: float) -> int:
    """How many of ``devices`` get a fault: ``share`` of them, at least one per fault of ``FAULTS`` when the share is
    not 0, and never all of them (a healthy one stays to be judged beside the faulty)."""
    if share <= 0 or devices < 2:
        return 0
    return min(devices - 1, max(len(FAULTS), round(share * devices)))


def start_workers(env: dict[str, str], rule_workers: int = 1, gateway: bool = False) -> list[subprocess.Popen]:
    """An ingest worker and the rule workers, as `ganzhi up` runs them (`python -m ganzhi ingest|analytics`), and
    with ``gateway`` an HJ 212 gateway (`python -m ganzhi hj212`, on ``GANZHI_HJ212_HOST|PORT`` of ``env``)."""
    processes = [subprocess.Popen([sys.executable, "-m", "ganzhi", "ingest", "--client-id", "live-quality-ingest"],
                                  env=env)]
    if gateway:
        processes.append(subprocess.Popen([sys.executable, "-m", "ganzhi", "hj212", "--instance", "1"], env=env))
    processes += [subprocess.Popen([sys.executable, "-m", "ganzhi", "analytics", "--name", f"live-quality-rules-{n}"],
                                   env=env) for n in range(rule_workers)]
    return processes


def wait_listening(port: int, timeout_s: float = 60.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port`` (the gateway), so that the loggers' first
    simulated minutes are not spent reconnecting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s") from None
            time.sleep(0.2)


def stop_workers(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


async def run_fleet(fleet: list, port: int, secret: str, speed: float, hours: float, seed: int, share: float,
                    truth_path: Path, faults: dict[str, Fault] | None = None, observed_from: dt.datetime | None = None):
    """The fleet through the broker for ``hours`` simulated hours, its faults and events (each injected once in the
    run: their period is the run) recorded in ``truth_path``; readings stamped with simulated time from
    ``observed_from`` (None: the wall clock); by default ``share`` of the publishers get one of
    ``FAULTS`` each, in turn from a place the seed shifts (the kind mix of a small fleet is the same for every
    seed: each seed gives its events and faults to other kinds)."""
    stats, _ = await run_simulators(fleet, [], port, None, secret, speed, hours, seed, share, truth_path, faults,
                                    observed_from=observed_from)
    return stats


async def run_simulators(fleet: list, loggers: list, port: int, hj212_port: int | None, secret: str, speed: float,
                         hours: float, seed: int, share: float, truth_path: Path,
                         faults: dict[str, Fault] | None = None, faults_of_loggers: dict[str, Fault] | None = None,
                         observed_from: dt.datetime | None = None) -> tuple[SimStats, LoggerStats]:
    """``run_fleet``, and beside it the HJ 212 ``loggers`` talking to the gateway on ``hj212_port`` on the same
    simulated clock, their faults and events (by default ``logger_faults``) recorded in the same truth file.
    Returns the fleet's and the loggers' counts."""
    from simulators.loggers import LoggerStats, run_loggers
    from simulators.run import SimConfig, simulate

    if faults is None:
        faults = rotated_faults(fleet, seed, share)  # seeds vary who
    config = SimConfig(host="127.0.0.1", port=port, secret_key=secret, speed=speed,
                       ramp_s=min(5.0, hours * 360 / speed), faults=faults, seed=seed, horizon_h=hours,
                       truth=truth_path, truth_h=hours, observed_from=observed_from)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(hours * 3600 / speed, stop.set)
    if not loggers:
        return await simulate(fleet, config, stop), LoggerStats()
    if faults_of_loggers is None:
        faults_of_loggers = logger_faults(loggers, seed, share)
    return tuple(await asyncio.gather(
        simulate(fleet, config, stop),
        run_loggers(loggers, "127.0.0.1", hj212_port, stop, speed=speed, faults=faults_of_loggers, seed=seed,
                    horizon_h=hours, truth_path=truth_path, truth_h=hours, observed_from=observed_from)))


def wait_drained(url: str, timeout_s: float = 300.0, quiet_s: float = DRAIN_QUIET_S) -> float:
    """Seconds until the rule workers have judged every stored reading (their watermark, before every reading not
    judged yet, is past the last reading's arrival; it needs the right to see other sessions, pg_read_all_stats,
    else it stays 10 minutes back) and no reading was stored nor alert changed for ``quiet_s``
    (``timeout_s`` at most): the ingest and the rule workers have drained."""
    began = time.monotonic()
    last, quiet_since = None, time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - began < timeout_s:
            *state, judged = conn.execute("""
                select (select count(*) from reading), (select count(*) from alert_event),
                       (select max(updated_at) from alert),
                       (select min(received_at) from rule_watermark)
                         > (select coalesce(max(received_at), '-infinity') from reading)""").fetchone()
            if state != last:
                last, quiet_since = state, time.monotonic()
            elif judged and time.monotonic() - quiet_since >= quiet_s:
                break
            time.sleep(min(1.0, quiet_s / 4))
    return time.monotonic() - began


def _print_summary(stored: Stored, speed: float) -> None:
    """Per family, and per kind of device fault (a stuck sensor takes its metric's flat-line window, a spike the next
    reading): the median time to alert is the same median ``_print_run`` takes (the mean of the middle two)."""
    print(f"\nper family (time to alert in simulated minutes, ÷ {speed:g} on the wall clock):")
    for family in FAMILIES:
        s = stored.scores[family]
        print(f"  {family:8} alerts {s.alerts:3} strict precision {s.precision:.3f} loose {s.precision_apart:.3f}  "
              f"recall {s.recall:.3f} ({s.detected}/{s.injected})  time to alert {_lags(s.delays_min, speed)}")
    for kind, (injected, detected, delays) in sorted(stored.scores["device"].by_kind.items()):
        print(f"    device {kind:6} detected {detected} of {injected}  time to alert {_lags(delays, speed)}")


def _lags(delays: list[float], speed: float) -> str:
    if not delays:
        return "–"
    median = statistics.median(delays)
    return f"median {median:.1f} min ({median / speed:.1f} real), max {max(delays):.1f} min"
