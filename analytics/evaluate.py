"""Judging readings as a stream: each (terminal, rule) keeps its judge and episode in memory between batches,
persisted in ``rule_state`` so a restarted worker (or the worker a terminal moves to) resumes exactly.

A batch of readings newer than everything a rule has judged is simply fed on (nothing old is re-read). A batch
with readings at or before that point (late, repeated or out-of-order data) makes the rule re-read its window:
from its lookback before the earliest such reading, or before the start of the episode or stored alert it may
belong to, and evaluate it again, as a pure function of the stored readings. What the episodes become is the
alert sink's business (``alerts.service``, wired in by the composition package).
"""

from __future__ import annotations

import bisect
import datetime as dt
import operator
import statistics
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psycopg

from analytics import queries
from analytics.engine import Episode, Point, Tracker, episode_from_json, episode_to_json
from analytics.neighbours import Neighbours
from analytics.rules import (
    Judge,
    NeighbourLookup,
    Rule,
    TerminalInfo,
    heed,
    latch_of,
    resumed,
    rewindable,
    rules_for,
    take_context,
)


class AlertSink(Protocol):
    def reconcile(self, conn: psycopg.Connection, t: TerminalInfo, rule: Rule, window_start: dt.datetime,
                  found: list[Episode], stored: list[dict] | None = None) -> None: ...

    def stored_alerts_of(self, conn: psycopg.Connection,
                         since: dict[int, dt.datetime]) -> dict[int, dict[str, list[dict]]]: ...

    def open_nodata(self, conn: psycopg.Connection, shard: int, shards: int) -> list[tuple]: ...

    def resolve_by_rule(self, conn: psycopg.Connection, alert_id: int, comment: str) -> None: ...


FEED, WAIT, WINDOW, REWIND = "feed", "wait", "window", "rewind"
"""What a batch makes a rule do (``RuleStream.step``)."""
MARK_EVERY_S = 1.0
MARK_EVERY = dt.timedelta(seconds=MARK_EVERY_S)
MARKS = 3
OLD_MARK_S = 10.0
"""A streamed rule notes what it remembers (``Mark``) at most every second, of real time or of observation time,
and keeps the last three, and one older mark (the oldest of the three as it leaves, at most every ten seconds): a
reading that commits a moment after a newer one of its terminal (two ingest workers' batches committing out of
order, up to seconds apart on a loaded box) is taken in by going back to the newest mark before it and feeding on
from there (the few seconds since), not by re-reading the rule's lookback."""
MARK_TAILS = (dt.timedelta(seconds=6), dt.timedelta(seconds=2))
"""A feed of more than these seconds of readings (a worker behind, judging a terminal every few seconds) notes
marks inside it, at the last reading these seconds before its newest: the batch that commits late holds readings
from just before the newest judged, and rewinds to one of them, replaying seconds, not the whole feed again (which
every such terminal's next judgement did: 1.75 readings read per reading stored at 5,850 msg/s)."""
IDLE_S = 60.0
"""The marks of a terminal not judged for this long are dropped (``RuleStream.forget_marks``): a reading that
comes that late re-reads its rule's window instead (as before marks), and memory holds marks only for terminals
that are reporting."""
RECENT = 16
"""Reading times each rule remembers (``RuleStream.recent``)."""
CHECKPOINT_S = 10.0
"""How often a terminal's rule states are written when no episode begins or ends."""
_TICK = dt.timedelta(microseconds=1)
"""The resolution of a reading's time (PostgreSQL ``timestamptz``)."""
_TS = operator.attrgetter("ts")
_JUDGED_TO = operator.attrgetter("judged_to")


@dataclass(frozen=True, slots=True)
class Mark:
    """A streamed rule's memory when it had judged every reading up to ``judged_to``."""
    judged_to: dt.datetime
    judge: object
    tracker: tuple
    recent: tuple[dt.datetime, ...]
    at: float
    """When it was noted (monotonic)."""


