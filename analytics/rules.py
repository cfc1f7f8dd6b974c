"""The rules each terminal is held to, derived from its kind, its attributes and the standards.

A rule names the series it reads (``metric``), who gets its alerts (``bureau``), and makes a judge
for one evaluation run (judges of rate, stuck or jump rules remember the previous reading).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import operator
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

from analytics import standards
from analytics.engine import (
    CLEAR,
    HOLD,
    POLLUTION_SKIP_FLAGS,
    Episode,
    Facts,
    Point,
    SpikeScreen,
    State,
    Tracker,
    Verdict,
    spiked,
)
from core.settings import get_settings
from devices import drift_limit
from devices import metric as metric_spec

BEIJING = dt.timezone(dt.timedelta(hours=8))
"""The zone that decides days and seasons: the standard version in force, the heating season, the night of the
night-flow rule and the day of daily compliance are all Beijing (UTC+8) dates and hours."""
DEFAULT_LOOKBACK = dt.timedelta(hours=6)
"""History a rule's verdict on a reading may depend on, unless the rule says otherwise (device-health judges
remember the previous readings: 12 readings of a 30-minute station)."""
Judge = Callable[[Point], Verdict]


def remembering(judge: Judge, snapshot: Callable[[], object], restore: Callable[[object], None]) -> Judge:
    """A judge with a memory (the last readings, time bins) that says how to copy it (``snapshot``) and put a copy
    back (``restore``, which must leave the copy reusable): the rule stream rewinds it to take in a reading that
    arrives a moment late instead of re-reading hours of history (analytics/evaluate.py, ``RuleStream.rewind``)."""
    judge.snapshot, judge.restore = snapshot, restore
    return judge


def rewindable(judge: Judge) -> bool:
    """A judge whose memory the stream can note and put back: one that says how (``remembering``), or one
    that keeps none (nothing but plain values in its closure; a judge keeping something else is re-read)."""
    if hasattr(judge, "snapshot"):
        return True
    cells = getattr(judge, "__closure__", None) or ()
    return all(isinstance(cell.cell_contents, _PLAIN) for cell in cells)


def latch_of(judge: Judge) -> dict | None:
    """What ``rule_state`` persists of a judge's memory beside its episode (a quality flag's latch), as JSON."""
    return judge.latch() if hasattr(judge, "latch") else None


SENSOR_OK, FIXING = "sensor_ok", "fixing"
"""The steward's verdict when acknowledging a ``device:drift`` alert (``alert.verdict``): the analyser was checked
and reads true, or it is being fixed (an acknowledgement without a verdict means fixing)."""
SHELVE_MAX = dt.timedelta(hours=24)
"""An analyser acknowledged as being fixed keeps its doubted readings from escalating this long after the
acknowledgement at most (ISA-18.2 shelving expires): a repair forgotten pages the bureau after all."""


def take_context(judge: Judge, series: dict[str, Sequence[Point]]) -> None:
    """Hand a streamed judge its context's readings newer than those it has (``Rule.takes_context``), before it
    judges the readings of its own series that they may bear on."""
    if any(series.values()):
        judge.take_context(series)


def heed(judge: Judge, alerts: list[dict]) -> None:
    """Tell a judge that heeds stored alerts (``Rule.heeds``) what they are: that rule's stored alerts (the steward's
    word on a drift alert; a stuck rule's own calls)."""
    if hasattr(judge, "heed"):
        judge.heed(alerts)


def resumed(judge: Judge, latch: dict | None) -> Judge:
    """``judge`` taking up a persisted latch (``latch_of``) before it judges anything."""
    if latch is not None and hasattr(judge, "resume"):
        judge.resume(latch)
    return judge


_PLAIN = (type(None), bool, int, float, str, dt.datetime, dt.date, dt.timedelta)
_TS = operator.attrgetter("ts")


def _lists(*memory: list) -> tuple[Callable[[], object], Callable[[object], None]]:
    """``snapshot`` and ``restore`` of a memory kept in lists of values never changed in place."""
    def restore(saved: tuple) -> None:
        for kept, copy in zip(memory, saved, strict=True):
            kept[:] = copy

    return (lambda: tuple(kept[:] for kept in memory)), restore


@dataclass(frozen=True)
class TerminalInfo:
    id: int
    code: str
    kind: str
    department: str
    division: str
    pole: str | None
    lon: float
    lat: float
    report_interval_s: int
    metrics: tuple[str, ...]
    attrs: dict


@dataclass(frozen=True)
class Peer:
    """One neighbour of a terminal (``analytics.neighbours``): its series of the metric, and what weighs it."""
    series: list[Point]
    interval: dt.timedelta
    """Its reporting interval: a gap of more than ``SILENT_INTERVALS`` of them is silence, as ``device:nodata`` has
    it."""
    on_pole: bool = False
    """On the terminal's own pole: behind the same gateway, so a freeze of the pole freezes both."""
    doubts: tuple[tuple[str, dt.datetime, dt.datetime | None], ...] = ()
    """Its own device alerts on the metric on from the series' start (``MOVED_BY_FAULT``): (kind, when it began,
    when it ended or None)."""


@dataclass(frozen=True)
class Nearby:
    """The same metric's series of a terminal's neighbours (``analytics.neighbours``) from a flat line's start on."""
    where: str
    """Where they are, for the alert's text: ``pole …`` or the river's name."""
    peers: tuple[Peer, ...]


class NeighbourLookup(Protocol):
    def of(self, t: TerminalInfo, metric: str, since: dt.datetime) -> Nearby | None: ...


@dataclass(frozen=True)
class Rule:
    key: str
    family: str
    bureau: str
    metric: str
    make_judge: Callable[[dict[str, list[Point]]], Judge]
    min_duration: dt.timedelta = dt.timedelta(0)
    skip_flags: frozenset[str] = frozenset()
    context: tuple[str, ...] = ()
    """Other series the judge looks at (a sewage outlet's water temperature)."""
    takes_context: bool = False
    """The judge takes its context's readings as they arrive (``take_context``) and is streamed like any rule; without
    it a rule with a context is re-evaluated over its window."""
    nightly: tuple[int, int] | None = field(default=None)
    """Judge the minimum of each night's readings between these Beijing hours instead of every reading."""
    lookback: dt.timedelta = DEFAULT_LOOKBACK
    """How much history before a reading its verdict depends on: how far back a late reading makes the worker
    re-read, and how much a restarted worker replays to restore the judge's memory."""
    memory: int | None = None
    """When set: a verdict depends on this many readings before it, not on time, once no episode or alert of the
    rule is near (within the lookback) — a late reading then makes the rule re-read from that many readings before
    it (or before the episode or alert it may belong to) when the worker remembers them, else its lookback."""
    every: dt.timedelta = dt.timedelta(0)
    """A rule evaluated over its window (not streamable) is evaluated again on new readings at most this often
    (late readings always make it evaluate): a flat line judged over hours needs no judgement every second."""
    screen: tuple[float, dt.timedelta] | None = None
    """The spike test's (limit, within) in front of a bureau's rule (``SpikeScreen``): a reading the spike test
    calls a spike never counts for it."""
    latched: bool = False
    """Its judge keeps a latch (``_quality_checked``) that ``rule_state`` persists (``latch_of``, ``resumed``): a
    re-read or a restarted worker takes it up instead of rebuilding it from hours of readings."""
    heeds: str | None = None
    """A rule (key) whose stored alerts the judge is told of (``heed``): the analyser's drift alert, whose
    acknowledgement it heeds, or the stuck rule's own (a line called stays called)."""

    @cached_property
    def streamable(self) -> bool:
        """Judged reading by reading as they arrive; a nightly rule, or a context rule whose judge does not take its
        context as it arrives, is re-evaluated over its window."""
        return self.nightly is None and (not self.context or self.takes_context)

    @cached_property
    def every_s(self) -> float:
        return self.every.total_seconds()

    def default_facts(self) -> Facts:
        """The fields of an alert whose judge states none (device health): the metric, its unit, the kind."""
        spec = metric_spec(self.metric.split(":")[0])
        kind = self.key.split(":")[1] if self.family == "device" else None
        return Facts(self.metric, spec.unit if spec else "", direction={"nodata": "silent"}.get(kind, kind))

    def make_tracker(self, current: Episode | None = None) -> Tracker:
        """The rule's episode tracker; a nightly rule screens the raw readings before taking their minimum."""
        screen = SpikeScreen(*self.screen) if self.screen and not self.nightly else None
        return Tracker(self.min_duration, self.skip_flags, current, screen)

    def evaluate(self, series: dict[str, list[Point]], now: dt.datetime | None = None,
                 latch: dict | None = None) -> list[Episode]:
        """``latch``: the judge's persisted latch (``latch_of``); without one the series starts at the terminal's
        first reading."""
        return self.evaluate_with(series, resumed(self.make_judge(series), latch), self.make_tracker(), now)

    def evaluate_with(self, series: dict[str, list[Point]], judge: Judge, tracker: Tracker,
                      now: dt.datetime | None = None) -> list[Episode]:
        """Episodes over a window, leaving ``judge`` and ``tracker`` where the window ends (the stream goes on
        from there). ``now``: when the window is judged; a last reading the spike screen holds is judged too if no
        reading arriving from then on could make it a spike (``SpikeScreen.expire``)."""
        points = series.get(self.metric, [])
        if self.nightly:
            if self.screen:
                screen = SpikeScreen(*self.screen)
                points = [admitted for point in points for admitted in screen.admit(point)]
            siblings = {m: series.get(m, []) for m in self.context}
            points = night_minima(flat_lines_dropped(points, self.metric, siblings), *self.nightly)
        found = tracker.feed_all(points, judge)
        if now is not None and (ended := tracker.expire(now, judge)[1]) is not None:
            found.append(ended)
        ongoing = tracker.ongoing()
        return [*found, ongoing] if ongoing else found


