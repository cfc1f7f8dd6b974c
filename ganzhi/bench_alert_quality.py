"""Alert quality against ground truth: the demo fleet's simulators run for N simulated hours with faults
and events injected, and the alerts the rules raise are scored per family against what was injected.

What is measured, and what not: the readings are made by the simulators' own code (``read_terminal``, the
same signals, noise, quantisation and distortions ``ganzhi simulate`` publishes) on a simulated clock, and
judged by the same rules and episode logic the rule workers reconcile into alerts (``rules_for`` →
``Rule.evaluate``): a streamed rule over the run's readings in order, a window rule (stuck sensor, night flow)
re-evaluated as the readings arrive, as the workers do, so that an alert raised and later retracted is
still counted (the operator saw it; ``replay``). Transport (broker, ingest, alert store) is left out: it does
not change which episodes exist (late and repeated data are judged where they belong), only when they
become readable, which ``ganzhi bench alerts`` measures. No-data alerts (the worker's silence sweep) and
transport faults are therefore not scored. Time to alert is in observation time: first alert episode start
minus the injection's start.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from analytics.engine import Episode, Point
from analytics.queries import terminal_by_code
from analytics.rules import Rule, TerminalInfo, drift_window, latch_of, resumed, rules_for
from core.settings import Settings
from devices import metric
from ganzhi.benchkit import drop_database, scratch_database
from ganzhi.database import prepare
from registry import demo
from simulators import truth
from simulators.faults import Distortion, Fault, plan
from simulators.fleet import SimTerminal
from simulators.run import read_terminal

START = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
"""Noon in the heating season: a run of 24 hours has a whole night (the night-flow rule) in its middle."""
GRACE = dt.timedelta(hours=1)
"""An alert still explained by an injection that ended this long before it (hysteresis, nightly judgement)."""
RUNNING_BEFORE = dt.timedelta(hours=3)
"""The fleet reports (healthy: nothing is injected before ``START``) this long before the scored day, as a deployed
fleet has: the rules' quality checks have seen their windows when the day starts (docs/rules.md, "Quality
flags")."""
FAULTS = (Fault.stuck, Fault.spike, Fault.drift, Fault.pollution)
"""Value faults (each has a rule that can see it) and real events."""
FAMILY_OF_KIND = {
    "water_quality_station": "river", "sewage_outlet_analyser": "sewage", "gas_pressure_sensor": "gas",
    "methane_detector": "gas", "water_pressure_point": "water", "district_flow_meter": "water",
    "heating_substation_sensor": "heating", "indoor_temp_sensor": "heating",
}
FAMILIES = ("river", "sewage", "gas", "water", "heating", "device")


@dataclass
class Score:
    alerts: int = 0
    explained: int = 0
    by_fault: int = 0
    """Bureau alerts that only a device fault overlapped (a methane spike read as a leak): false alerts, counted
    apart to show where they come from."""
    retracted: int = 0
    """Alerts a later look at the rule's window took back (counted in ``alerts``: the operator saw them)."""
    injected: int = 0
    detected: int = 0
    invisible: int = 0
    """Faults no reading could show (a detector stuck at 0 %LEL in clean air reads what a healthy one does; an event
    or spike the live run's end cut before the readings that would show it)."""
    delays_min: list[float] = field(default_factory=list)
    by_kind: dict[str, list] = field(default_factory=lambda: defaultdict(lambda: [0, 0, []]))
    """Per injected kind (stuck, spike, drift, pollution): injected, detected, delays in minutes."""
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        """Strict precision: alerts explained by what they should answer, a bureau's by a real event, the steward's
        by the device fault its rule is about (a bureau alert a device fault raised counts as false)."""
        return self.explained / self.alerts if self.alerts else 1.0

    @property
    def precision_apart(self) -> float:
        """Loose precision, leaving out the bureau alerts a device fault raised (a drifting sensor reading over the
        limit): what the rules could know from the readings."""
        judged = self.alerts - self.by_fault
        return self.explained / judged if judged else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.injected if self.injected else 1.0