@dataclass
class RuleStream:
    rule: Rule
    judge: Judge
    tracker: Tracker
    judged_to: dt.datetime | None
    """Every reading of the rule's series at or before this time has been judged."""
    evaluated_at: float = float("-inf")
    """When a window rule was last evaluated (monotonic; never, at first: the monotonic clock counts from boot, so
    0 would make a fresh rule wait for its ``every`` on a box booted minutes ago)."""
    waiting: dt.datetime | None = None
    """The earliest reading of the batches a window rule has let wait (``Rule.every``)."""
    saved_to: dt.datetime | None = None
    """``judged_to`` as this worker last wrote it to ``rule_state``."""
    recent: deque[dt.datetime] = field(default_factory=lambda: deque(maxlen=RECENT))
    """The times of the last readings the rule judged, in order (for ``Rule.memory``)."""
    marks: deque[Mark] | None = None
    """What a streamed rule remembered lately (``MARKS``), oldest first; None for a judge that cannot be rewound."""
    old_mark: Mark | None = None
    """An older mark (``OLD_MARK_S``), for a reading later than the last ``MARKS`` marks."""
    inner: tuple[Mark, ...] = ()
    """Marks noted inside the last long feed (``MARK_TAILS``), kept apart from ``marks`` so that they do not push
    out the marks of the batches before it (a reading later than one batch still rewinds, not re-reads)."""
    resume: Mark | None = None
    """The mark a batch makes the rule rewind to: found once, by ``step``, for ``read_since`` and ``rewind``."""

    def __post_init__(self) -> None:
        if self.rule.streamable and rewindable(self.judge):
            self.marks = deque(maxlen=MARKS)

    @classmethod
    def fresh(cls, rule: Rule, judged_to: dt.datetime | None = None, episode: Episode | None = None,
              series: dict[str, list[Point]] | None = None) -> RuleStream:
        return cls(rule, rule.make_judge(series or {}), rule.make_tracker(episode), judged_to)

    def replay(self, series: dict[str, list[Point]], latch: dict | None = None) -> None:
        """Rebuild the judge's memory from the readings it judged before (``series``: the rule's series and its
        context over the window a late reading would re-read, ending at ``judged_to``) and its persisted ``latch``:
        the judge is built over them, as a window re-read's is, so it takes them for a re-read of history when they
        start after the terminal's first reading (``rules._quality_checked``), and the spike screen takes them in
        too."""
        self.judge = resumed(self.rule.make_judge(series), latch)
        for point in series[self.rule.metric]:
            for admitted in self.tracker.admitted(point):
                self.judge(admitted)

    def step(self, earliest: dt.datetime, now: float) -> str:
        """What a batch whose earliest reading is at ``earliest`` makes this rule do: ``FEED`` it (all newer than
        what the rule has judged: nothing old is read), let it ``WAIT`` (a window rule lets readings, new or late,
        wait until its ``every`` has passed since it was last evaluated, on the worker's clock, or its readings have
        gone ``every`` of observation time past the newest of its last window: they are in its next window), or
        re-read its ``WINDOW``. Either clock ends the wait: a day replayed in minutes (a compressed simulation, a
        logger's backlog uploaded in parts) is judged as often per observed hour as a live day, and a late or
        last reading waits no longer than ``every`` of the worker's clock."""
        if self.rule.streamable:
            if self.judged_to is not None and earliest > self.judged_to:
                return FEED
            self.resume = self.mark_before(earliest)
            return REWIND if self.resume is not None else WINDOW
        waited = now - self.evaluated_at >= self.rule.every_s
        observed = self.judged_to is not None and earliest - self.judged_to >= self.rule.every
        return WINDOW if waited or observed else WAIT

    def mark_before(self, earliest: dt.datetime) -> Mark | None:
        """The newest mark from before ``earliest``: going back to it takes in a reading at ``earliest``."""
        if self.marks is None:
            return None
        before = [m for m in (*self.marks, *self.inner, self.old_mark) if m is not None and m.judged_to < earliest]
        return max(before, key=_JUDGED_TO, default=None)

    def mark(self, now: float) -> None:
        """Note what the rule remembers, having judged every reading up to ``judged_to``, if the last note is
        ``MARK_EVERY_S`` old or was taken ``MARK_EVERY`` of observation time before."""
        if self.marks is None or self.judged_to is None:
            return
        if self.marks and now - self.marks[-1].at < MARK_EVERY_S and \
                self.judged_to - self.marks[-1].judged_to < MARK_EVERY:
            return
        if len(self.marks) == MARKS and (self.old_mark is None or self.marks[0].at - self.old_mark.at >= OLD_MARK_S):
            self.old_mark = self.marks[0]  # the oldest is leaving: it stays as the older mark
        self.marks.append(self._note(now))

    def _note(self, now: float) -> Mark:
        judge = self.judge.snapshot() if hasattr(self.judge, "snapshot") else None
        return Mark(self.judged_to, judge, self.tracker.snapshot(), tuple(self.recent), now)

    def forget_marks(self) -> None:
        """Drop the marks (``IDLE_S``): a late reading then re-reads the rule's window."""
        if self.marks is not None:
            self.marks.clear()
        self.old_mark = self.resume = None
        self.inner = ()

    def feed(self, points: Sequence[Point], now: float) -> list[Episode]:
        """Judge readings newer than ``judged_to``, in order, and note marks inside a long run (``MARK_TAILS``);
        returns the episodes they ended that lasted."""
        found, at, inner = [], 0, []
        if self.marks is not None and len(points) > 1:
            for tail in MARK_TAILS:
                cut = bisect.bisect_right(points, points[-1].ts - tail, lo=at, key=_TS)
                if cut > at:
                    found += self._feed(points[at:cut])
                    self.judged_to = points[cut - 1].ts  # every reading of the series up to it is judged
                    inner.append(self._note(now))
                    at = cut
            if inner:
                self.inner = tuple(inner)
        return found + self._feed(points[at:] if at else points)

    def _feed(self, points: Sequence[Point]) -> list[Episode]:
        found = self.tracker.feed_all(points, self.judge)
        self.judged(points)
        return found

    def rewind(self) -> dt.datetime:
        """Go back to the mark ``step`` found (dropping the newer ones); returns where feeding resumes."""
        mark, self.resume = self.resume, None
        while self.marks and self.marks[-1].judged_to > mark.judged_to:
            self.marks.pop()  # noted after readings judged without the late one
        self.inner = tuple(m for m in self.inner if m.judged_to <= mark.judged_to)
        if self.old_mark is not None and self.old_mark.judged_to > mark.judged_to:
            self.old_mark = None
        if mark.judge is not None:
            self.judge.restore(mark.judge)
        self.tracker.restore(mark.tracker)
        self.recent.clear()
        self.recent.extend(mark.recent)
        self.judged_to = mark.judged_to
        return mark.judged_to + _TICK

    def window_start(self, earliest: dt.datetime, stored: list[dict]) -> dt.datetime:
        """Where a late reading at ``earliest`` makes this rule re-read: its lookback before the reading, or
        before the episode or stored alert the reading may belong to."""
        lookback = self.rule.lookback
        anchors = [earliest] + [a["observed_start"] for a in stored
                                if a["observed_end"] is None or a["observed_end"] >= earliest - lookback]
        if self.tracker.current is not None:
            anchors.append(self.tracker.current.start)
        base = min(anchors)
        if self.rule.memory:
            before = [ts for ts in self.recent if ts < base]
            if len(before) >= self.rule.memory:
                return before[-self.rule.memory]
        return base - lookback

    def judged(self, points: Sequence[Point]) -> None:
        """Note the times of readings the rule has judged, in order (only a rule with a ``memory`` looks at them)."""
        if self.rule.memory:
            self.recent.extend(p.ts for p in points[-RECENT:])