FLATLINE_DELAY = 60
"""A stuck-sensor rule is evaluated again after 1/60 of its flat-line window (6 minutes for 6 hours), at least
after a minute: it is called at most that much later than a reading-by-reading judgement would."""


def rules_for(t: TerminalInfo, neighbours: NeighbourLookup | None = None) -> list[Rule]:
    """``neighbours``: where the stuck-sensor rules look up the terminal's neighbours (the rule workers'); without
    it they compare a flat line with the terminal's own other sensors only."""
    family = _FAMILIES.get(t.kind)
    rules = [_quality_checked(_screened(rule, t), t, neighbours) for rule in (family(t) if family else [])]
    return rules + [_flatline_window(rule, t) if rule.key.startswith("device:stuck:") else rule
                    for rule in device_health(t, neighbours)]


def _screened(rule: Rule, t: TerminalInfo) -> Rule:
    """A bureau's rule on a live series judges no reading the spike test calls a spike (a methane detector's one
    reading of 30 %LEL is the steward's ``device:jump``, not a leak); its lookback covers the spike test's
    neighbours, so a restarted worker or a re-read window knows the reading before."""
    spec = metric_spec(rule.metric)
    if spec is None:  # a daily mean (``…:avg:day``): no spikes to screen
        return rule
    within = dt.timedelta(seconds=3 * t.report_interval_s)
    return replace(rule, screen=(SPIKE_SHARE * (spec.high - spec.low), within), lookback=max(rule.lookback, within))


ANALYSER_FAMILIES = frozenset({"river", "sewage"})
"""Families whose limits are judged on water-quality analysers (wet chemistry that fouls and drifts by nature):
the only ones the quality flag stands in front of. A gas or heating limit guards people and pipes, and there a
steady rise is as likely the plant as the sensor (a regulator creeping, a mixing valve failing): it always pages."""


def _quality_checked(rule: Rule, t: TerminalInfo, neighbours: NeighbourLookup | None = None) -> Rule:
    """QARTOD-style quality flag in front of an analyser's bureau rule (``ANALYSER_FAMILIES``). A reading over the
    limit is judged at once when the readings show it good; otherwise it is held (opens no episode) while it is:

    - *suspect*: the drift test (``_drift_judge``, the same one that raises ``device:drift`` for the steward) calls
      the series creeping, or did within a drift window (an off-delay, since a creep whose noise makes one quarter
      lag is still the same creep); latched from the first such reading over the limit until the readings come back
      under it (a drift test on 30-minute readings loses a creep for hours on noise). A drifting analyser reading
      over a limit is the steward's calibration job, not a pollution event to page the bureau about (ISA-18.2:
      every alarm actionable by who receives it). Still standing ``drift_escalation_h`` (a setting, 12 h) after it
      latched, nobody having recalibrated the analyser (which brings the readings back) nor flagged it in
      maintenance or calibration (skipped), it pages the bureau, marked unconfirmed: a breach may hide behind it;
    - *pending*: the series is over the limit without standing a step (``_rise_step``) away from where the trend
      of its last readings put it (``_note``), so it may be a creep the drift test cannot call yet (a creep from
      close under a limit crosses it before two hours of creep show): held until the drift test has watched the
      crossing for a whole drift window. Then it is either suspect, or the rise is real (slow, from close under
      the limit) and pages, a drift window late. A real discharge or pollution event is a step (tripled in one
      reading): judged from its first reading, and for as long as it stands a step above its level before (a daily
      swing on top of an event crossing the limit hours later is judged at once too);
    - *not evaluated*: the judge is built over a window starting after the terminal's first stored reading (a
      window rule re-evaluated as readings arrive, a streamed rule's window re-read for a late reading, or the
      lookback a restarted worker replays, ``RuleStream.replay``), spanning its lookback, and the drift test has not
      yet seen a window before the reading. A window starting at the terminal's first reading, or a shorter one (the
      first readings after an outage longer than the lookback), is judged from its first reading.

    The latch (when the doubt began, the escalation's note, when the readings came back under the limit, the
    terminal's first reading, the steward's word) is persisted with the rule's state (``latch_of``,
    ``rule_state.latch``) and taken up by every re-read and restart (``resumed``): a violation at or after the
    latched time, and before the readings came back, is suspect since then (an escalation already paged keeps its
    note), so the lookback is only what the drift test needs (two drift windows and three intervals). The last latch
    is kept once over, so a re-read anchored on the escalated alert it paged finds it again. A re-read with no latch
    whose series is over the limit from its first reading and shows no step takes it as suspect from that first
    reading.

    *Corroborated* (``neighbours``: the stations on the same river reach): a violation held suspect or pending is let
    through, confirmed, when a neighbour's series of the metric creeps the same way (the same drift test) from a drift
    window before the doubt on: no analyser drifts in step with the stations up and down its river, so the river rose
    (a spill ramping up, which the drift test alone cannot tell from a drifting analyser). Neighbours are asked only
    while a violation is held, again each quarter of a drift window of observation time; only their readings up to
    the one judged count, and not those on the station's own pole (``_alike``). A steward's ``FIXING`` shelf holds
    against them too: the neighbours that rose alike page on their own rules.

    The steward's word on the ``device:drift`` alert, given open or resolved (``heed``): ``SENSOR_OK`` judges the
    readings at once, confirmed; ``FIXING`` shelves the escalation of readings observed from the acknowledgement on,
    until the readings come back under the limit or for ``SHELVE_MAX``; an escalation that paged before stays.

    None of this ends or dulls an alarm already open on readings judged good: it goes on being judged on every
    reading, suspect or not, so it is neither silenced by a later doubt nor kept from turning critical. A nightly
    rule judges a night's minimum, not the series: it is left as it is."""
    limit = drift_limit(t.kind, rule.metric)
    if limit is None or rule.nightly or rule.family not in ANALYSER_FAMILIES:
        return rule
    window, plain = drift_window(t), rule.make_judge
    interval = dt.timedelta(seconds=t.report_interval_s)
    step = _rise_step(limit, window)
    escalate = dt.timedelta(hours=get_settings().drift_escalation_h)
    lookback = max(rule.lookback, 2 * window + 3 * interval)
    nearby = functools.partial(neighbours.of, t, rule.metric) if neighbours else None

    def make_judge(series: dict[str, list[Point]]) -> Judge:
        judge, creep = plain(series), _drift_judge(rule.metric, window, limit)
        alike = _alike(rule.metric, window, limit, nearby) if nearby else None
        points = series.get(rule.metric, [])
        # The series spans its lookback, less the two reporting intervals its first reading may lie after the cut:
        # a window re-read or a replay. A shorter one starting after the terminal's first reading is the first
        # after an outage longer than the lookback, judged at once.
        spans = len(points) > 1 and points[-1].ts - points[0].ts >= lookback - 2 * interval
        # window's first reading, the terminal's first stored reading (``origin``), last doubted, level before a
        # step up / down, pending and suspect since, the escalation's note (while its alarm is open), previous
        # value, the latch a resumed judge was given (``latched``: doubt since, its note, when the readings came
        # back under the limit or None) and the last latch that ended (``ended``: the same three)
        marks: dict[str, list] = {name: [] for name in ("first", "origin", "doubted", "under", "up", "down",
                                                         "pending", "suspect", "escalated", "previous", "latched",
                                                         "ended")}
        raised = [False]  # the last verdict let through was a violation: an alarm is open
        steward = marks["steward"] = []  # the drift alert acknowledged: verdict, when (until the latch is over)

        def checked(point: Point) -> Verdict:
            verdict = judge(point)
            _note(marks, point, creep(point).state is not State.CLEAR, step)
            if verdict.state is not State.VIOLATE:
                marks["under"][:] = [point.ts]
            if verdict.state is State.CLEAR or raised[0]:
                raised[0] = verdict.state is not State.CLEAR
                if verdict.state is State.CLEAR:
                    _end_latch(marks, point)
                    marks["pending"][:] = marks["suspect"][:] = marks["escalated"][:] = []
                    if steward and point.ts >= steward[1]:
                        steward[:] = []  # and with it the steward's word on it
                return _noted(verdict, marks["escalated"])
            if verdict.state is not State.VIOLATE:
                return verdict
            origin = (marks["origin"] or marks["first"])[0]
            cut = origin < marks["first"][0] and spans  # a re-read: its first window not evaluated
            latched = _resume_latch(marks, point)
            if cut and not marks["under"] and not _latch_known(marks, point):  # over the limit since before the
                marks["suspect"][:] = marks["suspect"] or marks["first"]  # window, no latch known: suspect since then
            vouched = steward[:1] == [SENSOR_OK]  # a person checked the analyser: its readings are good
            shelved = (steward[1], steward[1] + SHELVE_MAX) if steward[:1] == [FIXING] else None
            # the terminal's first reading, or the first after an outage (no doubt latched): nothing crept yet
            fresh = point.ts == origin or (not cut and not latched and point.ts == marks["first"][0])
            held = False if fresh or vouched or _stepped(marks, verdict) \
                else _held(marks, point, window, escalate, shelved)
            if held is True and alike is not None and not _shelving(shelved, point):  # the steward's shelf stands
                doubt = (marks["suspect"] or marks["pending"])[0]
                held = alike(doubt - window, point.ts, verdict) or True
            if held is True or (cut and not latched and not vouched and point.ts - marks["first"][0] < window):
                return HOLD  # suspect, pending, or not evaluated (the drift test has not seen the readings before)
            raised[0] = True
            marks["escalated"][:] = [held] if held else []
            return _noted(verdict, marks["escalated"])

        def latch() -> dict:
            """What ``rule_state`` keeps of the flag: the terminal's first reading, doubt since, its note, and when
            the readings came back under the limit (None while the doubt stands)."""
            origin = marks["origin"] or marks["first"]
            since, note, cleared = _current_latch(marks)
            return {"origin": origin[0].isoformat() if origin else None,
                    "suspect": since.isoformat() if since else None,
                    "note": note,
                    "cleared": cleared.isoformat() if cleared else None,
                    "steward": [steward[0], steward[1].isoformat()] if steward else None}

        def resume(saved: dict) -> None:
            """Take up a persisted ``latch`` before judging: a re-read or a replay starting after the doubt began
            goes on from it (escalating when it is due), not from its own first reading."""
            marks["origin"][:] = [dt.datetime.fromisoformat(saved["origin"])] if saved.get("origin") else []
            cleared = saved.get("cleared")
            marks["latched"][:] = [dt.datetime.fromisoformat(saved["suspect"]), saved.get("note"),
                                   dt.datetime.fromisoformat(cleared) if cleared else None] \
                if saved.get("suspect") else []
            verdict = saved.get("steward")
            steward[:] = [verdict[0], dt.datetime.fromisoformat(verdict[1])] if verdict else []

        def heed_steward(alerts: list[dict]) -> None:
            """Take in the steward's word on the drift alert (its acknowledgement, with its verdict, whatever the
            alert's status since: it resolves when the creep stops, the analyser still at its offset): sensor OK
            judges the readings at once, confirmed; fixing (or none) shelves the escalation for ``SHELVE_MAX`` at
            most. It holds, persisted with the latch, until the readings come back under the limit. Only a word on
            this doubt is taken: on a drift alert still on when the doubt standing began (``_heeded``), or, with no
            doubt standing, given after the last one ended; never a word on a doubt already over."""
            since, _, cleared = _current_latch(marks)
            said = _heeded(alerts, since, cleared)
            if said is not None:
                steward[:] = [said.get("verdict") or FIXING, said["acknowledged_at"]]

        checked.latch, checked.resume, checked.heed = latch, resume, heed_steward
        if hasattr(judge, "take_context"):
            checked.take_context = judge.take_context
        if not rewindable(judge):
            return checked

        def snapshot() -> tuple:
            return (inner(), creep.snapshot(), {k: v[:] for k, v in marks.items()}, raised[:])

        def restore(saved: tuple) -> None:
            kept, drift, saved_marks, raised[:] = saved
            creep.restore(drift)
            for name, value in saved_marks.items():
                marks[name][:] = value
            if kept is not None:
                judge.restore(kept)

        inner = getattr(judge, "snapshot", lambda: None)
        return remembering(checked, snapshot, restore)

    return replace(rule, make_judge=make_judge, lookback=lookback,
                   latched=True, heeds=f"device:drift:{rule.metric}")


