"""A rule's stream state without a database: what a batch makes each rule do."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from analytics.engine import Point
from analytics.evaluate import (
    FEED,
    REWIND,
    WAIT,
    WINDOW,
    RuleStream,
    TerminalStream,
    held_past_due,
    judge_terminal,
    read_since,
)
from analytics.rules import TerminalInfo, rules_for

STATION = TerminalInfo(1, "23120221000001R", "water_quality_station", "sthjj", "231202", None, 126.9, 46.5, 1800,
                       ("w21003", "w01009", "w01001"), {"river": "呼兰河", "chainage_km": 162, "target_class": "III"})
T0 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def test_a_fresh_window_rule_is_evaluated_at_once_even_on_a_box_booted_a_minute_ago():
    # time.monotonic() counts from boot on Linux: a window rule never evaluated must not wait for its ``every``
    # to pass since 0, or its state is persisted with no judged_to (a NOT NULL column) and its chunk fails.
    stuck = next(r for r in rules_for(STATION) if r.key.startswith("device:stuck:") and not r.streamable)
    assert stuck.every_s > 60
    assert RuleStream.fresh(stuck).step(T0, now=60.0) is WINDOW


def test_a_window_rule_waits_until_either_clock_has_run_its_every():
    """A day replayed in minutes (a compressed simulation, a logger's backlog uploaded in parts) is judged as often
    per observed hour as a live day; a late reading, or the last one, waits no longer than ``every`` of the
    worker's clock."""
    stuck = next(r for r in rules_for(STATION) if r.key.startswith("device:stuck:") and not r.streamable)
    stream = RuleStream.fresh(stuck, judged_to=T0)
    stream.evaluated_at = 1000.0
    just_after = 1000.0 + 1
    assert stream.step(T0 + stuck.every - dt.timedelta(seconds=1), just_after) is WAIT
    assert stream.step(T0 - dt.timedelta(hours=1), just_after) is WAIT  # late: in the next window
    assert stream.step(T0 + stuck.every, just_after) is WINDOW  # observation time ran on
    assert stream.step(T0 - dt.timedelta(hours=1), 1000.0 + stuck.every.total_seconds()) is WINDOW  # the clock did


def test_a_streamable_rule_is_fed_what_is_newer_than_it_judged():
    rule = next(r for r in rules_for(STATION) if r.key == "gb3838:w21003")
    stream = RuleStream.fresh(rule, judged_to=T0)
    assert stream.step(T0 + dt.timedelta(minutes=30), now=60.0) is FEED
    assert stream.step(T0, now=60.0) is WINDOW  # late: at or before what it judged


def test_the_least_recently_judged_terminals_go_first_never_judged_ones_first_of_all():
    from analytics.worker import CHUNK_MIN, RuleWorker

    worker = RuleWorker("postgresql://unused", None, "rules-test")
    busy = list(range(1, 3 * CHUNK_MIN + 1))  # judged a moment ago, in this order
    worker.judged_at = {t: 100.0 + t for t in busy}
    worker.pending = {t: T0 for t in busy}
    worker.pending[999] = T0 + dt.timedelta(minutes=5)  # spoke last, after a quiet spell: never judged here
    worker._cost = 1.0  # a slow box: the smallest chunk
    assert list(worker.next_chunk()) == [999, *busy[:CHUNK_MIN - 1]]
    assert list(worker.next_chunk()) == busy[CHUNK_MIN - 1:2 * CHUNK_MIN - 1]
    assert len(worker.pending) == len(busy) - 2 * CHUNK_MIN + 1


def test_a_fresh_reading_is_judged_in_a_chunk_of_light_terminals_not_behind_a_backlog():
    """A worker behind: the terminals it judged longest ago have seconds of readings queued (many batches); a
    detector that just spoke has one. Its chunk takes only terminals as light, so its alert commits after its own
    few queries, not after ``CHUNK_MIN`` terminals' backlogs."""
    from analytics.worker import CHUNK_MIN, RuleWorker

    worker = RuleWorker("postgresql://unused", None, "rules-test")
    heavy = list(range(1, 2 * CHUNK_MIN))
    worker.judged_at = {**{t: 100.0 + t for t in heavy}, 501: 200.0}
    worker.pending = {t: T0 for t in heavy} | {500: T0 + dt.timedelta(seconds=30), 501: T0 + dt.timedelta(seconds=31)}
    worker.newest = {t: T0 + dt.timedelta(seconds=30) for t in heavy} | {500: T0 + dt.timedelta(seconds=30.5),
                                                                       501: T0 + dt.timedelta(seconds=31)}
    worker._cost = 1.0
    assert list(worker.next_chunk()) == [500]  # 501 is light too but was judged more lately than the heavy ones
    assert list(worker.next_chunk()) == heavy[:CHUNK_MIN]
    assert worker.newest.keys() == {*heavy[CHUNK_MIN:], 501}


class _Sink:
    """Records what each reconcile of the spike rule found, from where."""

    def __init__(self) -> None:
        self.calls: list[tuple[dt.datetime, list]] = []

    def reconcile(self, conn, t, rule, window_start, found, stored=None) -> None:
        if rule.key == JUMP:
            self.calls.append((window_start, [(e.start, e.end) for e in found]))


JUMP = "device:jump:w01001"


def _ph(minutes: list[float], values: dict[float, float] | None = None) -> list[Point]:
    values = values or {}
    return [Point(T0 + dt.timedelta(minutes=m), values.get(m, 7.0 + (m % 3) * 0.01)) for m in minutes]


def _judge(stream: TerminalStream, sink: _Sink, new: list[Point], read: list[Point] | None = None,
           stored: list[dict] | None = None) -> dict:
    """A batch of ``new`` readings, the worker having read ``read`` (by default the new ones) and the rule's
    ``stored`` alerts."""
    earliest, stored_of = min(p.ts for p in new), {JUMP: stored or []}
    since = read_since(stream, earliest, stored_of)
    judge_terminal(None, sink, stream, earliest, {"w01001": sorted(read or new, key=lambda p: p.ts)}, stored_of)
    return since


def _stream() -> TerminalStream:
    return TerminalStream(STATION, {r.key: RuleStream.fresh(r) for r in rules_for(STATION) if r.key == JUMP}, 1)


def test_a_late_reading_makes_the_spike_rule_re_read_from_the_two_readings_before_it_not_hours():
    stream, sink = _stream(), _Sink()
    _judge(stream, sink, _ph(list(range(0, 20))))
    since = _judge(stream, sink, _ph([15.5]), _ph([14, 15, 15.5, *range(16, 20)]))
    assert since["w01001"] == T0 + dt.timedelta(minutes=14)


def test_a_late_reading_that_turns_a_spike_into_a_step_retracts_it_and_one_that_makes_a_spike_raises_it():
    spike = {16: 13.5}
    full = _ph(sorted([*range(0, 24), 16.5]), {16: 13.5, 16.5: 13.5})
    rule = next(r for r in rules_for(STATION) if r.key == JUMP)
    assert rule.evaluate({"w01001": full}) == []  # two readings up: a step, not a spike
    stream, sink = _stream(), _Sink()
    _judge(stream, sink, _ph(list(range(0, 24)), spike))
    assert sink.calls[-1][1] == [(T0 + dt.timedelta(minutes=17), None)]  # the spike, judged on the reading after
    opened = [{"id": 1, "status": "open", "observed_start": T0 + dt.timedelta(minutes=17), "observed_end": None}]
    _judge(stream, sink, _ph([16.5], {16.5: 13.5}), [p for p in full if p.ts >= T0 + dt.timedelta(minutes=15)],
           opened)
    start, found = sink.calls[-1]
    assert start == T0 + dt.timedelta(minutes=15) and found == []  # re-read from 15: the spike is retracted

    stream, sink = _stream(), _Sink()
    _judge(stream, sink, _ph(list(range(0, 24))))
    assert all(found == [] for _, found in sink.calls)
    _judge(stream, sink, _ph([10.5], {10.5: 13.5}), _ph([9, 10, 10.5, *range(11, 24)], {10.5: 13.5}))
    assert sink.calls[-1] == (T0 + dt.timedelta(minutes=9), [(T0 + dt.timedelta(minutes=11), None)])


DETECTOR = TerminalInfo(2, "23120232000001R", "methane_detector", "zjj", "231202", None, 126.9, 46.5, 60,
                        ("methane_lel",), {})


class _Untouchable:
    """A terminal in memory whose screens hold nothing: ``held_past_due`` has no business looking at it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"held_past_due looked at a terminal holding no reading (.{name})")


def _detector(values: list[float]) -> TerminalStream:
    stream = TerminalStream(DETECTOR, {r.key: RuleStream.fresh(r) for r in rules_for(DETECTOR)}, 1)
    points = [Point(T0 + dt.timedelta(minutes=i), v) for i, v in enumerate(values)]
    judge_terminal(None, _Sink(), stream, T0, {"methane_lel": points}, {})
    return stream


def test_the_search_for_held_jumps_looks_only_at_the_terminals_holding_one():
    """Every two seconds the worker looks for jumps followed by silence: it must cost the terminals that just
    jumped, not every terminal in memory (10^5 a worker)."""
    jumped, calm = _detector([0.0, 0.0, 45.0]), _detector([0.0, 0.1, 0.2])
    assert jumped.holding() and not calm.holding()
    memory = {2: jumped, 3: calm, **{t: _Untouchable() for t in range(100, 10_100)}}
    holding = {2, 3}
    assert held_past_due(memory, holding) == {}  # the next reading may still make it a spike
    assert holding == {2}  # the calm one held nothing: it leaves the set
    newest, at = jumped.heard
    jumped.heard = (newest, at - 600)  # ten minutes of silence on the detector's clock
    after = max(rs.judged_to for rs in jumped.rules.values() if rs.judged_to is not None)
    assert held_past_due(memory, holding) == {2: after + dt.timedelta(microseconds=1)}
    del memory[2]
    assert held_past_due(memory, holding) == {} and holding == set()


def _judged_out_of_order(values: list[float], keys: tuple[str, ...], clock: list[float]):
    """A reading a minute of ``values`` to the station's rules ``keys``, a batch each, every seventh committed after
    the next one (two ingest workers); batches ``MARK_EVERY_S`` apart on the patched ``clock``, so each rule notes
    a mark after each. Returns the readings, the stream, every rule's step per batch and how many came late."""
    from analytics import evaluate

    points = [Point(T0 + dt.timedelta(minutes=i), round(v, 3)) for i, v in enumerate(values)]
    batches = [[p] for p in points]
    late = range(5, len(batches) - 1, 7)
    for i in late:
        batches[i], batches[i + 1] = batches[i + 1], batches[i]
    stream = TerminalStream(STATION, {r.key: RuleStream.fresh(r, judged_to=T0 - dt.timedelta(minutes=1))
                                      for r in rules_for(STATION) if r.key in keys}, 1)
    committed: list[Point] = []
    steps = []
    for batch in batches:
        committed = sorted(committed + batch, key=lambda p: p.ts)
        earliest = min(p.ts for p in batch)
        since = read_since(stream, earliest, {})
        steps += [stream.steps[key] for key in keys]
        data = {m: [p for p in committed if p.ts >= start] for m, start in since.items()}
        judge_terminal(None, _Sink(), stream, earliest, data, {})
        clock[0] += evaluate.MARK_EVERY_S
    return points, stream, steps, len(late)


def test_a_reading_a_moment_late_rewinds_the_rule_to_a_mark_and_ends_where_judging_in_order_ends(monkeypatch):
    """Two ingest workers' batches commit out of order: a reading arrives after a newer one of its terminal was
    judged. The streamed rules go back to a mark before it and feed on (reading seconds, not the rule's hours of
    lookback), and end in the state judging every reading in order reaches: same episode, same memory."""
    import random

    from analytics import evaluate

    clock = [1000.0]
    monkeypatch.setattr(evaluate.time, "monotonic", lambda: clock[0])
    keys = ("device:jump:w01001", "device:drift:w01001", "gb3838:w01001")
    rng = random.Random(7)
    values = [7.0 + 0.006 * i + rng.choice([0, 0, 0, 0.01, 3.5, -3.5]) for i in range(400)]  # creep and spikes
    points, stream, steps, late = _judged_out_of_order(values, keys, clock)
    assert steps.count(REWIND) == 3 * late and WINDOW not in steps
    for key in keys:
        rs, in_order = stream.rules[key], RuleStream.fresh(stream.rules[key].rule, T0)
        in_order.tracker.feed_all(points, in_order.judge)
        assert rs.judged_to == points[-1].ts
        assert rs.tracker.snapshot() == in_order.tracker.snapshot(), key
        if hasattr(rs.judge, "snapshot"):
            assert rs.judge.snapshot() == in_order.judge.snapshot(), key


def test_a_reading_later_than_the_last_marks_goes_back_to_the_older_mark(monkeypatch):
    from analytics import evaluate

    clock = [1000.0]
    monkeypatch.setattr(evaluate.time, "monotonic", lambda: clock[0])
    points = [Point(T0 + dt.timedelta(minutes=i), 7.0 + (i % 4) * 0.01) for i in range(40)]
    late = points.pop(33)  # commits after the 6 readings after it were judged, a batch a second
    stream = TerminalStream(STATION, {JUMP: RuleStream.fresh(next(r for r in rules_for(STATION) if r.key == JUMP),
                                                              judged_to=T0 - dt.timedelta(minutes=1))}, 1)
    committed: list[Point] = []
    for batch in [[p] for p in points] + [[late]]:
        committed = sorted(committed + batch, key=lambda p: p.ts)
        rs = stream.rules[JUMP]
        if batch[0] is late:
            assert all(m.judged_to >= late.ts for m in rs.marks) and rs.old_mark.judged_to < late.ts
        since = read_since(stream, batch[0].ts, {})
        data = {m: [p for p in committed if p.ts >= start] for m, start in since.items()}
        judge_terminal(None, _Sink(), stream, batch[0].ts, data, {})
        clock[0] += evaluate.MARK_EVERY_S
    assert stream.rules[JUMP] is rs and since["w01001"] == rs.old_mark.judged_to + dt.timedelta(microseconds=1)
    in_order = RuleStream.fresh(rs.rule, T0)
    in_order.tracker.feed_all(committed, in_order.judge)
    assert rs.judge.snapshot() == in_order.judge.snapshot() and rs.judged_to == committed[-1].ts


def test_a_quality_checked_bureau_rule_rewinds_and_ends_where_judging_in_order_ends(monkeypatch):
    """The river's class rule sits behind the drift test's quality flag (``rules._quality_checked``): its memory
    (the drift test's bins, when it last doubted) is noted and put back with the class judge's, so a reading a
    moment late costs a rewind, not a re-read of the flag's two-hour lookback, and ends in the same state."""
    from analytics import evaluate

    clock = [1000.0]
    monkeypatch.setattr(evaluate.time, "monotonic", lambda: clock[0])
    keys = ("gb3838:w21003", "device:drift:w21003")
    values = [0.6 + 0.004 * i + (0.05 if i % 5 == 0 else 0) for i in range(300)]  # a creep across class III
    points, stream, steps, late = _judged_out_of_order(values, keys, clock)
    assert steps.count(REWIND) == 2 * late and WINDOW not in steps
    rs = stream.rules["gb3838:w21003"]
    in_order = RuleStream.fresh(rs.rule, T0)
    in_order.tracker.feed_all(points, in_order.judge)
    assert rs.tracker.snapshot() == in_order.tracker.snapshot()
    assert rs.judge.snapshot() == in_order.judge.snapshot()


def _fast(seconds: float, every_s: float = 0.2, start: float = 0.0) -> list[Point]:
    """A reading every ``every_s`` from ``start`` seconds after T0 for ``seconds``, noisy, a spike now and then."""
    count = round(seconds / every_s)
    return [Point(T0 + dt.timedelta(seconds=start + i * every_s), 7.0 + (i % 5) * 0.01 + (3.5 if i % 37 == 0 else 0))
            for i in range(count)]


def _in_order_state(rs: RuleStream, points: list[Point]) -> tuple:
    in_order = RuleStream.fresh(rs.rule, T0 - dt.timedelta(seconds=1))
    in_order.tracker.feed_all(points, in_order.judge)
    return in_order.tracker.snapshot(), in_order.judge.snapshot() if hasattr(in_order.judge, "snapshot") else None


def test_a_long_feed_notes_marks_inside_it_so_a_reading_a_moment_late_replays_seconds_not_the_feed():
    """A worker behind judges half a minute of a fast terminal at once; a reading a second older than the newest
    commits after it. The rule goes back to the mark noted two seconds before the newest, not to the start."""
    keys = ("device:jump:w01001", "device:drift:w01001")
    everything = _fast(30)
    late = everything.pop(-5)  # 0.8 s before the newest
    stream = TerminalStream(STATION, {r.key: RuleStream.fresh(r, judged_to=T0 - dt.timedelta(seconds=1))
                                      for r in rules_for(STATION) if r.key in keys}, 1)
    judge_terminal(None, _Sink(), stream, everything[0].ts, {"w01001": everything}, {})
    since = read_since(stream, late.ts, {})
    assert [stream.steps[k] for k in keys] == [REWIND, REWIND]
    newest = everything[-1].ts
    assert newest - dt.timedelta(seconds=3) < since["w01001"] <= newest - dt.timedelta(seconds=2, microseconds=-1)
    committed = sorted([*everything, late], key=lambda p: p.ts)
    judge_terminal(None, _Sink(), stream, late.ts, {"w01001": [p for p in committed if p.ts >= since["w01001"]]}, {})
    for key in keys:
        rs = stream.rules[key]
        assert rs.judged_to == newest
        assert (rs.tracker.snapshot(), rs.judge.snapshot()) == _in_order_state(rs, committed), key


def test_a_rewind_looks_for_its_mark_once(monkeypatch):
    calls = []
    original = RuleStream.mark_before
    monkeypatch.setattr(RuleStream, "mark_before", lambda self, earliest: calls.append(1) or original(self, earliest))
    stream = TerminalStream(STATION, {JUMP: RuleStream.fresh(next(r for r in rules_for(STATION) if r.key == JUMP),
                                                              judged_to=T0 - dt.timedelta(seconds=1))}, 1)
    everything = _fast(30)
    late = everything.pop(-25)
    for batch in (everything[:100], everything[100:]):
        judge_terminal(None, _Sink(), stream, batch[0].ts, {"w01001": batch}, {})
    calls.clear()
    since = read_since(stream, late.ts, {})
    assert stream.steps[JUMP] is REWIND
    committed = sorted([*everything, late], key=lambda p: p.ts)
    judge_terminal(None, _Sink(), stream, late.ts, {"w01001": [p for p in committed if p.ts >= since["w01001"]]}, {})
    assert stream.rules[JUMP].judged_to == everything[-1].ts and len(calls) == 1


def test_an_idle_terminal_forgets_its_marks_and_a_late_reading_re_reads_the_window_to_the_same_state():
    """Marks cost memory (docs/capacity.md): a terminal idle for a minute drops them. A reading that comes later
    still is taken in by re-reading the rule's window and judged as if it had come in order."""
    keys = ("device:jump:w01001", "device:drift:w01001", "gb3838:w01001")
    everything = _fast(30)
    late = everything.pop(-5)
    stream = TerminalStream(STATION, {r.key: RuleStream.fresh(r, judged_to=T0 - dt.timedelta(seconds=1))
                                      for r in rules_for(STATION) if r.key in keys}, 1)
    judge_terminal(None, _Sink(), stream, everything[0].ts, {"w01001": everything}, {})
    assert all(rs.marks for rs in stream.rules.values())
    stream.forget_marks()
    assert not any(rs.marks or rs.old_mark for rs in stream.rules.values())
    since = read_since(stream, late.ts, {})
    assert [stream.steps[k] for k in keys] == [WINDOW] * 3
    committed = sorted([*everything, late], key=lambda p: p.ts)
    judge_terminal(None, _Sink(), stream, late.ts, {"w01001": [p for p in committed if p.ts >= since["w01001"]]}, {})
    for key in keys:
        rs = stream.rules[key]
        assert rs.judged_to == everything[-1].ts
        assert rs.tracker.snapshot() == _in_order_state(rs, committed)[0], key


def test_the_worker_drops_the_marks_of_terminals_idle_for_a_minute_and_only_theirs_not_queued_ones():
    from analytics.evaluate import IDLE_S
    from analytics.worker import RuleWorker

    worker = RuleWorker("postgresql://unused", None, "rules-test")
    streams = {}
    for terminal_id in (1, 2, 3):
        streams[terminal_id] = TerminalStream(STATION, {JUMP: RuleStream.fresh(
            next(r for r in rules_for(STATION) if r.key == JUMP), judged_to=T0 - dt.timedelta(seconds=1))}, 1)
        judge_terminal(None, _Sink(), streams[terminal_id], T0, {"w01001": _fast(30)}, {})
    worker.memory = dict(streams)
    worker.memory[4] = streams[4] = TerminalStream(STATION, {JUMP: RuleStream.fresh(
        next(r for r in rules_for(STATION) if r.key == JUMP), judged_to=T0 - dt.timedelta(seconds=1))}, 1)
    judge_terminal(None, _Sink(), streams[4], T0, {"w01001": _fast(30)}, {})
    worker.marked = {2: 10.0, 4: 15.0, 1: 20.0, 3: 100.0}  # last judged in this order, at these times
    worker.pending = {4: T0}  # reporting, queued behind a backlog: judged late, not idle
    worker.forget_idle(20.0 + IDLE_S + 1)
    assert [bool(streams[t].rules[JUMP].marks) for t in (1, 2, 3, 4)] == [False, False, True, True]
    assert list(worker.marked) == [4, 3]


def test_a_catch_up_is_queued_and_a_fresh_alarm_goes_before_its_backlog(monkeypatch):
    """A worker started under load catches up on every terminal that had readings while it was away: it queues
    them (the loop judges them chunk by chunk, hearing notifications in between) instead of judging them all
    before it listens again, and a never-judged terminal with a fresh reading goes before their backlog."""
    from analytics import queries
    from analytics.worker import RuleWorker

    class _Conn:
        def commit(self) -> None:
            pass

    class _Listen:
        def __init__(self, payloads: list[str]) -> None:
            self.payloads = payloads

        def notifies(self, timeout: float, stop_after: int | None = None):
            taken, self.payloads = self.payloads[:stop_after], self.payloads[stop_after:]
            return iter(psycopg.Notify(channel="readings", payload=p, pid=0) for p in taken)

    backlog = {t: T0 + dt.timedelta(seconds=t) for t in range(1, 301)} | {999: T0}  # 999 quiet longest
    monkeypatch.setattr(queries, "arrived_since", lambda conn, since: backlog)
    worker = RuleWorker("postgresql://unused", None, "rules-test")
    worker.pending = {7: T0 - dt.timedelta(minutes=1)}  # notified already, from earlier still
    worker.catch_up(_Conn(), T0)
    assert worker.pending == {**backlog, 7: T0 - dt.timedelta(minutes=1)}  # queued, nothing judged
    alarm = T0 + dt.timedelta(minutes=30)  # published during the catch-up by a terminal in its backlog
    worker.drain(_Listen([f"1|999:{int(alarm.timestamp() * 1000)}"]), 0.0, T0)
    assert worker.pending[999] == backlog[999]  # its backlog is judged with it
    worker._cost = 1.0
    assert next(iter(worker.next_chunk())) == 999


def test_marks_inside_a_feed_do_not_push_out_the_marks_of_the_batches_before_it():
    """A worker behind judges half a minute of readings at a time; a reading from the batch before the last one
    (an ingest worker seconds behind the other) still rewinds to the end of the batch before it, not re-reads
    the rule's hours."""
    keys = ("device:jump:w01001", "device:drift:w01001")
    everything = _fast(90)
    late = everything.pop(200)  # 40 s in: in the second batch, delivered after the third
    stream = TerminalStream(STATION, {r.key: RuleStream.fresh(r, judged_to=T0 - dt.timedelta(seconds=1))
                                      for r in rules_for(STATION) if r.key in keys}, 1)
    for batch in ([p for p in everything if p.ts < T0 + dt.timedelta(seconds=s + 30) and
                   p.ts >= T0 + dt.timedelta(seconds=s)] for s in (0, 30, 60)):
        judge_terminal(None, _Sink(), stream, batch[0].ts, {"w01001": batch}, {})
    since = read_since(stream, late.ts, {})
    assert [stream.steps[k] for k in keys] == [REWIND, REWIND]
    assert since["w01001"] == max(p.ts for p in everything if p.ts < T0 + dt.timedelta(seconds=30)) + \
        dt.timedelta(microseconds=1)
    committed = sorted([*everything, late], key=lambda p: p.ts)
    judge_terminal(None, _Sink(), stream, late.ts, {"w01001": [p for p in committed if p.ts >= since["w01001"]]}, {})
    for key in keys:
        rs = stream.rules[key]
        assert rs.judged_to == everything[-1].ts
        assert (rs.tracker.snapshot(), rs.judge.snapshot()) == _in_order_state(rs, committed), key



def test_the_watermark_moves_on_under_load_but_stays_before_a_queued_terminal(conn, db_url):
    """Under load something is nearly always queued: the watermark a restart catches up from was saved only with
    nothing queued, so it stood still and a restart re-read hours. It is the time the earliest queued terminal was
    queued (not the step's start, which would skip that terminal's readings after a restart)."""
    from analytics.worker import RuleWorker

    worker = RuleWorker(db_url, None, "rules-busy")
    worker.members = ["rules-busy"]
    worker._due = {"members": float("inf"), "sweep": float("inf"), "watermark": 0.0}
    queued = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3)
    worker.pending, worker.queued = {7: T0}, {7: queued}
    worker.next_chunk = dict  # terminal 7 stays queued through the step, as behind a long backlog
    with psycopg.connect(db_url, autocommit=True) as listen, psycopg.connect(db_url) as mine:
        worker.listen(listen)
        assert worker.step(listen, mine, wait_s=0.0) == 0
    assert conn.execute("select received_at from rule_watermark where worker = 'rules-busy'"
                        ).fetchone()[0] == queued