QUIET_S = 300.0
"""Real seconds with nothing committed that moves the city's clock on (nothing at all, or only batches older than
what has been heard) after which the city is taken as quiet, not the ingest as stalled (``IngestClock``): a database
failover or an ingest restart is over within minutes, and a city of thousands of
terminals is never silent that long unless its readings have stopped coming (the no-data sweep has paged meanwhile).
A held alarm waits at most this long for a stalled ingest."""


CARRY_S = 1.0
"""Seconds of observation time a commit brought beyond the real time since the last one, carried to the next (the
batches of one drain are heard together, a moment apart)."""


class IngestClock:
    """How far the city's readings have come through the ingest, as the worker hears the commits (the notifications of
    every batch, whatever its terminals' worker): the clock a held spike is released on (``TerminalStream.clock``).

    It moves on as far as the committed batches advanced observation time (the median of a batch's terminals' earliest
    observations, so one device with a fast clock does not carry it), never faster than real time (a compressed
    simulation, a backlog uploaded at once do not make it race). So a reading stuck in a stalled or lagging ingest is
    not silence: while nothing newer commits for anyone, no terminal's clock runs; real time it could not count is
    owed, and counted as the backlog commits. When the clock has stood still for ``QUIET_S`` (nothing committed, or
    only batches behind its horizon: loggers' old backlogs while the live devices' path is down), the city is taken
    as quiet, and real time counts again, the stand included, until a batch moves the horizon on."""

    def __init__(self) -> None:
        self.progress = 0.0
        self.horizon: dt.datetime | None = None
        self.last: float | None = None
        """When a commit was last heard (monotonic)."""
        self.advanced = 0.0
        """When a commit last moved the horizon on (monotonic): ``QUIET_S`` after it, real time counts."""
        self.owed = 0.0
        """Real seconds not counted yet: the commits did not advance observation time as far."""
        self.ahead = 0.0
        """Seconds of observation time committed beyond the real time counted (at most ``CARRY_S`` carried on)."""

    def heard(self, observed: Iterable[dt.datetime]) -> None:
        """A batch committed, with these earliest observations of its terminals."""
        times = list(observed)
        if not times:
            return
        at, newest = time.monotonic(), statistics.median_low(times)
        if self.last is None:
            self.progress, self.horizon, self.advanced = at, newest, at  # from the real clock on: one scale
        elif at - self.advanced >= QUIET_S:
            self.progress += self.owed + at - self.last  # ``now`` counted the stand
            self.owed, self.ahead = 0.0, 0.0
            if newest > self.horizon:
                self.horizon, self.advanced = newest, at
        else:
            real = at - self.last
            horizon = max(self.horizon, min(newest, self.horizon + dt.timedelta(seconds=real + CARRY_S)))
            if horizon > self.horizon:
                self.advanced = at
            self.owed += real
            self.ahead = min(self.ahead, CARRY_S) + (horizon - self.horizon).total_seconds()
            gained = min(self.owed, self.ahead)
            self.progress += gained
            self.owed, self.ahead, self.horizon = self.owed - gained, self.ahead - gained, horizon
        self.last = at

    def now(self) -> float:
        """Seconds, on a scale of their own (only differences mean anything); the real clock until a commit is heard."""
        at = time.monotonic()
        if self.last is None:
            return at
        return self.progress + (self.owed + at - self.last if at - self.advanced >= QUIET_S else 0.0)