def run(url: str, settings: Settings, hours: float, seeds: list[int], per_kind: int, share: float) -> None:
    ledger = _ledger(url, settings)
    print(f"demo ledger: {len(ledger)} terminals with readings; {per_kind} per kind simulated for {hours:g} h, "
          f"share {share:g} given a fault or event ({', '.join(FAULTS)}); seeds {seeds}")
    runs = []
    for seed in seeds:
        scores = score_run(ledger, hours, seed, per_kind, share)
        runs.append(scores)
        _print_run(seed, scores)
    print(f"\nmedian over {len(runs)} runs (seeds {seeds[0]}…{seeds[-1]}):")
    for family in FAMILIES:
        values = [r[family] for r in runs]
        delays = [d for s in values for d in s.delays_min]
        print(f"  {family:8} strict precision {statistics.median(s.precision for s in values):.3f} "
              f"(loose, leaving out those a device fault raised "
              f"{statistics.median(s.precision_apart for s in values):.3f}; "
              f"false alerts from device faults {sum(s.by_fault for s in values)} in all; "
              f"retracted {sum(s.retracted for s in values)} of {sum(s.alerts for s in values)} alerts)  "
              f"recall {statistics.median(s.recall for s in values):.3f}  "
              f"time to alert median {statistics.median(delays) if delays else float('nan'):.0f} min, "
              f"max {max(delays, default=float('nan')):.0f} min")
        if family == "device":
            for kind in sorted({k for s in values for k in s.by_kind}):
                rows = [s.by_kind[kind] for s in values if kind in s.by_kind]
                lags = [d for r in rows for d in r[2]]
                print(f"           {kind:6} detected {sum(r[1] for r in rows)} of {sum(r[0] for r in rows)}, "
                      f"time to alert median {statistics.median(lags) if lags else float('nan'):.0f} min, "
                      f"max {max(lags, default=float('nan')):.0f} min")


def _ledger(url: str, settings: Settings) -> list[TerminalInfo]:
    """The demo ledger, loaded into a scratch database to get its codes, kinds and attributes."""
    scratch = scratch_database(url)
    try:
        prepare(scratch, settings)
        with psycopg.connect(scratch) as conn:
            demo.load(conn)
            conn.commit()
            codes = [row[0] for row in conn.execute(
                "select code from terminal where status <> 'retired' and cardinality(metrics) > 0 order by code")]
            return [info for code in codes if (info := terminal_by_code(conn, code)) is not None]
    finally:
        drop_database(url, scratch)


def score_run(ledger: list[TerminalInfo], hours: float, seed: int, per_kind: int, share: float) -> dict[str, Score]:
    rng = random.Random(seed)
    by_kind: dict[str, list[TerminalInfo]] = defaultdict(list)
    for info in ledger:
        by_kind[info.kind].append(info)
    chosen, distortions, truths = [], {}, []
    for kind in sorted(by_kind):  # every kind gets each fault and an event, whatever its count
        sample = rng.sample(by_kind[kind], min(per_kind, len(by_kind[kind])))
        faulty = max(len(FAULTS), round(share * len(sample)))
        for n, info in enumerate(sample):
            injection = plan(FAULTS[n % len(FAULTS)], info.code, info.kind, info.metrics, hours, seed) \
                if n < faulty else None
            distortions[info.code] = Distortion(injection, random.Random(f"{seed}:{info.code}:fault"))
            chosen.append(info)
            if injection is not None:
                truths += truth.observed(injection, START, speed=1, until_h=hours)
    with tempfile.TemporaryDirectory() as scratch:  # scored from the ground-truth file, as a live run would be
        path = Path(scratch) / "truth.jsonl"
        truth.record(path, truths)
        recorded = truth.load(path)
    alerts = [(info, raised) for info in chosen for raised in judge_day(info, distortions[info.code], hours, seed)]
    frozen = {t: distortions[t.terminal].stuck[t.metric] for t in recorded
              if t.kind is Fault.stuck and t.metric in distortions[t.terminal].stuck}  # one window per fault here
    return _score(chosen, recorded, frozen, alerts)


@dataclass
class Raised:
    """An alert as the workers would have stored it: its episode as last seen, and whether a later evaluation of
    the rule's window took it back (a retracted alert is still one an operator saw)."""
    rule: Rule
    episode: Episode
    retracted: bool = False