def test_the_watermark_stays_before_a_batch_that_was_still_writing_when_it_was_heard(conn, db_url):
    """A batch of thousands is inserted seconds before it commits (its readings' arrival is the insert's clock):
    queued at the moment its notification was drained, a watermark saved meanwhile passed its readings, and a
    restart then would not have re-read them (the margin is 10 s; a batch under load takes longer)."""
    from analytics.worker import READINGS_CHANNEL, RuleWorker

    worker = RuleWorker(db_url, None, "rules-long-batch")
    worker.members = ["rules-long-batch"]
    worker._due = {"members": float("inf"), "sweep": float("inf"), "watermark": 0.0}
    worker.next_chunk = dict  # what is queued stays queued, as behind a backlog
    with psycopg.connect(db_url, autocommit=True) as listen, psycopg.connect(db_url) as mine, \
            psycopg.connect(db_url) as batch:
        worker.listen(listen)
        began = batch.execute("select pg_current_xact_id()::text, now()").fetchone()  # it writes from here on
        worker.step(listen, mine, wait_s=0.0)
        batch.execute("select pg_notify(%s, %s)", (READINGS_CHANNEL, f"{began[0]}|7:{int(T0.timestamp() * 1000)}"))
        batch.commit()
        worker._due["watermark"] = 0.0
        worker.step(listen, mine, wait_s=0.5)
    assert 7 in worker.pending
    saved = conn.execute("select received_at from rule_watermark where worker = 'rules-long-batch'").fetchone()[0]
    assert saved <= began[1]