INGEST = IngestClock()
"""The worker process's: every rule worker hears every commit."""


def heard_commit(observed: Iterable[dt.datetime]) -> None:
    """A notified batch: the ingest committed readings with these earliest observations (``IngestClock.heard``)."""
    INGEST.heard(observed)


@dataclass
class TerminalStream:
    info: TerminalInfo
    rules: dict[str, RuleStream]
    version: int
    saved_at: float = field(default_factory=time.monotonic)
    """When its state was last written to ``rule_state``."""
    steps: dict[str, str] | None = None
    """What the batch being judged makes each rule do: decided once, by ``read_since``, so that the readings read
    and the rules judged agree even when a window rule's ``every`` runs out in between."""
    snapshot: str = ""
    """The database snapshot (``pg_current_snapshot``) taken before this terminal was last read: a batch visible
    in it has been judged."""
    heard: tuple[dt.datetime, float] | None = None
    """The newest observation time read of the terminal, and when (``INGEST.now``): the terminal's clock runs on from
    there (``clock``). A reading a spike screen holds is released after that much silence while the city's readings
    kept coming through the ingest, whatever the device's clock says and however late its data comes (a late spike
    and the reading after it, read one after the other, are still judged together); an ingest stalled or behind is
    no silence of the terminal's."""

    def clock(self) -> dt.datetime | None:
        if self.heard is None:
            return None
        newest, at = self.heard
        return newest + dt.timedelta(seconds=INGEST.now() - at)

    def judged(self, xid: int) -> bool:
        return bool(self.snapshot) and visible_in(xid, self.snapshot)

    def forget_marks(self) -> None:
        """The terminal has been idle for ``IDLE_S``: its rules' marks go (a late reading re-reads their window)."""
        for rs in self.rules.values():
            rs.forget_marks()

    def holding(self) -> bool:
        """A rule's spike screen holds a reading (a jump waiting for the next reading, ``SpikeScreen``)."""
        return any(rs.tracker.screen is not None and rs.tracker.screen.held is not None for rs in self.rules.values())


