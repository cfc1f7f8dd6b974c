"""Faults a simulated device can be given, to exercise the platform's defences, and the real events
(pollution, leaks, bursts, heating failures) the bureaus must hear about.

Faults that change values (stuck, drift, spike) and events last a window of the run, planned per
terminal (``plan``); each planned window is an ``Injection``, the ground truth alerts are scored
against. Transport faults (offline, duplicates, late, malformed, skew) last the whole run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from devices import drift_limit, metric
from simulators.instruments import instrument
from simulators.signals import clamp


class Fault(StrEnum):
    spike = "spike"
    """Now and then one value jumps far from the truth (30 % of the range) and the next is right again."""
    drift = "drift"
    """One sensor of the terminal creeps away from the truth, upwards, at the rate a failing instrument of its
    kind does (``simulators.instruments``: twelve times the norm's 24-hour drift allowance on the instrument's
    working range; a fouled electrode, ageing reagent): one with a drift test, since the others' own changes are
    as fast."""
    stuck = "stuck"
    """One sensor of the terminal repeats the value it read when the fault began."""
    offline = "offline"
    """The device drops off the network for a while (its last will says offline), then returns."""
    duplicates = "duplicates"
    """Every message is sent twice."""
    late = "late"
    """Messages are held back and sent in a burst minutes later, with their true observation times."""
    malformed = "malformed"
    """Some messages are not valid telemetry."""
    skew = "skew"
    """The device clock runs 10 minutes fast (its readings look like they come from the future)."""
    pollution = "pollution"
    """A real event, not a fault: ammonia, COD and phosphorus three times higher (a load twice the level at the
    event's start added: the water's own daily cycle goes on beneath it); a gas leak (methane at
    30–60 %LEL, pressure 20 % under the set point); a burst main (water pressure at a third, flow up 15 m³/h);
    a heating failure (indoor 15 °C, supply overheating to 98 °C)."""


VALUE_FAULTS = frozenset({Fault.spike, Fault.drift, Fault.stuck, Fault.pollution})
POLLUTANTS = frozenset({"w21003", "w01018", "w21011"})
_EVENT_EFFECTS = {
    "gas_pressure": lambda v, rng: v * 0.8,
    "water_pressure": lambda v, rng: v / 3,
    "water_flow": lambda v, rng: v + 15,
    "indoor_temp": lambda v, rng: 15.0 + rng.gauss(0, 0.2),
    "supply_temp": lambda v, rng: 98.0 + rng.gauss(0, 0.5),
    "methane_lel": lambda v, rng: rng.uniform(30, 60),  # the leak's level; readings scatter around it
}
LEAK_SCATTER = 2.0
"""%LEL: a leak's concentration wanders around its level from one reading to the next; it does not leap."""
SPIKE_SHARE = 0.05
"""Share of readings a spiking sensor gets wrong (the first one in the window always, so that the fault shows; the
second when the first is the series' very first, which has no reading before it to stand out from)."""
SPIKE_GAP = 2
"""Right readings at least between two spikes: a spike is an isolated wrong reading (QARTOD); two of the same
size one reading apart would be a plateau with a dip, which no spike test (nor an operator) calls a spike."""


def pollute(key: str, value: float, rng: random.Random, levels: dict[str, float]) -> float:
    """What a pollution event, leak, burst or heating failure does to a reading (``levels``: the event's
    gas levels so far, kept from one reading to the next)."""
    effect = _EVENT_EFFECTS.get(key)
    if key in POLLUTANTS:  # a spill's load on top of what the water carries: its own daily cycle goes on beneath
        return clamp(key, value + 2 * levels.setdefault(key, value))
    if key == "methane_lel":
        return clamp(key, levels.setdefault(key, effect(value, rng)) + rng.gauss(0, LEAK_SCATTER))
    return clamp(key, effect(value, rng)) if effect else value


def affected_by_events(metrics: tuple[str, ...]) -> bool:
    return any(key in _EVENT_EFFECTS or key in POLLUTANTS for key in metrics)


def pick_faults(codes: list[str], faults: list[Fault], share: float, seed: int) -> dict[str, Fault]:
    """Give ``share`` of the publishers one of ``faults`` each, deterministically."""
    if not faults or share <= 0:
        return {}
    rng = random.Random(seed)
    chosen = [code for code in codes if rng.random() < share]
    return {code: faults[i % len(faults)] for i, code in enumerate(chosen)}


