"""Event-time evaluation: a rule's verdict on each reading, in observation order, becomes episodes.

An episode opens at the first violating reading, holds while readings stay in the hysteresis band
(neither violating nor clearing), and ends at the first clearing reading; one that lasted less than
the rule's minimum duration is dropped. Evaluation is a pure function of the stored readings, so
late, repeated or out-of-order data is handled by evaluating the affected window again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
POLLUTION_SKIP_FLAGS = frozenset("MCDFSB")
"""HJ 212 flags of values that must not raise pollution alerts: maintenance, calibration, fault, stopped, manual,
communication lost."""


@dataclass(frozen=True, slots=True)
class Point:
    ts: dt.datetime
    value: float
    flag: str | None = None


class State(Enum):
    VIOLATE = "violate"
    HOLD = "hold"
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    severity: str = "warning"
    detail: str = ""
    badness: float = 0.0
    """Larger is worse; the episode keeps the detail of its worst reading."""


CLEAR = Verdict(State.CLEAR)
HOLD = Verdict(State.HOLD)


@dataclass
class Episode:
    start: dt.datetime
    last: dt.datetime
    end: dt.datetime | None
    severity: str
    detail: str
    worst_value: float
    badness: float

    @property
    def active(self) -> bool:
        return self.end is None


def episodes(points: list[Point], judge, min_duration: dt.timedelta,
             skip_flags: frozenset[str] = frozenset()) -> list[Episode]:
    """Episodes of ``judge`` over ``points`` (sorted by time)."""
    found: list[Episode] = []
    current: Episode | None = None
    for point in points:
        if point.flag in skip_flags:
            continue
        verdict = judge(point)
        if verdict.state is State.VIOLATE:
            if current is None:
                current = Episode(point.ts, point.ts, None, verdict.severity, verdict.detail, point.value,
                                  verdict.badness)
            else:
                _extend(current, point, verdict)
        elif verdict.state is State.CLEAR and current is not None:
            current.end = point.ts
            if current.last - current.start >= min_duration:
                found.append(current)
            current = None
    if current is not None and current.last - current.start >= min_duration:
        found.append(current)
    return found


def _extend(episode: Episode, point: Point, verdict: Verdict) -> None:
    episode.last = point.ts
    if SEVERITY_ORDER[verdict.severity] > SEVERITY_ORDER[episode.severity]:
        episode.severity = verdict.severity
    if verdict.badness > episode.badness:
        episode.badness, episode.detail, episode.worst_value = verdict.badness, verdict.detail, point.value