def visible_in(xid: int, snapshot: str) -> bool:
    """``pg_visible_in_snapshot`` on the text form ``xmin:xmax:xip,...``: had transaction ``xid`` committed
    when the snapshot was taken?"""
    xmin, xmax, running = snapshot.split(":")
    if xid < int(xmin):
        return True
    return xid < int(xmax) and str(xid) not in running.split(",")


def load(conn: psycopg.Connection, terminals: list[tuple[TerminalInfo, int]],
         neighbours: NeighbourLookup | None = None) -> dict[int, TerminalStream]:
    """The terminals' rules as the database has them, in two queries: the persisted episode of each, and its
    judge's memory rebuilt by replaying the rule's lookback before the last reading it judged. ``terminals``:
    (terminal, the version of its cursor); ``neighbours``: for the stuck-sensor rules (``rules_for``)."""
    saved = queries.rule_states_of(conn, [info.id for info, _ in terminals])
    rules = {info.id: rules_for(info, neighbours) for info, _ in terminals}
    latches = _latches(conn, saved, rules)
    loaded, since, starts = {}, {}, {}
    for info, version in terminals:
        mine = saved.get(info.id, {})
        streams = {rule.key: RuleStream.fresh(rule, *_saved_state(mine.get(rule.key))) for rule in rules[info.id]}
        for key, stream in streams.items():
            resumed(stream.judge, latches.get((info.id, key)))
            stream.saved_to = stream.judged_to
            if stream.judged_to is not None and stream.rule.streamable and stream.rule.lookback:
                # The window a late reading would re-read: the lookback before the last reading judged, or before
                # the episode in progress (whose start the judge's verdicts may hang on, as a re-read's do).
                start = starts[info.id, key] = stream.window_start(stream.judged_to, [])
                mine = since.setdefault(info.id, {})
                for metric in (stream.rule.metric, *stream.rule.context):
                    mine[metric] = min(mine.get(metric, start), start)
        loaded[info.id] = TerminalStream(info, streams, version)
    history = queries.series_of(conn, since) if since else {}
    for terminal_id, series in history.items():
        for key, stream in loaded[terminal_id].rules.items():
            if (terminal_id, key) in starts:
                stream.replay({m: _between(series.get(m, []), starts[terminal_id, key], stream.judged_to)
                               for m in (stream.rule.metric, *stream.rule.context)}, latches.get((terminal_id, key)))
    for stream in loaded.values():
        judged = [s.judged_to for s in stream.rules.values() if s.judged_to is not None]
        stream.heard = (max(judged), INGEST.now()) if judged else None
    return loaded


def _saved_state(row: tuple | None) -> tuple[dt.datetime | None, Episode | None]:
    return (None, None) if row is None else (row[0], episode_from_json(row[1]))