def test_a_watermark_may_move_back(conn, db_url):
    """A departed worker's terminals are queued with its (older) watermark: the row kept the later one, and a
    restart of the worker that took them over skipped their backlog."""
    from analytics import queries

    later = dt.datetime.now(dt.UTC)
    with psycopg.connect(db_url) as c:
        queries.save_watermark(c, "rules-back", later)
        queries.save_watermark(c, "rules-back", later - dt.timedelta(minutes=5))
        c.commit()
    assert queries.watermark(conn, ["rules-back"]) == later - dt.timedelta(minutes=5)


def test_a_worker_that_saved_no_watermark_counts_as_the_last_hour(conn, db_url):
    """Two workers leave at once, one of them before its first save (it joined a moment before): their terminals'
    catch-up took the other's recent watermark, and skipped what the first had taken over."""
    from analytics import queries

    recent = dt.datetime.now(dt.UTC)
    with psycopg.connect(db_url) as c:
        queries.save_watermark(c, "rules-saved", recent)
        c.commit()
    assert queries.watermark(conn, ["rules-saved"]) == recent
    assert queries.watermark(conn, ["rules-saved", "rules-unsaved"]) < recent - dt.timedelta(minutes=59)
    assert queries.watermark(conn, None) == recent


class _Clock:
    def __init__(self) -> None:
        self.at = 1000.0

    def monotonic(self) -> float:
        return self.at


