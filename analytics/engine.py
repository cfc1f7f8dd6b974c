"""Event-time evaluation: a rule's verdict on each reading, in observation order, becomes episodes.

An episode opens at the first violating reading, holds while readings stay in the hysteresis band
(neither violating nor clearing), and ends at the first clearing reading; one that lasted less than
the rule's minimum duration is dropped. Evaluation is a pure function of the stored readings, so
late, repeated or out-of-order data is handled by evaluating the affected window again.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
POLLUTION_SKIP_FLAGS = frozenset("MCDFSB")
"""HJ 212 flags of values that must not raise pollution alerts: M maintenance, C calibration, D fault, F stopped,
S manual, B communication lost (N normal and T over range still count). The one source of truth: docs/rules.md
and docs/devices.md cite this constant."""


class Point(NamedTuple):
    """A reading of one series. A named tuple, not a frozen dataclass: a rule worker makes one for every reading it
    reads, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) cost twice a tuple's."""
    ts: dt.datetime
    value: float
    flag: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What an alert states, field by field (the detail text is their summary): stored on the alert."""
    metric: str
    unit: str
    limit: float | None = None
    """The limit crossed (for a class rule: the target class's limit)."""
    direction: str | None = None
    """above, below, outside (a band), falling (a rate), stuck, jump, drift, silent."""
    standard: str | None = None
    """The standard and its version, e.g. GB 3838-2002."""
    grade: str | None = None
    """The class reached (GB 3838), the discharge grade (GB 18918) or the alarm level (gas)."""

    def to_json(self) -> dict:
        return {"metric": self.metric, "unit": self.unit, "limit": self.limit, "direction": self.direction,
                "standard": self.standard, "grade": self.grade}


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
    facts: Facts | None = None


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
    facts: Facts | None = None

    @property
    def active(self) -> bool:
        return self.end is None


def spiked(before: Point, spike: Point, after: Point, limit: float, within: dt.timedelta) -> bool:
    """QARTOD spike test: ``spike`` stands more than ``limit`` away from the mean of its neighbours, which agree
    with each other to within ``limit`` and lie within ``within`` of each other."""
    if after.ts - before.ts > within:
        return False
    return abs(after.value - before.value) < limit < abs(spike.value - (before.value + after.value) / 2)


class SpikeScreen:
    """The spike test in front of a bureau's rule: a spike is a device matter (``device:jump``), not pollution.

    A reading that jumped far enough from the one before it to be a spike is held until the next reading shows
    whether it was one (then it is never judged) or a real change (then it is judged, with its own observation
    time). Only such sudden jumps wait one reading; everything else is judged at once. Memory: two readings."""

    __slots__ = ("before", "held", "limit", "within")

    def __init__(self, limit: float, within: dt.timedelta) -> None:
        self.limit, self.within = limit, within
        self.before: Point | None = None
        self.held: Point | None = None

    def admit(self, point: Point) -> tuple[Point, ...]:
        """The readings to judge now, in order, once ``point`` has arrived."""
        released: tuple[Point, ...] = ()
        held, self.held = self.held, None
        if held is not None and not (self.before is not None and spiked(self.before, held, point, self.limit,
                                                                         self.within)):
            released, self.before = (held,), held
        before = self.before
        # A spike stands more than ``limit`` from its neighbours' mean, which lies within limit/2 of either.
        if before is not None and abs(point.value - before.value) > self.limit / 2 \
                and point.ts - before.ts <= self.within:
            self.held = point
            return released
        self.before = point
        return (*released, point)

    def passing(self, points: Sequence[Point], at: int) -> int:
        """Where the run of ``points`` from ``at`` that this screen would pass on one by one, each as it comes,
        ends (``admit`` holds nothing and would hold none of them): the readings before that index may be judged
        as a run, and ``passed`` told the last one judged."""
        if self.held is not None:
            return at
        before, half, within = self.before, self.limit / 2, self.within
        for i in range(at, len(points)):
            point = points[i]
            if before is not None and abs(point.value - before.value) > half and point.ts - before.ts <= within:
                return i
            before = point
        return len(points)

    def passed(self, point: Point) -> None:
        """The readings up to ``point`` of a run ``passing`` found have been judged: as ``admit`` leaves it."""
        self.before = point

    def expire(self, now: dt.datetime) -> Point | None:
        """The held reading, released, once no reading arriving from ``now`` on could make it a spike: the spike
        test's neighbours lie within ``within`` of each other, so after ``within`` past the reading before it
        (three intervals), it stands. A detector that jumps to an alarm value and falls silent (burnt, cut off)
        is judged then, not left waiting for a reading that never comes. ``now`` is in observation time (the
        stream's ``TerminalStream.clock``)."""
        held = self.held
        if not self.due(now):
            return None
        self.held, self.before = None, held
        return held

    def due(self, now: dt.datetime) -> bool:
        """A reading is held that no reading arriving from ``now`` on could make a spike."""
        return self.held is not None and self.before is not None and now - self.before.ts > self.within


class Tracker:
    """The episode of one (terminal, rule) as readings are judged one by one, in observation order.

    ``episodes`` runs it over a window; the stream keeps one per (terminal, rule) between batches and persists
    ``current`` (``to_json``/``from_json``) so a restarted worker resumes exactly where it stopped. A ``screen``
    (bureau rules) keeps spikes from being judged at all."""

    __slots__ = ("current", "min_duration", "screen", "skip_flags")

    def __init__(self, min_duration: dt.timedelta, skip_flags: frozenset[str] = frozenset(),
                 current: Episode | None = None, screen: SpikeScreen | None = None) -> None:
        self.min_duration, self.skip_flags, self.current = min_duration, skip_flags, current
        self.screen = screen

    def admitted(self, point: Point) -> tuple[Point, ...]:
        """The readings judged now that ``point`` has arrived: none if flagged or held, two if it released one."""
        if point.flag in self.skip_flags:
            return ()
        return self.screen.admit(point) if self.screen is not None else (point,)

    def feed(self, point: Point, judge) -> Episode | None:
        """Judge the point (and a reading it released); returns the episode it ended when that one lasted long
        enough (at most one can end)."""
        ended = None
        for admitted in self.admitted(point):
            ended = self._judge(admitted, judge) or ended
        return ended

    def feed_all(self, points: Sequence[Point], judge) -> list[Episode]:
        """``feed`` each point in order; the episodes they ended that lasted. The stream's hot path: a verdict that
        changes nothing (no episode, nothing violated) costs the judge's call and no more, and a judge that judges
        a run of readings at once (``run``, ``runs``) is given every run of readings that cannot change the episode
        (none is open, and the screen passes them on as they come) in one call, which stops at the first
        violation."""
        found: list[Episode] = []
        skip, screen = self.skip_flags, self.screen
        run = getattr(judge, "run", None) if not skip else None
        at, end = 0, len(points)
        while at < end:
            if run is not None and self.current is None:
                upto = end if screen is None else screen.passing(points, at)
                if upto > at:
                    stop, verdict = run(points, at, upto)
                    if screen is not None:
                        screen.passed(points[min(stop, upto - 1)])
                    if stop < upto:
                        self._apply(points[stop], verdict)
                        at = stop + 1
                        continue
                    at = upto
                    if at == end:
                        break
            point = points[at]
            at += 1
            if point.flag in skip:
                continue
            for admitted in (point,) if screen is None else screen.admit(point):
                verdict = judge(admitted)
                if self.current is None and verdict.state is not State.VIOLATE:
                    continue
                if (ended := self._apply(admitted, verdict)) is not None:
                    found.append(ended)
        return found

    def expire(self, now: dt.datetime, judge) -> tuple[Point | None, Episode | None]:
        """Judge a reading the screen held that no later reading can now show to be a spike (``SpikeScreen.expire``);
        returns it (None if there was none) and the episode it ended, if it lasted."""
        held = self.screen.expire(now) if self.screen is not None else None
        return (held, self._judge(held, judge)) if held is not None else (None, None)

    def _judge(self, point: Point, judge) -> Episode | None:
        return self._apply(point, judge(point))

    def _apply(self, point: Point, verdict: Verdict) -> Episode | None:
        if verdict.state is State.VIOLATE:
            if self.current is None:
                self.current = Episode(point.ts, point.ts, None, verdict.severity, verdict.detail, point.value,
                                       verdict.badness, verdict.facts)
            else:
                _extend(self.current, point, verdict)
        elif verdict.state is State.CLEAR and self.current is not None:
            ended, self.current = self.current, None
            ended.end = point.ts
            return ended if self.lasted(ended) else None
        return None

    def snapshot(self) -> tuple:
        """What the tracker remembers (the episode in progress, the screen's readings), to ``restore`` later."""
        screen = (self.screen.before, self.screen.held) if self.screen is not None else None
        return (copy.copy(self.current), screen)

    def restore(self, saved: tuple) -> None:
        current, screen = saved
        self.current = copy.copy(current)  # an episode is extended in place: the saved one stays as it was
        if self.screen is not None:
            self.screen.before, self.screen.held = screen

    def lasted(self, episode: Episode) -> bool:
        return episode.last - episode.start >= self.min_duration

    def ongoing(self) -> Episode | None:
        """The open episode, once it has lasted the minimum duration."""
        return self.current if self.current is not None and self.lasted(self.current) else None


def _extend(episode: Episode, point: Point, verdict: Verdict) -> None:
    episode.last = point.ts
    if SEVERITY_ORDER[verdict.severity] > SEVERITY_ORDER[episode.severity]:
        episode.severity = verdict.severity
    if verdict.badness > episode.badness:
        episode.badness, episode.detail, episode.worst_value = verdict.badness, verdict.detail, point.value
        episode.facts = verdict.facts


def episode_to_json(episode: Episode | None) -> dict | None:
    if episode is None:
        return None
    return {"start": episode.start.isoformat(), "last": episode.last.isoformat(), "severity": episode.severity,
            "detail": episode.detail, "worst_value": episode.worst_value, "badness": episode.badness,
            "facts": episode.facts.to_json() if episode.facts else None}


def episode_from_json(data: dict | None) -> Episode | None:
    if data is None:
        return None
    facts = Facts(**data["facts"]) if data.get("facts") else None
    return Episode(dt.datetime.fromisoformat(data["start"]), dt.datetime.fromisoformat(data["last"]), None,
                   data["severity"], data["detail"], data["worst_value"], data["badness"], facts)