def _latches(conn: psycopg.Connection, saved: dict[int, dict[str, tuple]],
             rules: dict[int, list[Rule]]) -> dict[tuple[int, str], dict]:
    """(terminal, rule) → the latch its judge takes up (``Rule.latched``): as persisted, else (a rule with no state
    yet, or one written before latches were) the terminal's first stored reading of the series, so that a window
    starting after it is judged as a re-read and one starting at it as the terminal's first readings."""
    latches, missing = {}, {}
    for terminal_id, mine in rules.items():
        for rule in mine:
            row = saved.get(terminal_id, {}).get(rule.key)
            if not rule.latched:
                continue
            if row is not None and row[2] is not None:
                latches[terminal_id, rule.key] = row[2]
            else:
                missing[terminal_id, rule.key] = rule.metric
    firsts = queries.first_readings(conn, sorted(set((t, m) for (t, _), m in missing.items()))) if missing else {}
    for (terminal_id, key), metric in missing.items():
        latches[terminal_id, key] = _origin(firsts.get((terminal_id, metric)))
    return latches


def stored_since(stream: TerminalStream, earliest: dt.datetime) -> dt.datetime:
    """From when the terminal's stored alerts are read for a batch whose earliest reading is at ``earliest``: a
    lookback before it, or before an episode in progress. A window re-read may reach further back (anchored on a
    long stored alert): ``judge_terminal`` then lets the sink read the rule's alerts from the window's start."""
    starts = [earliest - rs.rule.lookback for rs in stream.rules.values()]
    starts += [rs.tracker.current.start - rs.rule.lookback for rs in stream.rules.values() if rs.tracker.current]
    return min(starts, default=earliest)


def read_since(stream: TerminalStream, earliest: dt.datetime,
               stored: dict[str, list[dict]]) -> dict[str, dt.datetime]:
    """From when each metric of this terminal must be read for a batch whose earliest reading is at ``earliest``
    (a metric no rule needs now is not read); decides what the batch makes each rule do (``TerminalStream.steps``),
    which ``judge_terminal`` then follows. Each metric is read on its own (the reading table's key is
    (terminal, metric, ts)): a late reading makes its rule re-read its own series, not the terminal's."""
    now = time.monotonic()
    stream.steps = steps = {key: rs.step(earliest, now) for key, rs in stream.rules.items()}
    since: dict[str, dt.datetime] = {}
    for key, rs in stream.rules.items():
        if steps[key] is WAIT:
            continue
        # A rule fed on reads what is after the last reading it judged (reading times are microseconds), a rule
        # rewound what is after its mark.
        if steps[key] is FEED:
            start = rs.judged_to + _TICK
        elif steps[key] is REWIND:
            start = rs.resume.judged_to + _TICK
        else:
            start = rs.window_start(min(earliest, rs.waiting or earliest), stored.get(key, []))
        for metric in (rs.rule.metric, *(rs.rule.context if steps[key] is WINDOW or rs.rule.streamable else ())):
            since[metric] = min(since.get(metric, start), start)
    return since