def _commits(ingest, clock: _Clock, batches: list[tuple[float, list[float]]]) -> list[float]:
    """Batches heard ``real`` seconds apart, with their terminals' observations (seconds after T0): the clock after
    each."""
    seen = []
    for real, observed in batches:
        clock.at += real
        ingest.heard([T0 + dt.timedelta(seconds=s) for s in observed])
        seen.append(ingest.now())
    return seen


def test_the_ingest_clock_runs_with_what_commits_not_faster_than_real_time(monkeypatch):
    """A lagging ingest (each second of real time commits half a second of readings) moves the clock half as fast,
    and the real time it owes is counted once the ingest catches up; a compressed simulation (a minute of readings a
    second) moves it no faster than real time; one device with a clock ten minutes fast, in a batch of its own,
    moves it by no more than the real time since the last commit and ``CARRY_S``."""
    from analytics import evaluate

    clock = _Clock()
    monkeypatch.setattr(evaluate, "time", clock)

    def ingest(batches: list[tuple[float, list[float]]]) -> float:
        heard = evaluate.IngestClock()
        seen = _commits(heard, clock, [(0.0, [0.0, 0.1, 0.2]), *batches])
        return seen[-1] - seen[0]

    lagging = [(1.0, [0.5 * n, 0.5 * n + 0.1, 0.5 * n - 0.1]) for n in range(1, 11)]
    assert ingest(lagging) == pytest.approx(5.0, abs=0.3)
    assert ingest([*lagging, *[(0.1, [10.3])] * 6]) == pytest.approx(10.2, abs=0.3)  # caught up
    assert ingest([(1.0, [60.0 * n]) for n in range(1, 11)]) == pytest.approx(10.0, abs=0.01)
    assert ingest([(0.1, [600.2]), (0.1, [0.4])]) <= 0.2 + evaluate.CARRY_S


def test_the_ingest_clock_stood_still_for_quiet_s_counts_real_time_though_old_batches_keep_committing(monkeypatch):
    """Only loggers' hour-old backlogs commit while the live devices' path is down (a broker outage): every batch lies
    behind the clock's horizon, none moves it. After ``QUIET_S`` of a clock standing still, real time counts again (a
    held jump is released at most that late), as when nothing commits at all: a trickle of old batches must not
    freeze every terminal's clock for as long as it lasts."""
    from analytics import evaluate

    clock = _Clock()
    monkeypatch.setattr(evaluate, "time", clock)
    heard = evaluate.IngestClock()
    old = [(60.0, [-3600.0 + 60 * n]) for n in range(1, 16)]  # a batch a minute, an hour old, for 15 minutes
    seen = _commits(heard, clock, [(0.0, [0.0]), *old])
    assert seen[-1] - seen[0] == pytest.approx(15 * 60.0, abs=1.0)
    assert heard.now() - seen[0] == pytest.approx(15 * 60.0, abs=1.0)