def judge_day(info: TerminalInfo, distortion: Distortion, hours: float, seed: int) -> list[Raised]:
    rng = random.Random(f"{seed}:{info.code}")
    terminal = SimTerminal(info.code, info.kind, info.metrics, info.attrs, info.report_interval_s)
    series: dict[str, list[Point]] = defaultdict(list)
    at = START - RUNNING_BEFORE + dt.timedelta(seconds=rng.uniform(0, info.report_interval_s))
    end = START + dt.timedelta(hours=hours)
    while at < end:
        elapsed_h = (at - START).total_seconds() / 3600
        for key, value in read_terminal(terminal, distortion, at, elapsed_h, rng):
            series[key].append(Point(at, value))
        at += dt.timedelta(seconds=info.report_interval_s + rng.uniform(-2, 2))
    interval = dt.timedelta(seconds=info.report_interval_s)
    return [raised for rule in rules_for(info) for raised in
            ([Raised(rule, e) for e in rule.evaluate(series, now=end)] if rule.streamable
             else replay(rule, series, interval, end))]


def replay(rule: Rule, series: dict[str, list[Point]], interval: dt.timedelta, end: dt.datetime) -> list[Raised]:
    """A window rule (stuck sensor, night flow) as the workers run it on readings arriving in order: its
    window re-evaluated every ``Rule.every`` (at least every reading), the episodes found reconciled with what
    is stored as ``alerts.service.reconcile`` does (opened, extended, or retracted when a later look at the window
    no longer finds them). A streamed rule fed in order takes nothing back, so only these are replayed."""
    every = max(rule.every, interval)
    times = {m: [p.ts for p in series.get(m, [])] for m in (rule.metric, *rule.context)}
    stored: list[Raised] = []
    judged, current = None, None
    at = min((ts[0] for ts in times.values() if ts), default=end)
    # The judge's latch carried from window to window as the worker carries it (``evaluate.judge_terminal``); at
    # first, the terminal's first stored reading.
    latch = {"origin": times[rule.metric][0].isoformat() if times[rule.metric] else None}
    while judged is None or judged < end:
        at = min(at + every, end)
        new = [t for t in times[rule.metric][bisect.bisect_right(times[rule.metric], judged):] if t <= at] \
            if judged else times[rule.metric][:bisect.bisect_right(times[rule.metric], at)]
        if new:
            anchors = [new[0]] + [r.episode.start for r in stored if not r.retracted and
                                  (r.episode.end is None or r.episode.end >= new[0] - rule.lookback)]
            start = min(anchors + ([current] if current else [])) - rule.lookback
            window = {m: series.get(m, [])[bisect.bisect_left(ts, start):bisect.bisect_right(ts, at)]
                      for m, ts in times.items()}
            tracker, judge = rule.make_tracker(), resumed(rule.make_judge(window), latch)
            _reconcile(stored, start, rule, rule.evaluate_with(window, judge, tracker, now=at))
            latch = latch_of(judge)
            current = tracker.current.start if tracker.current else None
        judged = at
    return stored


def _reconcile(stored: list[Raised], start: dt.datetime, rule: Rule, found: list[Episode]) -> None:
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    seen = [r for r in stored if r.episode.end is None or r.episode.end >= start]
    matched: set[int] = set()
    for episode in found:
        alert = next((r for r in seen if id(r) not in matched and r.episode.start <= (episode.end or far)
                      and episode.start <= (r.episode.end or far)), None)
        if alert is None:
            stored.append(Raised(rule, episode))
            continue
        matched.add(id(alert))
        if not alert.retracted:
            episode.start = min(episode.start, alert.episode.start)
            alert.episode = episode
    for alert in seen:
        if id(alert) not in matched and not alert.retracted and alert.episode.start >= start:
            alert.retracted = True