def judge_terminal(conn: psycopg.Connection, sink: AlertSink, stream: TerminalStream, earliest: dt.datetime,
                   data: dict[str, list[Point]], stored: dict[str, list[dict]]) -> list[str]:
    """Feed or re-evaluate each rule over ``data`` (the terminal's readings from ``read_since``); returns the keys
    of the rules whose episode began or ended, or whose window was re-read."""
    newest = max((pts[-1].ts for pts in data.values() if pts), default=None)
    if newest is not None and (stream.heard is None or newest > stream.heard[0]):
        stream.heard = (newest, INGEST.now())
    clock = stream.clock()
    steps = stream.steps or {key: rs.step(earliest, time.monotonic()) for key, rs in stream.rules.items()}
    stream.steps = None
    changed = []
    for key, rs in list(stream.rules.items()):
        rule = rs.rule
        step = steps[key]
        if step is FEED or step is REWIND:
            began = rs.tracker.current.start if rs.tracker.current else None
            # Readings after the mark are judged again, the late one among them: what they raised before and no
            # longer do is retracted (from where they start), like a window's.
            rewound = rs.rewind() if step is REWIND else None
            if rule.heeds:  # after the rewind, which restores the judge's memory of an older mark
                heed(rs.judge, stored.get(rule.heeds, []))
            if rule.context:  # what it had of them was all up to ``judged_to``, the mark's after a rewind
                take_context(rs.judge, {m: _after(data.get(m, ()), rs.judged_to) for m in rule.context})
            points = _after(data.get(rule.metric, ()), rs.judged_to)
            found = rs.feed(points, time.monotonic())
            released, ended = rs.tracker.expire(clock, rs.judge) if clock and rs.tracker.screen else (None, None)
            found += [ended] if ended else []
            ongoing = rs.tracker.ongoing() if points or released or rewound else None
            found += [ongoing] if ongoing else []
            if found or (rewound and stored.get(key)):
                start = rewound or (points[0] if points else released).ts
                known = stored.get(key, []) if start >= stored_since(stream, earliest) else None  # as a window's
                sink.reconcile(conn, stream.info, rule, start, found, known)
            if newest is not None and newest > rs.judged_to:
                # Everything of this terminal up to ``newest`` has been read: a reading of this series at or before
                # it that commits later comes in a batch of its own and is taken in as late data.
                rs.judged_to = newest
            rs.mark(time.monotonic())
            if began == (rs.tracker.current.start if rs.tracker.current else None):
                continue
        elif step is WAIT:
            rs.waiting = min(earliest, rs.waiting or earliest)
            continue
        else:
            start = rs.window_start(min(earliest, rs.waiting or earliest), stored.get(key, []))
            # Alerts were read from ``stored_since`` on: a window anchored further back (on a long alert) may find the
            # end of an older alert again, which the sink must then read itself, or it would store it twice.
            known = stored.get(key, []) if start >= stored_since(stream, earliest) else None
            window = {m: _from(data.get(m, []), start) for m in (rule.metric, *rule.context)}
            latch = latch_of(rs.judge)
            rs = stream.rules[key] = RuleStream.fresh(rule, None, None, window)
            heed(resumed(rs.judge, latch), stored.get(rule.heeds, []) if rule.heeds else [])
            rs.evaluated_at = time.monotonic()
            found = rule.evaluate_with(window, rs.judge, rs.tracker, clock)
            rs.judged(window[rule.metric])
            rs.judged_to = max(newest or start, start)
            rs.mark(rs.evaluated_at)
            if found or stored.get(key):
                sink.reconcile(conn, stream.info, rule, start, found, known)
        changed.append(key)
    return changed


def _after(points: Sequence[Point], judged_to: dt.datetime) -> Sequence[Point]:
    """The readings of a series (in observation order) after ``judged_to``: usually all of them, not copied."""
    if not points or points[0].ts > judged_to:
        return points
    return points[bisect.bisect_right(points, judged_to, key=_TS):]


def _between(points: Sequence[Point], start: dt.datetime, end: dt.datetime) -> list[Point]:
    """The readings of a series (in observation order) from ``start`` to ``end``, both included."""
    return list(points[bisect.bisect_left(points, start, key=_TS):bisect.bisect_right(points, end, key=_TS)])


def _from(points: Sequence[Point], start: dt.datetime) -> list[Point]:
    """The readings of a series (in observation order) at or after ``start``, found by bisection: a stuck rule's
    window takes every metric of its terminal (its context), so a ten-metric terminal's first judgement cut a
    hundred series by scanning them."""
    return list(points[bisect.bisect_left(points, start, key=_TS):])