def _alike(key: str, window: dt.timedelta, limit_per_h: float,
           nearby: Callable[[dt.datetime], Nearby | None]) -> Callable[[dt.datetime, dt.datetime, Verdict], str | None]:
    """Whether the neighbours' series of ``key`` (``nearby``) creep the way a held violation went, from ``since`` to
    ``ts``: a note for the alarm when one does, else None. The answer is kept for a quarter of a drift window of
    observation time (and for as long as ``since`` stays), so a held series asks once in a while, not per reading.
    Only the neighbours' readings up to ``ts`` count (judged late, with their later readings stored, a reading is
    judged as it was live), and not those on the station's own pole: analysers in one housing share its sampling,
    and foul and drift together."""
    asked: dict = {}

    def alike(since: dt.datetime, ts: dt.datetime, verdict: Verdict) -> str | None:
        rising = (verdict.facts.direction if verdict.facts else "above") != "below"
        if asked.get("since") != since or (asked["note"] is None and ts - asked["at"] >= window / 4):
            found = nearby(since)
            crept = [] if found is None else [
                peer for peer in found.peers if not peer.on_pole
                and _creeps(key, window, limit_per_h, [p for p in peer.series if p.ts <= ts], rising)]
            note = None
            if crept:
                way = "rose" if rising else "fell"
                note = f"{len(crept)} of its neighbours on {found.where} {way} alike: the river, not the analyser"
            asked.update(since=since, at=ts, note=note)
        return asked["note"]

    return alike


def _creeps(key: str, window: dt.timedelta, limit_per_h: float, points: list[Point], rising: bool) -> bool:
    """The drift test calls the series (unflagged readings) creeping the ``rising`` way at some reading."""
    creep = _drift_judge(key, window, limit_per_h)
    good = [p for p in points if p.flag in (None, "N")]
    for i, point in enumerate(good):
        if creep(point).state is State.VIOLATE:
            before = good[bisect.bisect_left(good, point.ts - window, hi=i, key=lambda p: p.ts)]
            if (point.value > before.value) == rising:
                return True
    return False


def _resume_latch(marks: dict[str, list], point: Point) -> bool:
    """A violation within the doubt a resumed judge was given (``latched``: at or after it began, before the
    readings came back under the limit) is suspect since then, with the note of an escalation already paged: the
    latch persisted, not rebuilt from the readings."""
    latched = marks["latched"]
    if not latched or point.ts < latched[0] or (latched[2] is not None and point.ts >= latched[2]):
        return False
    marks["suspect"][:] = marks["suspect"] or latched[:1]
    return True


def _latch_known(marks: dict[str, list], point: Point) -> bool:
    """A resumed judge knows the doubt at ``point``: its latch has not ended by then (it may begin later)."""
    latched = marks["latched"]
    return bool(latched) and (latched[2] is None or point.ts < latched[2])


def _end_latch(marks: dict[str, list], point: Point) -> None:
    """The readings came back under the limit at ``point``: the doubt standing (or the latch taken up, begun by
    then) ends; it is kept as ``ended``, so that a later re-read of a window reaching into it (anchored on the
    escalated alert it paged) finds the same doubt, not one rebuilt from the window's start."""
    latched = marks["latched"]
    if marks["suspect"]:
        note = marks["escalated"][:1] or [n for n in latched[1:2] if n and latched[:1] == marks["suspect"]]
        marks["ended"][:] = [marks["suspect"][0], note[0] if note else None, point.ts]
    elif latched and latched[2] is None and point.ts >= latched[0]:
        marks["ended"][:] = [latched[0], latched[1], point.ts]
    if latched and latched[2] is None and point.ts >= latched[0]:
        latched[2] = point.ts  # the latch taken up is over