def _score(chosen: list[TerminalInfo], truths: list[truth.Truth], frozen: dict[truth.Truth, float],
           alerts: list[tuple[TerminalInfo, Raised]], unseen: frozenset[truth.Truth] = frozenset()) -> dict[str, Score]:
    """``frozen``: the value each stuck window froze at (a piece of a window cut by the live run's period freezes
    afresh, so it is per window, not per sensor). ``unseen``: injections the live run's end cut before any reading
    could show them (counted invisible)."""
    infos = {info.code: info for info in chosen}
    scores = {family: Score() for family in FAMILIES}
    by_terminal = defaultdict(list)
    for t in truths:
        by_terminal[t.terminal].append(t)
    for info, raised in alerts:
        rule, episode = raised.rule, raised.episode
        score = scores[rule.family]
        score.alerts += 1
        score.retracted += raised.retracted
        if any(_explains(t, rule, episode) for t in by_terminal[info.code]):
            score.explained += 1
            continue
        score.false.append(f"{info.code} {rule.key} {episode.start:%H:%M} {episode.detail}")
        score.by_fault += rule.family != "device" and any(_overlaps(t, episode) for t in by_terminal[info.code])
    for t in truths:
        family = "device" if t.kind is not Fault.pollution else FAMILY_OF_KIND[infos[t.terminal].kind]
        score = scores[family]
        if t in unseen or not _visible(t, infos[t.terminal], frozen.get(t)):
            score.invisible += 1
            continue
        score.injected += 1
        kind = score.by_kind[t.kind.value]
        kind[0] += 1
        starts = [r.episode.start for info, r in alerts if info.code == t.terminal and _answers(t, r.rule)
                  and _overlaps(t, r.episode)]
        if starts:
            score.detected += 1
            score.delays_min.append(max(0.0, (min(starts) - t.start).total_seconds() / 60))
            kind[1] += 1
            kind[2].append(score.delays_min[-1])
        else:
            score.missed.append(f"{t.kind} {t.terminal} {t.metric or ''} {t.start:%H:%M}–{t.end:%H:%M}")
    return scores


def _visible(t: truth.Truth, info: TerminalInfo, frozen: float | None) -> bool:
    """An injected fault a rule could see: a stuck one (frozen at ``frozen``) as ``_visible_stuck`` says, a drift
    lasting at least the drift test's window (the live bench's run-long period cuts a window at the run's end to
    minutes)."""
    if t.kind is Fault.stuck:
        return _visible_stuck(t, frozen)
    if t.kind is Fault.drift:
        return t.end - t.start >= drift_window(info)
    return True


def _visible_stuck(t: truth.Truth, frozen: float | None) -> bool:
    """A stuck sensor one could tell from a live one: not frozen at a resting value (a detector at 0 %LEL in clean
    air), and frozen longer than the metric's live signal is ever flat (the plan makes every stuck window so; the
    live bench's run-long period cuts a window that runs past the end into two, the first of them often shorter)."""
    spec = metric(t.metric)
    if frozen is not None and spec.at_rest(frozen):
        return False
    return spec.flat_after_h is None or t.end - t.start > dt.timedelta(hours=spec.flat_after_h)


def _answers(t: truth.Truth, rule: Rule) -> bool:
    """The rule is one that should alert on this injection."""
    if t.kind is Fault.stuck:
        return rule.key == f"device:stuck:{t.metric}"
    if t.kind is Fault.spike:
        return rule.key.startswith("device:jump:")
    if t.kind is Fault.drift:
        return rule.key == f"device:drift:{t.metric}"
    return rule.family != "device"


def _explains(t: truth.Truth, rule: Rule, episode: Episode) -> bool:
    """The injection accounts for the alert: a device alert by the matching device fault, a bureau's alert by a
    real event only (a spike or a stuck sensor is the steward's matter: a bureau alert it raises is false)."""
    return _answers(t, rule) and _overlaps(t, episode)


def _overlaps(t: truth.Truth, episode: Episode) -> bool:
    return episode.start <= t.end + GRACE and (episode.end or episode.last) >= t.start


def _print_run(seed: int, scores: dict[str, Score]) -> None:
    print(f"\nseed {seed}:")
    for family, s in scores.items():
        delays = sorted(s.delays_min)
        tta = f"{statistics.median(delays):.0f}/{delays[-1]:.0f} min" if delays else "–"
        print(f"  {family:8} alerts {s.alerts:4} ({s.retracted} retracted) explained {s.explained:4} "
              f"({s.by_fault} false from a device fault) "
              f"strict precision {s.precision:.3f} loose {s.precision_apart:.3f} | injected {s.injected:3} "
              f"detected {s.detected:3} "
              f"({s.invisible} invisible) recall {s.recall:.3f} | time to alert median/max {tta}")
        for line in s.false[:6]:
            print(f"      unexplained: {line}")
        for line in s.missed[:3]:
            print(f"      missed: {line}")