def held_past_due(memory: dict[int, TerminalStream], holding: set[int]) -> dict[int, dt.datetime]:
    """Terminals whose spike screen holds a reading no later reading can now make a spike (the terminal fell
    silent after a jump: its ``clock`` ran past the spike test's window), each with a time just after what its
    rules have judged: a batch with nothing new, which feeds the rules and releases the reading
    (``Tracker.expire``).

    ``holding``: the terminals whose screens held a reading when they were last judged (the worker notes them,
    ``TerminalStream.holding``); only those are looked at, so a round costs the few terminals that just jumped,
    not every terminal in memory. A terminal found holding nothing any more (or gone from memory) leaves it."""
    due = {}
    for terminal_id in list(holding):
        stream = memory.get(terminal_id)
        if stream is None or not stream.holding():
            holding.discard(terminal_id)
            continue
        screens = [rs for rs in stream.rules.values() if rs.tracker.screen is not None and rs.judged_to is not None]
        held = [rs for rs in screens if rs.tracker.screen.held is not None]
        clock = stream.clock()
        if clock is not None and any(rs.tracker.screen.due(clock) for rs in held):
            due[terminal_id] = max(rs.judged_to for rs in screens) + _TICK
    return due


def state_rows(stream: TerminalStream, keys: list[str]) -> list[tuple]:
    """The rules' states to persist: those whose episode changed, and once a checkpoint is due, those that judged
    readings since they were last written.

    Between checkpoints the stored state lags behind memory; a worker that resumes from it judges the readings
    since again, from the same episode and judge memory, and reaches the same state (reconciling alerts is
    idempotent), so resuming stays exact while a terminal reporting every second is not written every second."""
    if time.monotonic() - stream.saved_at >= CHECKPOINT_S:
        keys = [key for key, rs in stream.rules.items() if key in keys or rs.judged_to != rs.saved_to]
        stream.saved_at = time.monotonic()
    rows = []
    for key in keys:
        rs = stream.rules[key]
        rs.saved_to = rs.judged_to
        rows.append((stream.info.id, key, rs.judged_to, episode_to_json(rs.tracker.current), latch_of(rs.judge)))
    return rows


def backtest(conn: psycopg.Connection, info: TerminalInfo, start: dt.datetime, end: dt.datetime,
             prefix: str = "") -> list[tuple[Rule, Episode]]:
    """The episodes the rules would have found in [start, end), without touching any alert. A latched rule is told
    the terminal's first stored reading (as ``load`` tells it): [start, end) from after it is a re-read of history,
    not the terminal's first readings. Stuck sensors are compared with their neighbours as the workers compare them."""
    neighbours = Neighbours()
    neighbours.conn = conn
    rules = [r for r in rules_for(info, neighbours) if r.key.startswith(prefix)]
    data = queries.series(conn, info.id, sorted({m for r in rules for m in (r.metric, *r.context)}), start, end)
    firsts = queries.first_readings(conn, sorted({(info.id, r.metric) for r in rules if r.latched}))
    return [(rule, episode) for rule in rules
            for episode in rule.evaluate(data, latch=_origin(firsts.get((info.id, rule.metric))) if rule.latched
                                         else None)]


def _origin(first: dt.datetime | None) -> dict:
    """The latch a judge with no persisted state takes up: only the terminal's first stored reading."""
    return {"origin": first.isoformat() if first else None}


def sweep_silence(conn: psycopg.Connection, sink: AlertSink, shard: int = 0, shards: int = 1) -> None:
    """No data: open an alert for each metric silent for three expected intervals; resolve it when data returns."""
    silent = {(tid, metric): last for tid, metric, last in queries.silent_metrics(conn, shard, shards)}
    for alert_id, tid, metric in sink.open_nodata(conn, shard, shards):
        if (tid, metric) not in silent:
            sink.resolve_by_rule(conn, alert_id, "data arrives again")
    infos: dict[int, TerminalInfo | None] = {}
    for (tid, metric), last in silent.items():
        info = infos[tid] if tid in infos else infos.setdefault(tid, queries.terminal_info(conn, tid))
        if info is None:
            continue
        rule = Rule(f"device:nodata:{metric}", "device", "steward", metric, lambda s: None)
        since = last + dt.timedelta(seconds=3 * info.report_interval_s)
        episode = Episode(since, since, None, "warning", f"no {metric} since {last.isoformat()} "
                          f"(expected every {info.report_interval_s} s)", 0.0, 0.0)
        sink.reconcile(conn, info, rule, since, [episode])