def _current_latch(marks: dict[str, list]) -> tuple[dt.datetime | None, str | None, dt.datetime | None]:
    """The latch to persist: the doubt standing, else a latch taken up and not yet met again, else the last one
    that ended (doubt since, its note, when it ended)."""
    latched = marks["latched"]
    if marks["suspect"]:
        taken_up = latched[:1] == marks["suspect"]  # a window ending before the latch it took up ended: still ended
        note = marks["escalated"][:1] or [n for n in latched[1:2] if n and taken_up]
        return marks["suspect"][0], note[0] if note else None, latched[2] if taken_up else None
    if marks["ended"] and (not latched or marks["ended"][0] >= latched[0]):
        return marks["ended"][0], marks["ended"][1], marks["ended"][2]
    if latched:
        return latched[0], latched[1], latched[2]
    return None, None, None


def _heeded(alerts: list[dict], since: dt.datetime | None, cleared: dt.datetime | None) -> dict | None:
    """The latest acknowledgement among the drift alerts (``acknowledged_at``) that speaks of the doubt the latch
    holds (``since``, ``cleared``: ``_current_latch``): while the doubt stands, one on a drift alert still on when
    it began; once it ended (or none ever stood), one given after it ended."""
    def speaks(alert: dict) -> bool:
        if cleared is None and since is not None:
            return alert.get("observed_end") is None or alert["observed_end"] >= since
        return cleared is None or alert["acknowledged_at"] >= cleared

    said = [a for a in alerts if a.get("acknowledged_at") and speaks(a)]
    return max(said, key=lambda a: a["acknowledged_at"], default=None)


def _rise_step(limit_per_h: float, window: dt.timedelta) -> float:
    """A reading standing further than this from the trend of the readings before it is a step: more than a creep
    at the drift test's limit moves in a whole drift window (QARTOD rate of change, read the other way round)."""
    return limit_per_h * window.total_seconds() / 3600


STEP_READINGS = 5
"""The readings before a reading whose trend it is compared with to tell a step (``_note``)."""


def _note(marks: dict[str, list], point: Point, doubted: bool, step: float) -> None:
    """The quality flag's memory after ``point``: when the series began and was last doubted, and the level it
    stood at before its last step up (``up``) and down (``down``), kept while it stands a step away from it.

    A step is a reading standing more than ``step`` away from where the trend of the ``STEP_READINGS`` readings
    before it (their Theil-Sen line: medians, so one noisy reading among them moves it little) puts it at its
    time: a creep, however long the gap since the last reading, runs on along its trend; a level change does not."""
    marks["first"][:] = marks["first"] or [point.ts]
    if doubted:
        marks["doubted"][:] = [point.ts]
    before = marks["previous"]  # (time, value) of the last readings, oldest first
    if before:
        expected = _trend_at(before, point.ts)
        if point.value - expected > step:
            marks["up"][:] = [expected]
        if expected - point.value > step:
            marks["down"][:] = [expected]
    if marks["up"] and point.value - marks["up"][0] <= step:
        marks["up"][:] = []  # back where it was before the step: the step is over
    if marks["down"] and marks["down"][0] - point.value <= step:
        marks["down"][:] = []
    before[:] = [*before[1 - STEP_READINGS:], (point.ts, point.value)]


