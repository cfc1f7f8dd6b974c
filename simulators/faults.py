"""Faults a simulated device can be given, to exercise the platform's defences."""

from __future__ import annotations

import random
from enum import StrEnum

from simulators.signals import clamp


class Fault(StrEnum):
    spike = "spike"
    """Now and then one value jumps far from the truth."""
    drift = "drift"
    """Values creep away from the truth, 2 % of the range per hour."""
    stuck = "stuck"
    """The sensor repeats its first value for ever."""
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
    """A real event, not a fault: ammonia, COD and phosphorus three times higher, methane at 30–60 %LEL."""


POLLUTANTS = frozenset({"w21003", "w01018", "w21011"})


def pollute(key: str, value: float, rng: random.Random) -> float:
    """What a pollution event or a gas leak does to a reading."""
    if key in POLLUTANTS:
        return clamp(key, value * 3)
    if key == "methane_lel":
        return clamp(key, rng.uniform(30, 60))
    return value


def pick_faults(codes: list[str], faults: list[Fault], share: float, seed: int) -> dict[str, Fault]:
    """Give ``share`` of the publishers one of ``faults`` each, deterministically."""
    if not faults or share <= 0:
        return {}
    rng = random.Random(seed)
    chosen = [code for code in codes if rng.random() < share]
    return {code: faults[i % len(faults)] for i, code in enumerate(chosen)}


class Distortion:
    """Per-terminal state for the value-changing faults."""

    def __init__(self, fault: Fault | None, rng: random.Random) -> None:
        self.fault = fault
        self.rng = rng
        self.stuck: dict[str, float] = {}
        self.drift_hours = 0.0

    def apply(self, key: str, value: float, elapsed_h: float, span: float) -> float:
        if self.fault is Fault.pollution:
            return pollute(key, value, self.rng)
        if self.fault is Fault.stuck:
            return self.stuck.setdefault(key, value)
        if self.fault is Fault.drift:
            return clamp(key, value + 0.02 * span * elapsed_h)
        if self.fault is Fault.spike and self.rng.random() < 0.05:
            return clamp(key, value + self.rng.choice((-1, 1)) * 0.3 * span)
        return value