@dataclass(frozen=True)
class Injection:
    """One fault or event on one terminal (``metric`` when it concerns one sensor), in hours of simulated
    time from the start of the run; it comes back every ``every_h`` hours if that is set."""

    kind: Fault
    terminal: str
    metric: str | None
    start_h: float
    end_h: float
    every_h: float | None = None
    rate_per_h: float | None = None
    """A drift's creep, in the metric's unit per hour."""

    def window(self, elapsed_h: float) -> int:
        """Which of its windows ``elapsed_h`` falls in (0 for one that does not repeat)."""
        return int((elapsed_h - self.start_h) // self.every_h) if self.every_h else 0

    def covers(self, elapsed_h: float) -> bool:
        since = elapsed_h - self.start_h
        if self.every_h:
            since %= self.every_h
        return 0 <= since < self.end_h - self.start_h

    def occurrences(self, until_h: float) -> list[tuple[float, float]]:
        """Its windows (start, end hours) that overlap the first ``until_h`` hours of a run."""
        if not self.every_h:
            return [(self.start_h, self.end_h)]
        first = self.start_h - self.every_h * (self.start_h // self.every_h + 1)
        found, k = [], 0
        while first + k * self.every_h < until_h:
            start = first + k * self.every_h
            if start + self.end_h - self.start_h > 0:
                found.append((max(0.0, start), start + self.end_h - self.start_h))
            k += 1
        return found


def plan(fault: Fault, terminal: str, kind: str, metrics: tuple[str, ...], horizon_h: float, seed: int,
         repeat: bool = False) -> Injection | None:
    """When (and on which sensor) a value fault or event happens on a terminal, within ``horizon_h`` hours
    (or, with ``repeat``, every ``horizon_h`` hours from a random phase, so that a live demo shows some at
    once); None when it can change none of the terminal's readings. A stuck sensor lasts longer than the time
    a live signal of that metric is ever flat, so that it is a fault one could see."""
    if fault not in VALUE_FAULTS:
        return None
    rng = random.Random(f"{seed}:{terminal}:{fault}")
    sensor, rate = None, None
    if fault is Fault.pollution:
        if not affected_by_events(metrics):
            return None
        length = rng.uniform(3, 8)
    elif fault is Fault.stuck:
        live = [key for key in metrics if metric(key).flat_after_h is not None]
        if not live:
            return None
        sensor = rng.choice(live)
        length = metric(sensor).flat_after_h + rng.uniform(4, 8)
    elif fault is Fault.drift:
        testable = [key for key in metrics if drift_limit(kind, key) is not None and instrument(kind, key)]
        if not testable:
            return None
        sensor = rng.choice(testable)
        rate = instrument(kind, sensor).fault_drift_per_h  # upwards: the creep that can look like pollution
        length = rng.uniform(3, 8)  # a drifting analyser is found by the daily check or the drift test, not at once
    else:
        length = rng.uniform(2, 6)
    if repeat:
        start = rng.uniform(0, horizon_h)
        return Injection(fault, terminal, sensor, round(start, 3), round(start + length, 3), horizon_h, rate)
    start = rng.uniform(0.5, max(0.5, horizon_h - length - 0.5))
    return Injection(fault, terminal, sensor, round(start, 3), round(start + length, 3), rate_per_h=rate)


@dataclass
class Distortion:
    """Per-terminal state of its injection (if any)."""

    injection: Injection | None
    rng: random.Random
    stuck: dict[str, float] = field(default_factory=dict)
    since_spike: dict[str, int] = field(default_factory=dict)
    """Per metric: readings since its last spike (a spike is isolated: the ``SPIKE_GAP`` after it are right)."""
    levels: dict[str, float] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    """Metrics that have given a reading: a series' first reading has none before it to stand out from."""
    window: int | None = None
    """Which of a repeating injection's windows the state above belongs to: each window starts afresh."""

    def apply(self, key: str, value: float, elapsed_h: float, span: float) -> float:
        injection = self.injection
        first = key not in self.seen
        self.seen.add(key)
        if injection is None or not injection.covers(elapsed_h):
            return value
        self._enter(injection.window(elapsed_h))
        if injection.kind is Fault.pollution:
            return pollute(key, value, self.rng, self.levels)
        if injection.kind is Fault.stuck:
            return self.stuck.setdefault(key, value) if key == injection.metric else value
        if injection.kind is Fault.drift:
            since = (elapsed_h - injection.start_h) % (injection.every_h or float("inf"))
            return clamp(key, value + injection.rate_per_h * since) if key == injection.metric else value
        if injection.kind is Fault.spike:
            if first:  # a window open when the series begins spikes the next reading: this one could not show it
                return value
            since = self.since_spike.get(key)
            spike = since is None or (since >= SPIKE_GAP and self.rng.random() < SPIKE_SHARE)
            self.since_spike[key] = 0 if spike else since + 1
            if not spike:
                return value
            spec = metric(key)
            up = value + 0.3 * span <= spec.high
            return clamp(key, value + (0.3 if up else -0.3) * span)
        return value

    def _enter(self, window: int) -> None:
        """A new window of the injection: its stuck values, spike spacing and event levels are its own."""
        if window != self.window:
            self.window = window
            self.stuck.clear()
            self.since_spike.clear()
            self.levels.clear()