def _trend_at(readings: list[tuple[dt.datetime, float]], ts: dt.datetime) -> float:
    """Where the Theil-Sen line of ``readings`` (the median of their pairwise slopes, through the median of their
    values less the slope) stands at ``ts``."""
    origin = readings[-1][0]
    at = [((t - origin).total_seconds(), v) for t, v in readings]
    slope = statistics.median([(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.combinations(at, 2)
                               if b[0] != a[0]] or [0.0])
    level = statistics.median(v - slope * x for x, v in at)
    return level + slope * (ts - origin).total_seconds()


def _stepped(marks: dict[str, list], verdict: Verdict) -> bool:
    """The violation stands a step away from where the series was before it stepped that way: a real event."""
    direction = verdict.facts.direction if verdict.facts else None
    if direction in ("above", "below"):
        return bool(marks["up" if direction == "above" else "down"])
    return bool(marks["up"] or marks["down"])


def _held(marks: dict[str, list], point: Point, window: dt.timedelta, escalate: dt.timedelta,
          shelved: tuple[dt.datetime, dt.datetime] | None = None) -> bool | str:
    """Whether a violation no step explains is held: True while it is suspect (the drift test doubted the series
    within a drift window, latched until the readings come back under the limit) or pending (for a drift window);
    a suspect violation still standing ``escalate`` after it latched is let through, with the note returned, unless
    the steward shelved the escalation (fixing the analyser) for a reading observed within ``shelved`` (from the
    acknowledgement on). An escalation that paged before the re-read stays paged, shelved or not."""
    if _recent(marks["doubted"], point, window):
        marks["suspect"][:] = marks["suspect"] or [point.ts]
    if marks["suspect"]:
        hours = (point.ts - marks["suspect"][0]).total_seconds() / 3600
        if hours >= escalate.total_seconds() / 3600 and marks["latched"][:1] == marks["suspect"] \
                and marks["latched"][1]:
            return marks["latched"][1]  # the escalation paged before the re-read, as it was worded
        if _shelving(shelved, point):
            return True
        return hours < escalate.total_seconds() / 3600 or (
            f"unconfirmed: the analyser has been doubted as drifting for {hours:.0f} h and nobody recalibrated it; "
            "a breach may hide behind the drift")
    marks["pending"][:] = marks["pending"] or [point.ts]
    return point.ts - marks["pending"][0] < window


def _shelving(shelved: tuple[dt.datetime, dt.datetime] | None, point: Point) -> bool:
    """The steward's "fixing" shelves ``point`` (observed within ``shelved``: from the acknowledgement on, for at most
    ``SHELVE_MAX``)."""
    return shelved is not None and shelved[0] <= point.ts < shelved[1]


def _noted(verdict: Verdict, note: list) -> Verdict:
    """A violation of an escalated alarm says so, whichever reading turns out its worst."""
    return replace(verdict, detail=f"{verdict.detail} ({note[0]})") if note and verdict.detail else verdict


def _recent(mark: list, point: Point, window: dt.timedelta) -> bool:
    return bool(mark) and point.ts - mark[0] < window


def _flatline_window(rule: Rule, t: TerminalInfo) -> Rule:
    """A flat line is judged over twice the metric's ``flat_after_h`` (when its neighbours are flat too), and
    reading by reading is not needed (``FLATLINE_DELAY``)."""
    spec = metric_spec(rule.metric)
    flat = dt.timedelta(hours=spec.flat_after_h or DEFAULT_LOOKBACK.total_seconds() / 3600)
    return replace(rule, lookback=2 * flat + dt.timedelta(seconds=3 * t.report_interval_s),
                   every=max(flat / FLATLINE_DELAY, dt.timedelta(minutes=1)))


# -- rivers (GB 3838) ------------------------------------------------------------------------------

def river(t: TerminalInfo) -> list[Rule]:
    target = t.attrs.get("target_class")
    if target not in standards.CLASSES:
        return []
    goal = standards.CLASSES.index(target) + 1
    body = t.attrs.get("water_body", "river")
    interval = dt.timedelta(seconds=t.report_interval_s)
    rules = []
    for key in t.metrics:
        if key == "w01001":
            rules.append(Rule("gb3838:w01001", "river", "environment", key, lambda s: _ph_judge("GB 3838-2002"),
                              interval, POLLUTION_SKIP_FLAGS, lookback=interval))
        elif standards.river_class(key, 1.0, body, dt.date.today()) is not None:
            rules.append(Rule(f"gb3838:{key}", "river", "environment", key,
                              lambda s, key=key: _class_judge(key, goal, body), interval, POLLUTION_SKIP_FLAGS,
                              lookback=interval))
    return rules


def _class_judge(key: str, goal: int, body: str) -> Judge:
    name, unit = metric_spec(key).name, metric_spec(key).unit  # plain values: a judge without memory rewinds
    lower_is_worse = key == "w01009"

    def judge(point: Point) -> Verdict:
        on = point.ts.astimezone(BEIJING).date()
        reached = standards.river_class(key, point.value, body, on)
        if reached is None or reached <= goal:
            limit = _class_limit(key, goal, body, on)
            margin_ok = point.value >= limit * 1.05 if lower_is_worse else point.value <= limit * 0.95
            return CLEAR if margin_ok else HOLD
        severity = "critical" if reached - goal >= 2 or reached == 6 else "warning"
        version = standards.in_force(standards.GB3838, on).name
        detail = (f"{name} {point.value:g} {unit} meets class {standards.class_name(reached)} only; "
                  f"the section's target is class {standards.CLASSES[goal - 1]} ({version})")
        badness = reached * 1000 + (-point.value if lower_is_worse else point.value)
        facts = Facts(key, unit, _class_limit(key, goal, body, on), "below" if lower_is_worse else "above",
                      version, standards.class_name(reached))
        return Verdict(State.VIOLATE, severity, detail, badness, facts)

    return judge


def _class_limit(key: str, goal: int, body: str, on: dt.date) -> float:
    table = standards.in_force(standards.GB3838, on).data
    lake_key = f"{key}:lake"
    return table[lake_key if body == "lake" and lake_key in table else key][goal - 1]


def _ph_judge(standard: str) -> Judge:
    def judge(point: Point) -> Verdict:
        if 6.0 <= point.value <= 9.0:
            return CLEAR if 6.1 <= point.value <= 8.9 else HOLD
        low = point.value < 6.0
        facts = Facts("w01001", "", 6.0 if low else 9.0, "below" if low else "above", standard)
        return Verdict(State.VIOLATE, "warning", f"pH {point.value:g} outside 6–9", abs(point.value - 7.5), facts)

    return judge


# -- sewage plants (GB 18918) -----------------------------------------------------------------------

def sewage(t: TerminalInfo) -> list[Rule]:
    grade = t.attrs.get("grade")
    if grade not in ("1A", "1B"):
        return []
    old = t.attrs.get("build_year", 2100) < 2006
    interval = dt.timedelta(seconds=t.report_interval_s)
    rules = []
    for key in ("w01018", "w21001", "w21003", "w21011"):
        if key not in t.metrics:
            continue
        for series, period, duration, severity in ((key, "real-time", interval, "warning"),
                                                   (f"{key}:avg:day", "daily mean", dt.timedelta(0), "critical")):
            temperature = "w01010" if series == key else "w01010:avg:day"
            water = (temperature,) if key == "w21003" else ()  # only ammonia's limit hangs on the water's
            rules.append(Rule(f"gb18918:{series}", "sewage", "environment", series,
                              lambda s, key=key, period=period, severity=severity, temperature=temperature:
                              _discharge_judge(key, grade, old, period, severity, temperature, s.get(temperature, [])),
                              duration, POLLUTION_SKIP_FLAGS, water, takes_context=bool(water),
                              lookback=max(interval, dt.timedelta(hours=2)) if series == key else dt.timedelta(days=2)))
    if "w01001" in t.metrics:
        rules.append(Rule("gb18918:w01001", "sewage", "environment", "w01001", lambda s: _ph_judge("GB 18918-2002"),
                          interval, POLLUTION_SKIP_FLAGS, lookback=interval))
    return rules


def _discharge_judge(key: str, grade: str, old: bool, period: str, severity: str, context: str,
                     temperatures: list[Point]) -> Judge:
    """``temperatures``: the water's (series ``context``), for ammonia's cold-water limit; a streamed judge is handed
    newer ones as they arrive (``take_context``) and keeps only those from the last one at or before the reading it
    judged on. Taken in time order, one per time: a rule gone back to a mark noted inside a long feed (which had
    taken the whole batch's temperatures) is handed them again, with the late one among them."""
    spec = metric_spec(key)
    water = list(temperatures)

    def take(series: dict[str, Sequence[Point]]) -> None:
        for point in series.get(context, ()):
            at = bisect.bisect_left(water, point.ts, key=_TS)
            if at < len(water) and water[at].ts == point.ts:
                water[at] = point
            else:
                water.insert(at, point)

    def judge(point: Point) -> Verdict:
        version = standards.in_force(standards.GB18918, point.ts.astimezone(BEIJING).date())
        limits = version.data[grade]
        name = key
        if key == "w21011" and old:
            name = "w21011:old"
        if key == "w21003":
            at = bisect.bisect_right(water, point.ts, key=_TS) - 1
            if at > 0:
                del water[:at]  # readings are judged in time order: the ones before are never looked at again
            if at >= 0 and water[0].value <= version.data["cold_c"]:
                name = "w21003:cold"
        limit = limits[name]
        if point.value <= limit:
            return CLEAR if point.value <= limit * 0.95 else HOLD
        note = {"w21003:cold": " (water at or below 12 °C)", "w21011:old": " (plant built before 2006)"}.get(name, "")
        detail = (f"{period} {spec.name} {point.value:g} {spec.unit} exceeds the grade {grade} limit {limit:g}"
                  f"{note} ({version.name})")
        level = "critical" if point.value > 1.5 * limit else severity
        facts = Facts(key if period == "real-time" else f"{key}:avg:day", spec.unit, limit, "above", version.name,
                      grade)
        return Verdict(State.VIOLATE, level, detail, point.value / limit, facts)

    judge.take_context = take
    return remembering(judge, *_lists(water))


# -- gas ---------------------------------------------------------------------------------------------

def gas_pressure(t: TerminalInfo) -> list[Rule]:
    set_point = t.attrs.get("set_point_kpa")
    if not set_point or "gas_pressure" not in t.metrics:
        return []
    data = standards.GAS[-1].data
    high = t.attrs.get("high_kpa", set_point * data["high_factor"])
    low = t.attrs.get("low_kpa", set_point * data["low_factor"])
    return [
        Rule("gas:pressure_band", "gas", "housing", "gas_pressure", lambda s: _band_judge(low, high, set_point),
             lookback=dt.timedelta(0)),
        Rule("gas:pressure_drop", "gas", "housing", "gas_pressure",
             lambda s: _drop_judge(set_point * data["drop_per_min"], high), lookback=2 * DROP_SPAN),
    ]


def _band_judge(low: float, high: float, set_point: float) -> Judge:
    def judge(point: Point) -> Verdict:
        if point.value > high:
            return Verdict(State.VIOLATE, "critical", f"gas pressure {point.value:g} kPa above {high:g} kPa "
                           f"(set point {set_point:g})", point.value - high,
                           Facts("gas_pressure", "kPa", high, "above", _GAS_NORM))
        if point.value < low:
            return Verdict(State.VIOLATE, "critical", f"gas pressure {point.value:g} kPa below {low:g} kPa "
                           f"(set point {set_point:g})", low - point.value,
                           Facts("gas_pressure", "kPa", low, "below", _GAS_NORM))
        return CLEAR if low * 1.02 <= point.value <= high * 0.98 else HOLD

    return judge


DROP_SPAN = dt.timedelta(minutes=2)
"""A fall is measured over at least this long, so sensor noise on fast samples does not look like a leak."""
DROP_MEMORY = 64
"""Readings the drop judge keeps per span at most (a device sending ten a second is remembered every 2 s)."""


def _drop_judge(limit_per_min: float, high: float) -> Judge:
    """A fall faster than ``limit_per_min`` over at least ``DROP_SPAN``, from within the band (at most ``high``):
    a pressure coming back from above the band (a regulator recovering, a drifting sensor recalibrated) falls as
    fast, but is no leak; the band rule had the overpressure."""
    recent: list[Point] = []

    def judge(point: Point) -> Verdict:
        if len(recent) >= 2 and point.ts - recent[-2].ts < DROP_SPAN / DROP_MEMORY:
            recent[-1] = point  # dense readings: one kept per 1/64 of the span, so memory is bounded in count too
        else:
            recent.append(point)
        while len(recent) > 1 and point.ts - recent[1].ts >= DROP_SPAN:
            recent.pop(0)
        before = recent[0]
        if point.ts - before.ts < DROP_SPAN:
            return HOLD
        rate = (point.value - before.value) / ((point.ts - before.ts).total_seconds() / 60)
        if rate < -limit_per_min and before.value <= high:
            return Verdict(State.VIOLATE, "critical", f"gas pressure falling {-rate:.2f} kPa/min: possible leak",
                           -rate, Facts("gas_pressure", "kPa/min", limit_per_min, "falling", _GAS_NORM))
        return CLEAR

    return remembering(judge, *_lists(recent))


def methane(t: TerminalInfo) -> list[Rule]:
    data = standards.GAS[-1].data

    def judge(point: Point) -> Verdict:
        if point.value >= data["lel_level2"]:
            return Verdict(State.VIOLATE, "critical", f"methane {point.value:g} %LEL: level-2 alarm", point.value,
                           Facts("methane_lel", "%LEL", data["lel_level2"], "above", _GAS_NORM, "level 2"))
        if point.value >= data["lel_level1"]:
            return Verdict(State.VIOLATE, "warning", f"methane {point.value:g} %LEL: level-1 alarm", point.value,
                           Facts("methane_lel", "%LEL", data["lel_level1"], "above", _GAS_NORM, "level 1"))
        return CLEAR if point.value < data["lel_level1"] * 0.75 else HOLD

    if "methane_lel" not in t.metrics:
        return []
    return [Rule("gas:methane", "gas", "housing", "methane_lel", lambda s: judge, lookback=dt.timedelta(0))]


# -- water supply ------------------------------------------------------------------------------------

def water(t: TerminalInfo) -> list[Rule]:
    data = standards.WATER[-1].data
    rules = []
    if "water_pressure" in t.metrics:
        minimum = t.attrs.get("min_service_mpa", data["min_service_mpa"])

        def judge(point: Point) -> Verdict:
            if point.value < minimum:
                return Verdict(State.VIOLATE, "warning", f"service pressure {point.value:g} MPa below {minimum:g} MPa",
                               minimum - point.value, Facts("water_pressure", "MPa", minimum, "below",
                                                            standards.WATER[-1].name))
            return CLEAR if point.value >= minimum + 0.01 else HOLD

        interval = dt.timedelta(seconds=t.report_interval_s)
        rules.append(Rule("water:service_pressure", "water", "housing", "water_pressure", lambda s: judge,
                          interval, lookback=interval))
    allowance = t.attrs.get("night_allowance_m3h")
    if "water_flow" in t.metrics and allowance is not None:
        def night(point: Point) -> Verdict:
            if point.value > allowance:
                return Verdict(State.VIOLATE, "warning", f"minimum night flow {point.value:g} m³/h over the "
                               f"allowance {allowance:g} m³/h in {t.attrs.get('district', 'the district')}: "
                               "suspected leak", point.value - allowance,
                               Facts("water_flow", "m³/h", allowance, "above", standards.WATER[-1].name))
            return CLEAR

        rules.append(Rule("water:night_flow", "water", "housing", "water_flow", lambda s: night,
                          context=tuple(m for m in ("water_pressure",) if m in t.metrics),
                          nightly=(data["night_start_h"], data["night_end_h"]), lookback=dt.timedelta(hours=26)))
    return rules


FLAT_SUSPECT = dt.timedelta(hours=1)
"""QARTOD's flat-line *suspect* duration for a night's minimum, when another sensor of the same terminal moved
meanwhile (the meter's pressure): a live flow does not repeat its reading to the resolution for an hour. The
stuck-sensor alert waits for the longer *fail* duration (``flat_after_h``); a suspect line already makes no leak."""


def flat_lines_dropped(points: list[Point], key: str, siblings: dict[str, list[Point]] | None = None) -> list[Point]:
    """The readings without those of a flat line, away from its resting values, that lasts longer than the
    metric's flat-line window, or ``FLAT_SUSPECT`` while one of ``siblings`` (the terminal's other series) moved:
    QARTOD's flat-line suspects (a stuck meter's frozen evening flow) do not make a night's minimum. The whole line
    is suspect, from its first reading, once it has lasted that long."""
    spec = metric_spec(key)
    if spec is None or spec.flat_after_h is None:
        return points
    flat_after, kept, line = dt.timedelta(hours=spec.flat_after_h), [], []
    moved = [_change_times(sib, metric_spec(m).step) for m, sib in (siblings or {}).items() if metric_spec(m)]
    for point in [*points, None]:
        if point is not None and line and abs(point.value - line[0].value) < spec.step / 2:
            line.append(point)
            continue
        if line and not spec.at_rest(line[0].value) and _suspect_line(line, flat_after, moved):
            line = [point]
            continue
        kept += line
        line = [point]
    return kept


def _suspect_line(line: list[Point], flat_after: dt.timedelta, moved: list[list[dt.datetime]]) -> bool:
    lasted = line[-1].ts - line[0].ts
    return lasted >= flat_after or (lasted >= FLAT_SUSPECT and any(
        _changed_between(times, line[0].ts, line[-1].ts) for times in moved))


def night_minima(points: list[Point], start_h: int, end_h: int) -> list[Point]:
    """One point per night: the lowest reading between the hours, stamped at the night's start."""
    nights: dict[dt.date, Point] = {}
    for point in points:
        local = point.ts.astimezone(BEIJING)
        if start_h <= local.hour < end_h:
            day = local.date()
            if day not in nights or point.value < nights[day].value:
                nights[day] = Point(dt.datetime.combine(day, dt.time(start_h), BEIJING), point.value, point.flag)
    return [nights[day] for day in sorted(nights)]


# -- district heating ---------------------------------------------------------------------------------

def heating(t: TerminalInfo) -> list[Rule]:
    data = standards.HEATING[-1].data
    limits = (("supply_temp", "heating:supply_temp", "above", data["supply_max_c"], "°C", "critical"),
              ("supply_pressure", "heating:supply_pressure", "above", data["supply_pressure_max_mpa"], "MPa",
               "critical"),
              ("return_pressure", "heating:return_pressure", "below", data["return_pressure_min_mpa"], "MPa",
               "warning"))
    return [Rule(key, "heating", "housing", metric, lambda s, d=direction, lim=limit, u=unit, sev=severity, m=metric:
                 _limit_judge(m, d, lim, u, sev), lookback=dt.timedelta(0))
            for metric, key, direction, limit, unit, severity in limits if metric in t.metrics]


def _limit_judge(metric: str, direction: str, limit: float, unit: str, severity: str) -> Judge:
    name = metric_spec(metric).name

    def judge(point: Point) -> Verdict:
        bad = point.value > limit if direction == "above" else point.value < limit
        if bad:
            return Verdict(State.VIOLATE, severity, f"{name} {point.value:g} {unit} {direction} {limit:g} {unit}",
                           abs(point.value - limit), Facts(metric, unit, limit, direction, standards.HEATING[-1].name))
        return CLEAR

    return judge


def indoor(t: TerminalInfo) -> list[Rule]:
    data = standards.HEATING[-1].data

    def judge(point: Point) -> Verdict:
        if not standards.heating_season(point.ts.astimezone(BEIJING).date()):
            return CLEAR
        if point.value < data["indoor_min_c"]:
            return Verdict(State.VIOLATE, "warning", f"indoor temperature {point.value:g} °C below "
                           f"{data['indoor_min_c']:g} °C in the heating season", data["indoor_min_c"] - point.value,
                           Facts("indoor_temp", "°C", data["indoor_min_c"], "below", standards.HEATING[-1].name))
        return CLEAR if point.value >= data["indoor_min_c"] + 0.5 else HOLD

    if "indoor_temp" not in t.metrics:
        return []
    return [Rule("heating:indoor", "heating", "housing", "indoor_temp", lambda s: judge, dt.timedelta(hours=2),
                 lookback=dt.timedelta(hours=2))]


_GAS_NORM = standards.GAS[-1].name


# -- device health: faults go to the steward, never as pollution -------------------------------------

SPIKE_SHARE = 0.2
"""A reading that stands this share of the physical range away from both its neighbours is a spike."""
SPIKE_OFF_DELAY = dt.timedelta(hours=1)
"""A spiking sensor's alert stays open this long (or 24 reporting intervals, if longer) after its last spike: an
off-delay (ISA-18.2), so a sensor that spikes every few readings is one alert for the steward, not one a spike."""


def device_health(t: TerminalInfo, neighbours: NeighbourLookup | None = None) -> list[Rule]:
    """Stuck (a flat line for longer than the metric ever rests there), spike and drift (a steady creep faster
    than the metric ever changes) rules for every metric that can have them."""
    rules = []
    within = dt.timedelta(seconds=3 * t.report_interval_s)
    for key in t.metrics:
        spec = metric_spec(key)
        if spec is None:
            continue
        if spec.flat_after_h is not None:
            siblings = tuple(m for m in t.metrics if m != key and _moves(m))
            rules.append(Rule(f"device:stuck:{key}", "device", "steward", key,
                              lambda s, k=key, sib=siblings: _stuck_judge(
                                  k, {m: s.get(m, []) for m in sib},
                                  functools.partial(neighbours.of, t, k) if neighbours else None),
                              context=siblings, heeds=f"device:stuck:{key}"))
        rules.append(Rule(f"device:jump:{key}", "device", "steward", key,
                          lambda s, k=key, sp=spec.high - spec.low: _jump_judge(k, sp, within), memory=2))
        if (limit := drift_limit(t.kind, key)) is not None:
            window = drift_window(t)
            rules.append(Rule(f"device:drift:{key}", "device", "steward", key,
                              lambda s, k=key, w=window, lim=limit: _drift_judge(k, w, lim),
                              screen=(SPIKE_SHARE * (spec.high - spec.low), within),
                              lookback=max(DEFAULT_LOOKBACK, window + within)))
    return rules


DRIFT_WINDOW = dt.timedelta(hours=2)
"""The drift test looks at the last two hours (or ``DRIFT_READINGS`` reporting intervals, if longer, so that each
quarter has a reading): long enough that a sensor creeping at 2 % of its range an hour stands out from noise and
from the live quantity's own changes, short enough to see a creep of two hours."""
DRIFT_READINGS = 4
DRIFT_STEADY = 3.0
"""A creep is steady: no quarter's move is more than this many times another's. A step (a real event) landing
inside a quarter moves two quarters' means a lot and leaves the third to the quantity's own change."""
DRIFT_BINS = 16
"""The window is kept as this many time bins (sum and count of each): bounded memory whatever the reporting rate."""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def drift_window(t: TerminalInfo) -> dt.timedelta:
    """How long a creep must last before the drift test can call it: shorter, it is not told from the signal."""
    return max(DRIFT_WINDOW, DRIFT_READINGS * dt.timedelta(seconds=t.report_interval_s))


def _drift_judge(key: str, window: dt.timedelta, limit_per_h: float) -> Judge:
    """A sensor creeping away from the truth: over the drift window, the mean level of each quarter is above (or
    below) the one before by more than ``limit_per_h`` (``devices.drift_limit``), and steadily (``DRIFT_STEADY``):
    faster, and more steadily, than the live quantity ever changes. A real event is a step (one or two quarters
    move, by far more than the third: not steady), a spike is screened out before (``Rule.screen``), a daily cycle
    is slower. The alert holds for a quarter after its last creeping
    reading, so noise on one quarter does not make it chatter. No neighbour is needed, so a single-sensor terminal
    is covered; a quantity whose own changes are as fast has no drift test (``MetricSpec.drift_per_h``)."""
    spec = metric_spec(key)
    width = window.total_seconds() / DRIFT_BINS
    quarter = DRIFT_BINS // 4
    need = limit_per_h * window.total_seconds() / 3600 / 4
    hold = window / 4
    bins: list[list] = []  # [bin index, sum, count], oldest first
    last: list[dt.datetime] = []
    older: dict = {}
    """The quarters' sums and counts without the newest bin, for the bin index they were summed at: a reading
    landing in the newest bin (most readings) changes only that bin, so the quarters are not summed again."""

    edge: list = []
    """[index, from, to]: readings strictly inside [from, to] fall in bin ``index`` (a millisecond inside its bounds,
    so that the float arithmetic of ``bin_of`` agrees): most readings are, and need no ``timestamp()`` (0.8 µs)."""

    def bin_of(ts: dt.datetime) -> int:
        if edge and edge[1] < ts < edge[2]:
            return edge[0]
        index = int(ts.timestamp() // width)
        start = _EPOCH + dt.timedelta(seconds=index * width)
        edge[:] = [index, start + _MS, start + dt.timedelta(seconds=width) - _MS]
        return index

    def sum_older(index: int, first: int, newest: list) -> None:
        older.update(index=index, sums=[], counts=[])
        for k in range(4):
            inside = [b for b in bins if b is not newest and first + k * quarter <= b[0] < first + (k + 1) * quarter]
            older["sums"].append(sum(b[1] for b in inside))
            older["counts"].append(sum(b[2] for b in inside))
        counts = older["counts"]
        older["gap"] = 0 in counts[:3]  # the last quarter holds the newest bin
        older["possible"] = not older["gap"] and _creeping(*(older["sums"][k] / counts[k] for k in range(3)), need)

    def run(points: Sequence[Point], at: int, end: int) -> tuple[int, Verdict]:
        """Judge ``points[at:end]`` in order, stopping at the first creeping one: (its index, its verdict), else
        (``end``, the last reading's verdict)."""
        verdict = CLEAR
        for i in range(at, end):
            point = points[i]
            index = bin_of(point.ts)
            if bins and (newest := bins[-1])[0] >= index:
                newest[1] += point.value
                newest[2] += 1
            else:
                bins.append([index, point.value, 1])
            first = index - DRIFT_BINS + 1
            while bins[0][0] < first:
                bins.pop(0)
            if (newest := bins[-1])[0] == index:
                if older.get("index") != index:
                    sum_older(index, first, newest)
                if older["gap"]:
                    verdict = CLEAR
                    continue
                if not older["possible"]:  # the first three quarters do not creep: whatever the newest bin holds
                    verdict = HOLD if last and point.ts - last[0] < hold else CLEAR
                    continue
                # The newest bin is the last of the last quarter: adding it last is the same sum, to the bit, as
                # summing the quarter in order.
                summed, counted = older["sums"], older["counts"]
                sums, counts = [*summed[:3], summed[3] + newest[1]], [*counted[:3], counted[3] + newest[2]]
            else:  # a reading older than the newest bin (never in observation order): sum the quarters afresh
                inside = [[b for b in bins if first + k * quarter <= b[0] < first + (k + 1) * quarter]
                          for k in range(4)]
                sums, counts = [sum(b[1] for b in q) for q in inside], [sum(b[2] for b in q) for q in inside]
            if 0 in counts:
                verdict = CLEAR
                continue
            levels = [total / count for total, count in zip(sums, counts, strict=True)]
            steps = [abs(b - a) for a, b in itertools.pairwise(levels)]
            same_way = len({b > a for a, b in itertools.pairwise(levels)}) == 1
            if same_way and min(steps) > need and max(steps) <= DRIFT_STEADY * min(steps):
                last[:] = [point.ts]
                rate = (levels[-1] - levels[0]) / (0.75 * window.total_seconds() / 3600)
                return i, Verdict(State.VIOLATE, "warning", f"{spec.name} creeping {rate:+.3g} {spec.unit}/h, "
                                  f"steadily, for {window.total_seconds() / 3600:g} h: faster than it ever changes "
                                  "(sensor drift? calibrate)", abs(rate))
            verdict = HOLD if last and point.ts - last[0] < hold else CLEAR
        return end, verdict

    def judge(point: Point) -> Verdict:
        return run((point,), 0, 1)[1]

    def restore(saved: tuple) -> None:
        bins[:] = [b[:] for b in saved[0]]
        last[:] = saved[1]
        older.clear()  # summed over bins that are no more

    judge.run = run
    return remembering(judge, lambda: ([b[:] for b in bins], last[:]), restore)


def _creeping(first: float, second: float, third: float, need: float) -> bool:
    """Whether the first three quarters' levels move as a creep must (the same way, each step more than ``need``,
    the larger at most ``DRIFT_STEADY`` times the smaller): if not, no fourth quarter makes the four a creep."""
    one, two = abs(second - first), abs(third - second)
    low = min(one, two)
    return (second > first) == (third > second) and low > need and max(one, two) <= DRIFT_STEADY * low


def _moves(key: str) -> bool:
    spec = metric_spec(key)
    return spec is not None and spec.flat_after_h is not None


PEER_MOVES = 3
"""Changes of a neighbour's reading (by half a resolution step) between a flat line's start and a reading that make
the neighbour a moving signal: a lone spike is two (up and back)."""
SILENT_INTERVALS = 3
"""A neighbour silent for more than this many of its reporting intervals was not heard meanwhile (``device:nodata``
pages the steward after as long)."""
MOVED_BY_FAULT = ("drift", "jump")
"""A neighbour's own device alerts that make its moves its fault's, not the world's."""
_STUCK_DETAIL = re.compile(r" for [\d.]+ h (?P<why>.+) \(stuck sensor\?\)$")
"""The evidence a stuck alert's text states (``_stuck_judge``), read back from a stored alert."""


def _stuck_judge(key: str, siblings: dict[str, list[Point]],
                 nearby: Callable[[dt.datetime], Nearby | None] | None = None) -> Judge:
    """Flat to within the metric's resolution, away from its resting values, for longer than a live signal
    ever is (in time, not readings: intervals change). The other metrics of the same terminal are the cheap
    neighbours, then the same metric on its pole or river (``nearby``): a flat line while one of them moves is a
    stuck sensor after ``flat_after_h``; when they are flat too (a calm river, the whole logger frozen) it takes
    twice as long. A neighbour silent through the line (offline, not reporting) and one on the terminal's own pole (a
    gateway that freezes the pole freezes it too) show nothing of a calm world: with only such neighbours the
    terminal has nothing to compare against, as one with none, and is called after ``flat_after_h``. A neighbour
    drifting or spiking during the line (its own drift or spike alert on the metric) moved by its fault, not the
    world's: no evidence that the world moved. Only the neighbours' readings and alerts up to the reading judged
    count, so a reading judged late is judged as it was live.

    A line once called stays called while it lasts (a silent neighbour's backlog arriving later, flat, does not end
    the alert): the judge is told the rule's own stored alerts (``heed``, ``Rule.heeds``), so a window re-read, a
    restarted worker or a stream finds the line called as the alert says, not asking the neighbours again. When the
    siblings moved is worked out once a line has lasted ``flat_after_h`` (rarely: every window of every terminal used
    to scan each sibling series, ten stuck rules a ten-metric terminal, a fifth of a rule worker's first judgements);
    the neighbours are asked only between once and twice the window, and again each 1/60 of the window of observation
    time until one is seen to move."""
    spec = metric_spec(key)
    flat_after = dt.timedelta(hours=spec.flat_after_h)
    refresh = flat_after / FLATLINE_DELAY
    moved: list[list[list[dt.datetime]]] = []
    since: list[Point] = []
    looked: dict = {}
    called: dict = {}  # the line this judge called: its start, and why
    stored: list[dict] = []  # the rule's alerts as stored (``heed``)

    def neighbours_moved(start: dt.datetime, ts: dt.datetime) -> tuple[int, int, bool, Nearby | None]:
        """How many neighbours moved between ``start`` and ``ts``, how many were heard through the line (reported
        over half a flat-line window of it at least, moving or not: a neighbour reporting on its own schedule has
        not quite the whole window when the line first reaches it), whether any was heard at all, and where they
        are (None: it has none). A neighbour on the terminal's pole counts when it moved, never as heard; one drifting
        or spiking did not move (``_Evidence``)."""
        if looked.get("start") != start or (not looked["moved"] and ts - looked["at"] >= refresh):
            found = nearby(start)
            looked.update(start=start, at=ts, found=found, moved=False,
                          peers=[_Evidence.of(peer, spec.step) for peer in (found.peers if found else ())])
        lively = sum(peer.moved(start, ts) for peer in looked["peers"])
        heard = [peer for peer in looked["peers"] if peer.covered(start, ts) >= flat_after / 2]
        looked["moved"] = lively > 0
        return lively, sum(not peer.on_pole for peer in heard), bool(heard), looked["found"]

    def evidence(point: Point, flat_for: dt.timedelta) -> str | None:
        """Why the line is stuck at ``point``, on the evidence beside it; None: not (yet)."""
        if not moved:
            moved.append([_change_times(points, metric_spec(m).step) for m, points in siblings.items()])
        if any(_changed_between(times, since[0].ts, point.ts) for times in moved[0]):
            return "while the terminal's other sensors moved"
        if flat_for >= 2 * flat_after:
            return "with nothing seen moving beside it"
        lively, heard, any_heard, found = neighbours_moved(since[0].ts, point.ts) if nearby else (0, 0, False, None)
        if lively:
            return f"while {lively} of its neighbours on {found.where} moved"
        if siblings or heard:
            return None
        if any_heard:
            return f"while its neighbours on {found.where} were silent or on its own pole"
        return f"while its neighbours on {found.where} were silent" if found else "with nothing to compare against"

    def judge(point: Point) -> Verdict:
        if not since or abs(point.value - since[0].value) >= spec.step / 2:
            since[:] = [point]
        flat_for = point.ts - since[0].ts
        if flat_for < flat_after or spec.at_rest(point.value):
            return CLEAR
        # A line called stuck stays so (a neighbour's backlog changes nothing): called by this judge, or, for a judge
        # built since (a window re-read, a restarted worker), as the rule's stored alert says.
        why = called["why"] if called.get("start") == since[0].ts \
            else _called_before(stored, since[0].ts, flat_after, point.ts)
        if why is None and (why := evidence(point, flat_for)) is None:
            return CLEAR
        called.update(start=since[0].ts, why=why)
        hours = flat_for.total_seconds() / 3600
        return Verdict(State.VIOLATE, "warning", f"{spec.name} flat at {since[0].value:g} {spec.unit} for "
                       f"{hours:.1f} h {why} (stuck sensor?)", hours)

    def heed_stored(alerts: list[dict]) -> None:
        stored[:] = alerts

    judge.heed = heed_stored
    return judge


def _called_before(alerts: list[dict], start: dt.datetime, flat_after: dt.timedelta, ts: dt.datetime) -> str | None:
    """Why a stored alert of the stuck rule called the line begun at ``start``, if one did by ``ts`` and was still
    on then (not retracted): the line stays called. It began once the line had lasted ``flat_after`` (a late reading
    that split the line it called starts a line it never saw)."""
    for alert in alerts:
        if alert["status"] != "closed" and start + flat_after <= alert["observed_start"] <= ts \
                and (alert["observed_end"] is None or ts <= alert["observed_end"]):
            said = _STUCK_DETAIL.search(alert.get("detail") or "")
            return said["why"] if said else "as called before"
    return None


@dataclass(frozen=True)
class _Evidence:
    """What a neighbour shows a flat line: when it moved, how long it was heard, whether it is evidence at all."""
    changes: list[dt.datetime]
    times: list[dt.datetime]
    heard_s: list[float]
    """Seconds heard up to each reading (a gap longer than ``SILENT_INTERVALS`` reporting intervals is silence)."""
    on_pole: bool
    doubts: tuple[tuple[str, dt.datetime, dt.datetime | None], ...]

    @classmethod
    def of(cls, peer: Peer, step: float) -> _Evidence:
        good = _good(peer.series)
        times = [p.ts for p in good]
        silent, heard_s = SILENT_INTERVALS * peer.interval, [0.0]
        for a, b in itertools.pairwise(times):
            heard_s.append(heard_s[-1] + ((b - a).total_seconds() if b - a <= silent else 0.0))
        return cls(_change_times(good, step), times, heard_s, peer.on_pole, peer.doubts)

    def covered(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """How long it was heard between ``start`` and ``end``: the reporting gaps it did not fall silent in."""
        first, last = bisect.bisect_left(self.times, start), bisect.bisect_right(self.times, end) - 1
        return dt.timedelta(seconds=self.heard_s[last] - self.heard_s[first] if last > first else 0.0)

    def moved(self, start: dt.datetime, end: dt.datetime) -> bool:
        """It moved between ``start`` and ``end`` (``PEER_MOVES``), and not by a fault of its own: no drift or spike
        alert of its own on the metric was on meanwhile."""
        return _changes_between(self.changes, start, end) >= PEER_MOVES and not any(
            kind in MOVED_BY_FAULT and began <= end and (ended is None or ended >= start)
            for kind, began, ended in self.doubts)


def _changes_between(times: list[dt.datetime], start: dt.datetime, end: dt.datetime) -> int:
    return bisect.bisect_right(times, end) - bisect.bisect_right(times, start)


def may_have_moved(points: list[Point], step: float) -> bool:
    """A neighbour's series changed often enough to move (``PEER_MOVES``) somewhere in it: only such a neighbour's
    own faults can matter (``_Evidence.moved``), so only its are looked up (``Neighbours.of``)."""
    return len(_change_times(_good(points), step)) >= PEER_MOVES


def _good(points: list[Point]) -> list[Point]:
    """The readings a neighbour's movement is judged on: those with no flag, or the normal one."""
    return [p for p in points if p.flag in (None, "N")]


def _change_times(points: list[Point], step: float) -> list[dt.datetime]:
    """When a series moved by at least half its resolution."""
    return [b.ts for a, b in itertools.pairwise(points) if abs(b.value - a.value) >= step / 2]


def _changed_between(times: list[dt.datetime], start: dt.datetime, end: dt.datetime) -> bool:
    at = bisect.bisect_right(times, start)
    return at < len(times) and times[at] <= end


def _jump_judge(key: str, span: float, within: dt.timedelta) -> Judge:
    """QARTOD spike test: the previous reading stood far from both its neighbours, which agree with each
    other; judged on the reading after it (a real step, such as a gas leak starting, stays and is not a
    spike). Judged a run at a time (``run``; ``Tracker.feed_all``): a reading is one run of one."""
    recent: list[Point] = []
    last_spike: list[dt.datetime] = []
    limit, off_delay = SPIKE_SHARE * span, max(SPIKE_OFF_DELAY, 8 * within)

    def run(points: Sequence[Point], at: int, end: int) -> tuple[int, Verdict]:
        """Judge ``points[at:end]`` in order, stopping at the first spike: (its index, its verdict), else (``end``,
        the last reading's verdict)."""
        before, middle = (recent[-2] if len(recent) > 1 else None), (recent[-1] if recent else None)
        for i in range(at, end):
            point = points[i]
            # The middle reading standing far from its neighbours' mean is the cheap half of the test, and rare, so
            # the rest of ``spiked`` is asked only then.
            if before is not None and abs(middle.value - (before.value + point.value) / 2) > limit \
                    and spiked(before, middle, point, limit, within):
                recent[:] = [before, middle, point]
                last_spike[:] = [point.ts]
                level = (before.value + point.value) / 2
                return i, Verdict(State.VIOLATE, "warning", f"{key} spiked to {middle.value:g} between "
                                  f"{before.value:g} and {point.value:g}: physically impossible (sensor fault?)",
                                  abs(middle.value - level))
            before, middle = middle, point
        if end <= at:
            return end, CLEAR
        recent[:] = [*recent, *points[max(at, end - 3):end]][-3:]
        return end, HOLD if last_spike and points[end - 1].ts - last_spike[0] < off_delay else CLEAR

    def judge(point: Point) -> Verdict:
        return run((point,), 0, 1)[1]

    judge.run = run
    return remembering(judge, *_lists(recent, last_spike))


_FAMILIES = {
    "water_quality_station": river,
    "sewage_outlet_analyser": sewage,
    "gas_pressure_sensor": gas_pressure,
    "methane_detector": methane,
    "water_pressure_point": water,
    "district_flow_meter": water,
    "heating_substation_sensor": heating,
    "indoor_temp_sensor": indoor,
}
