"""Quiet alerts (issue 12 §2): a device fault is the steward's matter and raises no bureau alert — a reading
the QARTOD spike test calls a spike is never judged by the pollution, gas, water or heating rules, a stuck meter
does not make a night's minimum — while real events are still heard, from their first reading."""

from __future__ import annotations

import datetime as dt
import random
import time
import tracemalloc

import psycopg

from alerts import service as alerts_service
from analytics import evaluate, rules
from analytics.engine import Episode, Point
from analytics.rules import FIXING, SENSOR_OK, TerminalInfo, latch_of, rules_for
from core.settings import get_settings
from ganzhi.bench_alert_quality import Raised, _score, replay
from ganzhi.bench_alert_quality_live import score_stored
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from simulators import truth
from simulators.faults import Fault
from tests.analytics.test_worker import NOW, Worker, _alerts, _write
from tests.factories import river_station, terminal_in

BEIJING = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 27, 0, 0, tzinfo=BEIJING)


def _terminal(kind: str, metrics: tuple[str, ...], interval: int, attrs: dict | None = None) -> TerminalInfo:
    return TerminalInfo(1, "23120232000001R", kind, "zjj", "231202", None, 126.9, 46.5, interval, metrics, attrs or {})


def _points(values, step_s: int, start: dt.datetime = T0) -> list[Point]:
    return [Point(start + dt.timedelta(seconds=step_s * i), v) for i, v in enumerate(values)]


RE_READ = {"origin": (T0 - dt.timedelta(days=1)).isoformat()}
"""The latch of a terminal that reported long before the series judged: the series is a re-read of history."""


def _found(t: TerminalInfo, series: dict[str, list[Point]]) -> dict[str, list[Episode]]:
    return {r.key: found for r in rules_for(t) if (found := r.evaluate(series))}


def test_a_methane_spike_is_a_device_alert_not_a_leak():
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    found = _found(detector, {"methane_lel": _points([0.0] * 30 + [30.0] + [0.0] * 30, 60)})
    assert list(found) == ["device:jump:methane_lel"]


def test_a_leak_that_stays_is_alerted_from_its_first_reading():
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    found = _found(detector, {"methane_lel": _points([0.0] * 30 + [45.0, 47.0, 44.0] + [0.0] * 30, 60)})
    assert list(found) == ["gas:methane"]
    assert found["gas:methane"][0].start == T0 + dt.timedelta(minutes=30)
    assert found["gas:methane"][0].end == T0 + dt.timedelta(minutes=33)


def test_a_gas_pressure_spike_is_neither_out_of_band_nor_a_falling_pressure():
    gas = _terminal("gas_pressure_sensor", ("gas_pressure",), 60, {"set_point_kpa": 3.0, "pressure_class": "low"})
    values = [3.0] * 30 + [3.0 + 0.3 * 4000] + [3.0] * 30  # the simulators' spike: 30 % of the range
    assert list(_found(gas, {"gas_pressure": _points(values, 60)})) == ["device:jump:gas_pressure"]


def test_a_supply_temperature_spike_raises_no_heating_alert():
    substation = _terminal("heating_substation_sensor", ("supply_temp",), 300)
    values = [70.0] * 12 + [70.0 + 0.3 * 160] + [70.0] * 12
    assert list(_found(substation, {"supply_temp": _points(values, 300)})) == ["device:jump:supply_temp"]


def test_a_flow_meter_stuck_high_makes_no_night_leak_and_a_real_one_still_does():
    meter = _terminal("district_flow_meter", ("water_flow",), 300, {"district": "DMA-02", "night_allowance_m3h": 12})
    evening = dt.datetime(2026, 11, 26, 20, 0, tzinfo=BEIJING)
    rng = random.Random(3)
    stuck = [round(40 + rng.gauss(0, 2), 2) for _ in range(6)] + [21.28] * (10 * 12)  # frozen from 20:30 on
    night = next(r for r in rules_for(meter) if r.key == "water:night_flow")
    assert night.evaluate({"water_flow": _points(stuck, 300, evening)}) == []
    leaking = [round(40 + rng.gauss(0, 2), 2) for _ in range(10 * 12)]
    assert len(night.evaluate({"water_flow": _points(leaking, 300, evening)})) == 1


def test_a_sensor_spiking_every_few_readings_is_one_alert_for_the_steward():
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    values = [30.0 if i % 10 == 5 else 0.0 for i in range(180)]
    found = _found(detector, {"methane_lel": _points(values, 60)})
    assert list(found) == ["device:jump:methane_lel"] and len(found["device:jump:methane_lel"]) == 1


def test_a_restarted_worker_still_knows_the_reading_before_a_spike(conn, db_url):
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector"), Actor("t"))
    conn.commit()
    first = Worker(db_url)
    _write(db_url, code, "methane_lel", [(-10, 0.0, None), (-9, 0.0, None), (-8, 0.0, None)])
    first.step()
    first.close()
    restarted = Worker(db_url)
    try:
        _write(db_url, code, "methane_lel", [(-7, 30.0, None)])
        restarted.step()
        _write(db_url, code, "methane_lel", [(-6, 0.0, None)])
        restarted.step()
    finally:
        restarted.close()
    assert [rule for rule, *_ in _alerts(db_url)] == ["device:jump:methane_lel"]


def test_a_held_jump_that_stays_opens_the_alert_at_its_own_time(conn, db_url):
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector"), Actor("t"))
    conn.commit()
    worker = Worker(db_url)
    try:
        _write(db_url, code, "methane_lel", [(-10, 0.0, None), (-9, 0.0, None)])
        worker.step()
        _write(db_url, code, "methane_lel", [(-8, 45.0, None)])
        worker.step()
        assert _alerts(db_url) == []  # a spike until the next reading says otherwise
        _write(db_url, code, "methane_lel", [(-7, 46.0, None)])
        worker.step()
    finally:
        worker.close()
    assert [(rule, status, start) for rule, status, _, start, _ in _alerts(db_url)] == [
        ("gas:methane", "open", NOW - dt.timedelta(minutes=8))]
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from alert where rule like 'device:%'").fetchone()[0] == 0


def test_a_jump_to_an_alarm_and_then_silence_is_judged_once_no_reading_can_make_it_a_spike():
    """A detector that reads 45 %LEL and then goes silent (burnt, unpowered) raises the leak, not only the no-data
    alert: once three intervals have passed after the reading before the jump, no later reading can make it a
    spike, so the held reading is judged with its own observation time."""
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    series = {"methane_lel": _points([0.0] * 10 + [45.0], 60)}
    jumped = T0 + dt.timedelta(minutes=10)
    leak = next(r for r in rules_for(detector) if r.key == "gas:methane")
    assert leak.evaluate(series, now=jumped + dt.timedelta(minutes=1)) == []  # the next reading may still come
    found = leak.evaluate(series, now=jumped + dt.timedelta(minutes=3))
    assert [(e.start, e.end, e.worst_value) for e in found] == [(jumped, None, 45.0)]


def test_a_running_worker_judges_a_fresh_jump_once_the_detector_has_stayed_silent(conn, db_url, monkeypatch):
    """The jump arrives on time and nothing follows while the rest of the city goes on reporting: the worker itself
    notices, three intervals after the reading before the jump, that the jump can no longer be a spike (a detector
    reporting every second, to wait seconds)."""
    monkeypatch.setattr(evaluate, "INGEST", evaluate.IngestClock())
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector", report_interval_s=1), Actor("t"))
    city = service.create_terminal(conn, terminal_in("甲烷2", "methane_detector", report_interval_s=1), Actor("t"))
    conn.commit()
    worker = Worker(db_url)
    clock = dt.datetime.now(dt.UTC)
    try:
        _write_at(db_url, code, "methane_lel", [(clock - dt.timedelta(seconds=1), 0.0), (clock, 45.0)])
        worker.step()
        assert _alerts(db_url) == []  # the next reading may still show a spike
        give_up = time.monotonic() + 30
        while not _alerts(db_url) and time.monotonic() < give_up:  # silence for the spike test's three seconds
            _write_at(db_url, city, "methane_lel", [(dt.datetime.now(dt.UTC), 0.0)])  # the city goes on
            worker.rules._due["members"] = 0.0  # the periodic chores (every two seconds) run on each step
            worker.step()
    finally:
        worker.close()
    jumped = clock.replace(microsecond=clock.microsecond // 1000 * 1000)  # stored to the millisecond
    assert [(rule, status, start) for rule, status, _, start, _ in _alerts(db_url)] == [("gas:methane", "open", jumped)]


class _WallClock:
    """``analytics.evaluate``'s ``time``, put forward by hand (``ahead``): the rest of the process keeps real time."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


def _jump_then_wall_time(conn, db_url, monkeypatch, seconds: float) -> tuple[str, Worker]:
    """A detector reporting every minute reads 0 then 45 %LEL; the worker holds the jump; then ``seconds`` of wall
    time pass with nothing committed by anyone, and the worker looks for held jumps (its two-second chore)."""
    monkeypatch.setattr(evaluate, "INGEST", evaluate.IngestClock())
    wall = _WallClock()
    monkeypatch.setattr(evaluate, "time", wall)
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector", report_interval_s=60), Actor("t"))
    conn.commit()
    worker = Worker(db_url)
    _write(db_url, code, "methane_lel", [(-2, 0.0, None), (-1, 45.0, None)])
    worker.step()
    assert worker.rules.holding and _alerts(db_url) == []
    wall.ahead += seconds
    worker.rules._due["members"] = 0.0
    worker.step()
    return code, worker


def test_an_ingest_stall_is_no_silence_of_the_detector_and_releases_no_held_jump(conn, db_url, monkeypatch):
    """The ingest stalls for four minutes (a database failover, an overloaded ingest's queue) with the detector's
    next reading, 0 %LEL, in it: nothing is committed for anyone meanwhile. The detector was not silent, the
    ingest was: the jump stays held, and when the backlog commits it is a spike (the steward's), not a leak. On the
    worker's real-time clock the four minutes ran past the spike test's three intervals and released the jump as a
    real reading of 45 %LEL (``gas:methane``)."""
    code, worker = _jump_then_wall_time(conn, db_url, monkeypatch, 240.0)
    try:
        assert _alerts(db_url) == []
        _write(db_url, code, "methane_lel", [(0, 0.0, None)])  # the stall ends: the backlog commits
        worker.step()
    finally:
        worker.close()
    assert [rule for rule, *_ in _alerts(db_url)] == ["device:jump:methane_lel"]


def test_a_city_quiet_for_longer_than_any_stall_releases_a_held_jump(conn, db_url, monkeypatch):
    """Nothing at all committed for ``QUIET_S`` (five minutes) is no stall the ingest recovers from but a city gone
    quiet (or an outage the no-data alerts have paged about): a held alarm is not kept back for ever, real time
    counts again and the jump is judged as a reading, a leak."""
    _, worker = _jump_then_wall_time(conn, db_url, monkeypatch, evaluate.QUIET_S + 1)
    worker.close()
    assert [rule for rule, *_ in _alerts(db_url)] == ["gas:methane"]


def _write_at(db_url: str, code: str, metric: str, values: list[tuple[dt.datetime, float]]) -> None:
    with psycopg.connect(db_url) as conn:
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        Writer().write(conn, Batch(readings=[Accepted(terminal_id, code, metric, int(at.timestamp() * 1000), v, None)
                                             for at, v in values]))
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from alert where rule like 'device:%'").fetchone()[0] == 0


def test_the_score_counts_a_bureau_alert_raised_by_a_device_fault_as_false():
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    rule = next(r for r in rules_for(detector) if r.key == "gas:methane")
    jump = next(r for r in rules_for(detector) if r.key == "device:jump:methane_lel")
    spike = truth.Truth(Fault.spike, detector.code, None, T0, T0 + dt.timedelta(hours=2))
    at = T0 + dt.timedelta(minutes=30)
    after = at + dt.timedelta(minutes=1)
    alerts_raised = [(detector, Raised(rule, Episode(at, at, after, "warning", "methane 30", 30, 30))),
                     (detector, Raised(jump, Episode(at, at, after, "warning", "spike", 30, 30)))]
    scores = _score([detector], [spike], {}, alerts_raised)
    assert (scores["gas"].alerts, scores["gas"].explained, scores["gas"].by_fault) == (1, 0, 1)
    assert scores["gas"].precision == 0.0 and scores["device"].precision == 1.0 and scores["device"].recall == 1.0


def _retained(rule, points: list[Point]) -> int:
    """Bytes a rule's judge and tracker still hold after judging ``points`` (made beforehand, so they are not
    counted: only what the judge keeps of them is)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        judge, tracker = rule.make_judge({}), rule.make_tracker()
        for point in points:
            tracker.feed(point, judge)
            if tracker.current is not None:  # what the stream keeps of a long episode is one Episode
                tracker.current.detail = ""
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_long_running_streams_memory_is_bounded_in_time_and_count():
    """What a judge remembers between batches (the spike test's neighbours, the flat line's start, the readings
    over a drop's span, the spike screen's) stays small however long the stream runs and however dense its
    readings (a device sending every 10 ms)."""
    terminals = (_terminal("methane_detector", ("methane_lel",), 60),
                 _terminal("gas_pressure_sensor", ("gas_pressure",), 60, {"set_point_kpa": 3.0}),
                 _terminal("indoor_temp_sensor", ("indoor_temp",), 900))
    rng = random.Random(7)
    dense = [Point(T0 + dt.timedelta(milliseconds=10 * i), round(rng.uniform(0, 3), 1) if i % 97 else 90.0)
             for i in range(30_000)]
    for t in terminals:
        for rule in (r for r in rules_for(t) if r.streamable):
            assert _retained(rule, dense[:12_000]) < 20_000, rule.key
            assert _retained(rule, dense) < 20_000, rule.key


def test_a_late_reading_re_reads_a_window_reaching_into_an_older_alert_without_doubling_it(conn, db_url):
    """A long episode (B, over 13 h) anchors the re-read window of a late reading in its tail: the window starts
    a lookback before B, inside the end of an older, short alert (A) that the alerts read for the terminal did not
    reach. The re-read finds A's last readings again; they are A, not a new resolved alert."""
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector"), Actor("t"))
    conn.commit()
    a = [(-803, 0.0, None), (-802, 0.0, None), (-801, 25.0, None), (-800, 25.0, None), (-799, 0.0, None),
         (-798, 0.0, None)]
    b = [(m, 25.0, None) for m in range(-797, -19)] + [(-19, 0.0, None), (-18, 0.0, None)]
    worker = Worker(db_url)
    try:
        _write(db_url, code, "methane_lel", a + b)
        worker.step()
        assert [(r, s) for r, s, *_ in _alerts(db_url) if r == "gas:methane"] == [("gas:methane", "resolved")] * 2
        _write(db_url, code, "methane_lel", [(-30, 25.0, None)])  # a repeated reading in B's tail, late
        worker.step()
    finally:
        worker.close()
    assert [(s, start, end) for r, s, _, start, end in _alerts(db_url) if r == "gas:methane"] == [
        ("resolved", NOW - dt.timedelta(minutes=801), NOW - dt.timedelta(minutes=799)),
        ("resolved", NOW - dt.timedelta(minutes=797), NOW - dt.timedelta(minutes=19))]


class _Sink:
    """Records where each reconcile's window starts."""

    def __init__(self) -> None:
        self.windows: list[tuple[str, dt.datetime]] = []

    def reconcile(self, conn, t, rule, window_start, found, stored=None) -> None:
        self.windows.append((rule.key, window_start))


def test_a_window_rule_whose_wait_runs_out_between_reading_and_judging_is_not_judged_on_a_short_read(monkeypatch):
    """The readings are read for what each rule does with the batch; a stuck-sensor rule that was still waiting
    then must not be evaluated a moment later over a window the read did not reach (it would find no flat line and
    retract the alert)."""
    station = _terminal("water_quality_station", ("w01009", "w01010"), 1800)
    streams = {rule.key: evaluate.RuleStream.fresh(rule, T0 + dt.timedelta(hours=20)) for rule in rules_for(station)}
    stream = evaluate.TerminalStream(station, streams, 1)
    clock = [1000.0]
    monkeypatch.setattr(evaluate.time, "monotonic", lambda: clock[0])
    for rs in streams.values():
        rs.evaluated_at = clock[0] - rs.rule.every.total_seconds() + 1  # the stuck rules wait one more second
    earliest = T0 + dt.timedelta(hours=20, minutes=5)  # within its 6 minutes of observation time too
    stored = {"device:stuck:w01009": [{"id": 1, "status": "open", "observed_start": T0 + dt.timedelta(hours=8),
                                       "observed_end": None}]}
    since = evaluate.read_since(stream, earliest, stored)
    clock[0] += 2
    data = {m: _points([7.4, 7.5], 1800, earliest) for m in station.metrics}
    sink = _Sink()
    evaluate.judge_terminal(None, sink, stream, earliest, data, stored)
    assert all(start >= since[streams[key].rule.metric] for key, start in sink.windows), (since, sink.windows)
    assert streams["device:stuck:w01009"].waiting == earliest


def test_an_alert_raised_and_later_retracted_is_scored_and_counted():
    """A flow meter frozen at its evening flow: the night's first readings make a night-leak alert that the worker
    retracts once the line has lasted the flat-line window. The operator saw it, so the bench scores it (false:
    no leak was injected) and counts the retraction."""
    meter = _terminal("district_flow_meter", ("water_flow",), 300, {"district": "DMA-02", "night_allowance_m3h": 12})
    evening = dt.datetime(2026, 11, 26, 22, 0, tzinfo=BEIJING)
    rng = random.Random(3)
    frozen = [round(40 + rng.gauss(0, 2), 2) for _ in range(6)] + [21.28] * (8 * 12)  # from 22:30 to 06:30
    series = {"water_flow": _points(frozen, 300, evening)}
    night = next(r for r in rules_for(meter) if r.key == "water:night_flow")
    assert night.evaluate(series) == []  # judged at the end, the frozen line makes no night
    end = series["water_flow"][-1].ts
    raised = replay(night, series, dt.timedelta(seconds=300), end)
    assert [(r.retracted, r.episode.start.astimezone(BEIJING).hour) for r in raised] == [(True, 2)]
    stuck = truth.Truth(Fault.stuck, meter.code, "water_flow", evening, end)
    scores = _score([meter], [stuck], {}, [(meter, r) for r in raised])
    assert (scores["water"].alerts, scores["water"].retracted, scores["water"].explained) == (1, 1, 0)


def test_a_drifting_sensor_is_stored_as_the_stewards_drift_alert(conn, db_url):
    code = service.create_terminal(conn, terminal_in("室温", "indoor_temp_sensor"), Actor("t"))
    conn.commit()
    worker = Worker(db_url)
    try:  # every 15 minutes: two hours steady, then three creeping 2 °C an hour
        steady = [(m, 20.5 + 0.1 * (m % 2), None) for m in range(-300, -180, 15)]
        creeping = [(m, round(20.5 + 2.0 * (m + 180) / 60, 1), None) for m in range(-180, 0, 15)]
        _write(db_url, code, "indoor_temp", steady + creeping)
        worker.step()
    finally:
        worker.close()
    with psycopg.connect(db_url) as c:
        rows = c.execute("select rule, bureau, metric, unit, direction from alert").fetchall()
    assert rows == [("device:drift:indoor_temp", "steward", "indoor_temp", "°C", "drift")]


def _river_station() -> TerminalInfo:
    return _terminal("water_quality_station", ("w21003",), 1800, {"target_class": "III", "water_body": "river"})


HEALTHY = [0.5, 0.51] * 4
"""Four hours of a class III river's ammonia, every 30 minutes."""


def test_a_drifting_ammonia_analyser_is_the_stewards_calibration_not_a_river_alert():
    """Creeping 0.25 mg/L an hour (a failing analyser: twelve times the norm's daily allowance on 0–10 mg/L), it
    passes class III's 1.0 mg/L after the drift test has called it: those readings are suspect, the bureau is not
    paged, the steward is."""
    creeping = [round(0.5 + 0.125 * i, 3) for i in range(1, 13)]
    assert list(_found(_river_station(), {"w21003": _points(HEALTHY + creeping, 1800)})) == ["device:drift:w21003"]


def test_one_lagging_reading_in_a_creep_does_not_page_the_bureau():
    """Noise on one reading makes a quarter lag and the drift test miss one call: the doubt has an off-delay of a
    drift window, so the reading between two calls opens no alarm."""
    creeping = [round(0.5 + 0.125 * i, 3) for i in range(1, 13)]
    creeping[7] = round(creeping[7] - 0.12, 3)
    assert list(_found(_river_station(), {"w21003": _points(HEALTHY + creeping, 1800)})) == ["device:drift:w21003"]


class _River:
    """A station's neighbours on its river (``rules.NeighbourLookup``), with their series of the metric asked;
    ``on_pole``: they stand on the station's own pole."""

    def __init__(self, *series: list[Point], on_pole: bool = False) -> None:
        self.series = series
        self.on_pole = on_pole
        self.asked: list[dt.datetime] = []

    def of(self, t: TerminalInfo, metric: str, since: dt.datetime) -> rules.Nearby:
        self.asked.append(since)
        return rules.Nearby("呼兰河", tuple(rules.Peer([p for p in points if p.ts >= since], dt.timedelta(minutes=30),
                                                     self.on_pole) for points in self.series))


RAMP = [round(0.5 + 0.125 * i, 3) for i in range(1, 13)]
"""Six hours of ammonia rising 0.25 mg/L an hour from a class III river's 0.5: a failing analyser's creep, or a spill
ramping up."""


def _judged_beside(neighbours: _River) -> dict[str, list[Episode]]:
    station = _river_station()
    series = {"w21003": _points(HEALTHY + RAMP, 1800)}
    return {r.key: found for r in rules_for(station, neighbours) if (found := r.evaluate(series))}


def test_a_ramp_the_stations_up_and_down_the_river_see_too_is_a_spill_and_pages_the_bureau():
    """The ramp a drifting analyser would make, seen by the next station downstream an hour later and by the one
    upstream (a spill above both): no analyser drifts in step with its neighbours, the river rose. The bureau is
    paged when the station's own crossing is judged, not ``drift_escalation_h`` (12 h) later."""
    downstream = _points([*HEALTHY, 0.5, 0.5, *RAMP], 1800)
    upstream = _points([0.4] * 6 + [round(0.4 + 0.1 * i, 3) for i in range(1, 15)], 1800)
    found = _judged_beside(_River(downstream, upstream))
    assert set(found) == {"gb3838:w21003", "device:drift:w21003"}
    alarm = found["gb3838:w21003"][0]
    assert alarm.start - T0 <= dt.timedelta(hours=7) and "2 of its neighbours on 呼兰河 rose alike" in alarm.detail


def test_a_ramp_alone_on_its_river_stays_the_steward_s_calibration():
    """The neighbours are flat, or move with the river's own daily cycle, or one had a step (a spill's front, not a
    ramp): the ramp is the analyser's, the bureau is not paged."""
    flat = _points([0.5, 0.51] * 10, 1800)
    step = _points([0.5] * 10 + [1.6] * 10, 1800)
    assert list(_judged_beside(_River(flat, step))) == ["device:drift:w21003"]


def test_a_ramp_a_neighbour_shows_only_later_does_not_corroborate_a_reading_judged_late():
    """The station downstream ramps alike, but only from hours after this station's crossing. Judged late, with the
    neighbour's ramp already stored, the crossing is judged as it was live: the neighbour had not risen yet, and it
    does not show a whole drift window of its ramp before this station's series ends. Held: no page."""
    later = _points([0.5] * 17 + RAMP, 1800)
    assert list(_judged_beside(_River(later))) == ["device:drift:w21003"]


def test_analysers_ramping_alike_on_the_station_s_own_pole_are_no_corroboration():
    """The same ramp seen by analysers on the station's own pole (one housing, one sampling line): they foul and
    drift together, so it is the analysers', not the river's. Held."""
    downstream = _points([*HEALTHY, 0.5, 0.5, *RAMP], 1800)
    upstream = _points([0.4] * 6 + [round(0.4 + 0.1 * i, 3) for i in range(1, 15)], 1800)
    assert list(_judged_beside(_River(downstream, upstream, on_pole=True))) == ["device:drift:w21003"]


def test_a_steward_fixing_the_analyser_is_not_overruled_by_neighbours_rising_alike():
    """The ramp the neighbours see too, but the steward acknowledged the drift alert as being fixed when the readings
    crossed the limit: the shelf holds (ISA-18.2 shelving is the operator's; no other path pages around it). The
    neighbours that rose alike page on their own rules."""
    downstream = _points([*HEALTHY, 0.5, 0.5, *RAMP], 1800)
    upstream = _points([0.4] * 6 + [round(0.4 + 0.1 * i, 3) for i in range(1, 15)], 1800)
    rule = next(r for r in rules_for(_river_station(), _River(downstream, upstream)) if r.key == "gb3838:w21003")
    series = {"w21003": _points(HEALTHY + RAMP, 1800)}
    over = next(p.ts for p in series["w21003"] if p.value > 1.0)
    judge = rule.make_judge(series)
    rules.heed(judge, [{"status": "acknowledged", "acknowledged_at": over, "verdict": FIXING, "observed_end": None}])
    assert rule.evaluate_with(series, judge, rule.make_tracker()) == []


def test_a_real_pollution_step_is_still_heard_from_its_first_reading():
    event = [1.6, 1.62, 1.58, 1.61, 1.6, 1.59]
    found = _found(_river_station(), {"w21003": _points(HEALTHY + event + HEALTHY, 1800)})
    assert list(found) == ["gb3838:w21003"]
    assert found["gb3838:w21003"][0].start == T0 + dt.timedelta(hours=4)


def test_a_window_re_read_from_inside_a_creep_judges_nothing_until_the_drift_test_has_seen_its_window():
    """A sewage outlet's rule re-read over a window cut at its lookback (a reading later than its marks; before
    session 16, every batch): the judge starts afresh, mid-creep. The window's first readings are over the limit
    but their quality is not evaluated yet (the drift test has no window): held, not alerted. A fresh outlet's
    first readings are judged at once."""
    outlet = _terminal("sewage_outlet_analyser", ("w21003", "w01010"), 600, {"grade": "1B", "build_year": 2005})
    rule = next(r for r in rules_for(outlet) if r.key == "gb18918:w21003")
    assert rule.lookback >= dt.timedelta(hours=2)
    creeping = [round(9.0 + 1.25 * i / 6, 3) for i in range(int(rule.lookback / dt.timedelta(minutes=10)) + 2)]
    assert _escalated_only(rule.evaluate({"w21003": _points(creeping, 600)}, latch=RE_READ))
    assert len(rule.evaluate({"w21003": _points(creeping[:3], 600)})) == 1


def test_a_window_cut_at_its_lookback_as_the_worker_cuts_it_holds_what_the_drift_test_has_not_seen():
    """The worker (and the bench) re-read a sewage rule's window from its lookback before the newest reading, so the
    window's first reading lies a little after that cut and the series spans a little less than the lookback.
    Mid-creep, the readings of its first drift window are still not evaluated (seed 801: a 1B outlet's ammonia
    analyser creeping 1.25 mg/L/h for four hours paged the bureau at 8.09 mg/L, retracted a minute later)."""
    outlet = _terminal("sewage_outlet_analyser", ("w21003", "w01010"), 600, {"grade": "1B", "build_year": 2005})
    rule = next(r for r in rules_for(outlet) if r.key == "gb18918:w21003")
    creeping = _points([round(3.0 + 1.25 * i / 6, 3) for i in range(40)], 600)
    creeping = [Point(p.ts + dt.timedelta(seconds=(-1) ** i * 2), p.value) for i, p in enumerate(creeping)]
    window = [p for p in creeping if p.ts >= creeping[-1].ts - rule.lookback]
    assert window[-1].ts - window[0].ts < rule.lookback and window[-1].value > 8
    assert rule.evaluate({"w21003": window}, latch=RE_READ) == []


def test_a_doubt_arising_during_an_alarm_does_not_silence_it():
    """A real event's step opens the river alert; if the values then creep steadily (the event growing, or the
    analyser drifting as well), the steward hears of the drift and the bureau's alert stays open."""
    growing = [1.6, 1.62] + [round(1.62 + 0.125 * i, 3) for i in range(1, 9)]
    found = _found(_river_station(), {"w21003": _points(HEALTHY + growing, 1800)})
    assert set(found) == {"gb3838:w21003", "device:drift:w21003"}
    [alarm] = found["gb3838:w21003"]
    assert alarm.start == T0 + dt.timedelta(hours=4) and alarm.end is None


def test_an_alarm_open_when_the_doubt_arises_goes_on_being_judged_and_turns_critical():
    """Suspect readings inside an open alarm are judged like any other: its worst value and severity follow the
    river (class IV → worse than class V is critical), not frozen at the reading before the doubt."""
    growing = [1.6, 1.62] + [round(1.62 + 0.125 * i, 3) for i in range(1, 9)]
    [alarm] = _found(_river_station(), {"w21003": _points(HEALTHY + growing, 1800)})["gb3838:w21003"]
    assert alarm.severity == "critical" and alarm.worst_value == growing[-1]


def test_a_supply_temperature_creeping_over_its_limit_pages_the_housing_bureau():
    """The quality flag stands only in front of water-quality analysers: a substation's supply temperature rising
    steadily past 95 °C is as likely a failing mixing valve as a drifting sensor, and pages at once."""
    substation = _terminal("heating_substation_sensor", ("supply_temp",), 300)
    values = [85.0, 85.1] * 12 + [round(85.0 + 0.5 * i, 1) for i in range(1, 31)]  # 6 °C an hour from 85 °C
    found = _found(substation, {"supply_temp": _points(values, 300)})
    [alarm] = found["heating:supply_temp"]
    assert alarm.start == T0 + dt.timedelta(minutes=5 * (24 + 20)) and alarm.severity == "critical"


def test_a_window_re_read_of_a_streamed_rule_judges_nothing_until_the_drift_test_has_seen_its_window():
    """A reading later than every mark makes the worker re-read a streamed rule's window: the judge is built over
    a series spanning the lookback, mid-creep, as a window rule's is, and holds what the drift test has not seen."""
    rule = next(r for r in rules_for(_river_station()) if r.key == "gb3838:w21003")
    assert rule.streamable
    creeping = [round(0.9 + 0.125 * i, 3) for i in range(int(rule.lookback / dt.timedelta(minutes=30)) + 2)]
    assert _escalated_only(rule.evaluate({"w21003": _points(creeping, 1800)}, latch=RE_READ))


def _escalated_only(found: list[Episode]) -> bool:
    """A window spanning the lookback (longer than ``drift_escalation_h``) of a doubted creep: nothing is paged but
    the escalation, unconfirmed, once the doubt has stood that long from the window's start."""
    escalate = dt.timedelta(hours=get_settings().drift_escalation_h)
    return all("unconfirmed" in e.detail and e.start >= T0 + escalate for e in found)


def test_drift_limits_follow_the_kinds_instruments():
    """A sewage outlet's ammonia analyser works on 0–50 mg/L and the plant's load swings fast (an event triples the
    daily swing: 0.3 mg/L an hour): no drift alert there, while a river station's 0.25 mg/L an hour is one."""
    outlet = _terminal("sewage_outlet_analyser", ("w21003",), 600, {"grade": "1B", "build_year": 2005})
    swing = [round(4.0 + 0.31 * i / 6, 3) for i in range(24)]
    assert "device:drift:w21003" not in _found(outlet, {"w21003": _points(swing, 600)})
    creep = [round(0.5 + 0.25 * i / 6, 3) for i in range(24)]
    station = _terminal("water_quality_station", ("w21003",), 600, {"target_class": "III", "water_body": "river"})
    assert "device:drift:w21003" in _found(station, {"w21003": _points(creep, 600)})



def test_a_meter_frozen_an_hour_before_the_night_while_its_pressure_moves_makes_no_leak():
    """Frozen at its evening flow at 01:00 (the stuck alert waits six hours) while the meter's pressure moves: by
    02:00 the line is a QARTOD flat-line suspect and makes no night minimum. A flow that moves still does."""
    meter = _terminal("district_flow_meter", ("water_flow", "water_pressure"), 300,
                      {"district": "DMA-02", "night_allowance_m3h": 12})
    evening = dt.datetime(2026, 11, 26, 22, 0, tzinfo=BEIJING)
    rng = random.Random(4)
    pressure = _points([round(0.32 + rng.gauss(0, 0.003), 3) for _ in range(9 * 12)], 300, evening)
    moving = [round(30 - 2 * i / 12 + rng.gauss(0, 0.5), 2) for i in range(9 * 12)]
    frozen = moving[:3 * 12] + [24.37] * (6 * 12)
    night = next(r for r in rules_for(meter) if r.key == "water:night_flow")
    assert night.evaluate({"water_flow": _points(frozen, 300, evening), "water_pressure": pressure}) == []
    assert len(night.evaluate({"water_flow": _points(moving, 300, evening), "water_pressure": pressure})) == 1


def _outlet(grade: str = "1A") -> TerminalInfo:
    return _terminal("sewage_outlet_analyser", ("w01010", "w01018", "w21003", "w21011"), 600,
                     {"grade": grade, "build_year": 2012})


def _outlet_series(**values: list[float]) -> dict[str, list[Point]]:
    """Three healthy hours of a 1A outlet every 10 minutes (water at 14 °C: the warm ammonia limit), then
    ``values`` per metric; the others stay healthy."""
    healthy = {"w01010": 14.0, "w01018": 28.0, "w21003": 1.4, "w21011": 0.3}
    length = 18 + max(len(v) for v in values.values())
    return {key: _points([base + 0.01 * (i % 2) for i in range(18)]
                         + values.get(key, [base + 0.01 * (i % 2) for i in range(length - 18)]), 600)
            for key, base in healthy.items()}


def _sewage_found(series: dict[str, list[Point]]) -> dict[str, list[Episode]]:
    """As the workers judge a sewage outlet: its window rules re-evaluated as each reading arrives (``replay``)."""
    outlet, end = _outlet(), max(p.ts for points in series.values() for p in points) + dt.timedelta(minutes=10)
    found = {}
    for rule in rules_for(outlet):
        raised = replay(rule, series, dt.timedelta(minutes=10), end) if not rule.streamable \
            else [Raised(rule, e) for e in rule.evaluate(series, now=end)]
        if raised:
            found[rule.key] = [r.episode for r in raised]
    return found


def test_a_phosphorus_analyser_creeping_over_a_1a_limit_before_the_drift_test_can_call_it_pages_no_one():
    """GB 18918 grade 1A, plant built after 2006: total phosphorus 0.5 mg/L. A failing 0–10 mg/L analyser creeping
    0.25 mg/L an hour from 0.3 crosses it in 50 minutes, before two hours of creep show: the crossing is pending
    (no step brought it there), the drift test calls the creep within the drift window, and only the steward
    hears of it."""
    creep = [round(0.3 + 0.25 * i / 6, 3) for i in range(1, 25)]
    found = _sewage_found(_outlet_series(w21011=creep))
    assert "gb18918:w21011" not in found
    assert "device:drift:w21011" in found


def test_a_genuine_1a_discharge_breach_pages_the_environment_bureau_from_its_first_reading():
    """A treatment upset: COD 28 → 84 mg/L, ammonia 1.4 → 4.2, phosphorus 0.3 → 0.9 in one reading (GB 18918 1A:
    50, 5 above 12 °C, 0.5): COD and phosphorus are over their limits from the first reading of the step."""
    found = _sewage_found(_outlet_series(w01018=[84.0, 84.6] * 6, w21003=[4.2, 4.25] * 6, w21011=[0.9, 0.91] * 6))
    step = T0 + dt.timedelta(hours=3)
    assert found["gb18918:w01018"][0].start == step and found["gb18918:w21011"][0].start == step
    assert "gb18918:w21003" not in found  # 4.2 mg/L is within the warm 1A limit of 5
    assert not any(key.startswith("device:drift") for key in found)


def test_a_daily_swing_on_top_of_an_upset_crossing_the_limit_hours_later_pages_at_once():
    """Ammonia tripled to 4.2 mg/L (under 5) and then rising slowly with the morning load, 0.2 mg/L an hour, over
    5 mg/L three hours after the step: it stands a step above its level before the upset, so it is judged at once,
    not held as a possible creep."""
    rising = [round(4.2 + 0.2 * i / 6, 3) for i in range(36)]
    found = _sewage_found(_outlet_series(w21003=rising))
    [alarm] = found["gb18918:w21003"]
    first_over = next(i for i, v in enumerate(rising) if v > 5)
    assert alarm.start == T0 + dt.timedelta(minutes=10 * (18 + first_over))


def test_a_slow_lone_rise_from_close_under_the_limit_pages_a_drift_window_late():
    """Ammonia rising 0.3 mg/L an hour from 4 mg/L (slower than the drift test's 0.5 mg/L/h: the quantity's own
    change) with no step: pending, held for the drift window (two hours) while the drift test watches it, then
    paged; the price of telling a creep from a rise on one analyser."""
    rising = [round(4.0 + 0.3 * i / 6, 3) for i in range(1, 49)]
    series = _outlet_series(w21003=rising)
    series["w21003"] = _points([4.0 + 0.01 * (i % 2) for i in range(18)] + rising, 600)
    found = _sewage_found(series)
    [alarm] = found["gb18918:w21003"]
    first_over = next(i for i, v in enumerate(rising) if v > 5)
    assert alarm.start - (T0 + dt.timedelta(minutes=10 * (18 + first_over))) >= dt.timedelta(hours=2)
    assert "device:drift:w21003" not in found


def _permanganate_offset(flat_h: int) -> tuple[list[Point], dt.datetime]:
    """A class III station's permanganate analyser (limit 6 mg/L) creeping 0.5 mg/L an hour from 4.4 for five hours,
    then stuck at that offset (the creep stopped, the error stayed) for ``flat_h`` hours; and its first reading
    over the limit."""
    values = [4.4, 4.42] * 4 + [round(4.4 + 0.25 * i, 2) for i in range(1, 11)] + [6.9, 6.92] * flat_h
    points = _points(values, 1800)
    return points, next(p.ts for p in points if p.value > 6)


def test_an_analyser_left_at_its_drifted_offset_stays_the_stewards_once_the_creep_stops():
    """Once the creep stops, the drift test stops calling it, but the readings stay where the drift took them: they
    are still suspect (latched until they come back under the limit), so the bureau is not paged two hours later."""
    station = _terminal("water_quality_station", ("w01019",), 1800, {"target_class": "III", "water_body": "river"})
    points, _ = _permanganate_offset(8)
    assert list(_found(station, {"w01019": points})) == ["device:drift:w01019"]


def test_a_doubted_reading_over_the_limit_pages_the_bureau_unconfirmed_after_the_escalation_hours():
    """Nobody recalibrated the analyser for 12 hours (``drift_escalation_h``) while it read over the limit: a breach
    may hide behind the drift, so the bureau is paged, marked unconfirmed."""
    station = _terminal("water_quality_station", ("w01019",), 1800, {"target_class": "III", "water_body": "river"})
    points, over = _permanganate_offset(16)
    found = _found(station, {"w01019": points})
    [alarm] = found["gb3838:w01019"]
    assert over + dt.timedelta(hours=12) <= alarm.start <= over + dt.timedelta(hours=13)
    assert "unconfirmed" in alarm.detail and "device:drift:w01019" in found


def _permanganate_station() -> TerminalInfo:
    return _terminal("water_quality_station", ("w01019",), 1800, {"target_class": "III", "water_body": "river"})


def test_a_restarted_worker_does_not_page_a_doubted_analyser_as_confirmed():
    """A restarted worker rebuilds the judge by replaying its lookback with the latch persisted beside the episode:
    the replay is a re-read, not the terminal's first readings, and the doubt goes on from when it latched, so the
    readings after it are judged as an uninterrupted worker judges them."""
    rule = next(r for r in rules_for(_permanganate_station()) if r.key == "gb3838:w01019")
    points, over = _permanganate_offset(24)
    for after in (8, 11.5, 14):
        k = next(i for i, p in enumerate(points) if p.ts == over + dt.timedelta(hours=after))
        rs = evaluate.RuleStream.fresh(rule, points[k].ts)
        seen = points[:k + 1]
        rs.replay({rule.metric: [p for p in seen if p.ts >= points[k].ts - rule.lookback]}, _latch_after(rule, seen))
        rs.tracker.feed_all(points[k + 1:k + 3], rs.judge)
        opened = [rs.tracker.current] if rs.tracker.current else []
        assert [e for e in opened if "unconfirmed" not in e.detail] == []
        assert opened == [] if after < 11 else len(opened) == 1  # escalated 12 h after the doubt latched


def _latch_after(rule, points: list[Point]) -> dict:
    """The latch a worker that judged ``points`` in order persists (``rule_state.latch``)."""
    judge = rule.make_judge({rule.metric: points})
    rule.make_tracker().feed_all(points, judge)
    return latch_of(judge)


def test_an_escalated_river_alert_survives_a_window_re_read():
    """A late reading makes the worker re-read the window from the lookback before the stored alert: the re-read
    takes up the latch (the doubt since hours before) and finds the same unconfirmed escalation, not a confirmed
    breach."""
    rule = next(r for r in rules_for(_permanganate_station()) if r.key == "gb3838:w01019")
    points, _ = _permanganate_offset(16)
    [alarm] = rule.evaluate({"w01019": points})
    start = alarm.start - rule.lookback
    [again] = rule.evaluate({"w01019": [p for p in points if p.ts >= start]}, latch=_latch_after(rule, points))
    assert (again.start, again.detail) == (alarm.start, alarm.detail) and "unconfirmed" in again.detail


def test_a_sewage_analyser_left_at_its_drifted_offset_never_pages_as_confirmed():
    """A 1A outlet's phosphorus analyser creeps over 0.5 mg/L and stops at that offset: re-evaluated over its window
    as readings arrive, it stays the steward's until the escalation pages the bureau, marked unconfirmed."""
    creep = [round(0.3 + 0.25 * i / 6, 3) for i in range(1, 19)]
    flat = [creep[-1] + 0.01 * (i % 2) for i in range(6 * 16)]
    found = _sewage_found(_outlet_series(w21011=creep + flat))
    first_over = T0 + dt.timedelta(minutes=10 * (18 + next(i for i, v in enumerate(creep) if v > 0.5)))
    alarms = found.get("gb18918:w21011", [])
    assert alarms and all("unconfirmed" in a.detail for a in alarms)
    assert min(a.start for a in alarms) >= first_over + dt.timedelta(hours=12)
    assert "device:drift:w21011" in found


def test_one_low_reading_before_a_creep_crosses_the_limit_is_no_step():
    """One reading 0.6 mg/L low just before the creep crosses the limit makes the next reading stand more than a
    step above it: still a creep (the trend of the readings before it runs up to it), the steward's only."""
    points, over = _permanganate_offset(8)
    i = next(i for i, p in enumerate(points) if p.ts == over) - 1
    points[i] = Point(points[i].ts, round(points[i].value - 0.6, 2))
    assert list(_found(_permanganate_station(), {"w01019": points})) == ["device:drift:w01019"]


def test_a_creep_resuming_after_an_outage_is_no_step():
    """Six hours without readings in the middle of a creep: the readings after the outage stand far above those
    before it, as the creep took them, not as a step."""
    values = [4.4, 4.42] * 4 + [round(4.4 + 0.25 * i, 2) for i in range(1, 21)]
    points = [p for i, p in enumerate(_points(values, 1800)) if not 13 <= i < 25]
    assert list(_found(_permanganate_station(), {"w01019": points})) == ["device:drift:w01019"]


def test_a_worker_restarted_while_an_analyser_stands_at_its_drifted_offset_does_not_page(conn, db_url, monkeypatch):
    """The restart path itself (``evaluate.load``): the worker that saw the creep wrote its rules' state; the one
    that takes over replays the lookback and judges the next readings over the limit as the steward's still."""
    monkeypatch.setattr(evaluate, "CHECKPOINT_S", 0.0)  # every judged rule's state is written
    code = service.create_terminal(conn, river_station(), Actor("t"))
    conn.commit()
    points, _ = _permanganate_offset(10)
    readings = [(-30 * (len(points) - i), p.value, None) for i, p in enumerate(points)]  # minutes before now
    seen, after = readings[:-2], readings[-2:]
    first = Worker(db_url)
    try:
        for at in range(0, len(seen), 6):
            _write(db_url, code, "w01019", seen[at:at + 6])
            first.step()
    finally:
        first.close()
    restarted = Worker(db_url)
    try:
        _write(db_url, code, "w01019", after)
        restarted.step()
    finally:
        restarted.close()
    assert [rule for rule, *_ in _alerts(db_url)] == ["device:drift:w01019"]


def _judged_by_two_workers(db_url: str, code: str, values: list[float], restart_at: int) -> None:
    """30-minute readings ending now, judged six at a time by a worker up to ``restart_at`` and by a restarted one
    (``evaluate.load``) after it."""
    readings = [(-30 * (len(values) - i), v, None) for i, v in enumerate(values)]
    for part in (readings[:restart_at], readings[restart_at:]):
        worker = Worker(db_url)
        try:
            for at in range(0, len(part), 6):
                _write(db_url, code, "w01019", part[at:at + 6])
                worker.step()
        finally:
            worker.close()


def test_a_restarted_worker_takes_up_the_persisted_latch_and_replays_only_the_drift_tests_lookback(
        conn, db_url, monkeypatch):
    """The latched doubt is persisted with the rule's state (``rule_state.latch``): the worker taking over 8 hours
    into it replays only what the drift test needs (5.5 h of a 30-minute station, not the 17.5 h that rebuilt the
    latch from the readings), and escalates when an uninterrupted judge does, 12 h after the doubt latched."""
    monkeypatch.setattr(evaluate, "CHECKPOINT_S", 0.0)
    monkeypatch.setattr(alerts_service, "REFRESH", dt.timedelta(0))
    code = service.create_terminal(conn, river_station(), Actor("t"))
    conn.commit()
    rule = next(r for r in rules_for(_permanganate_station()) if r.key == "gb3838:w01019")
    points, over = _permanganate_offset(16)
    [uninterrupted] = rule.evaluate({"w01019": points})
    replayed: dict[str, int] = {}
    replay = evaluate.RuleStream.replay
    monkeypatch.setattr(evaluate.RuleStream, "replay", lambda rs, pts, latch=None: (
        replayed.__setitem__(rs.rule.key, len(pts)), replay(rs, pts, latch))[1])
    restart_at = next(i for i, p in enumerate(points) if p.ts == over + dt.timedelta(hours=8))
    _judged_by_two_workers(db_url, code, [p.value for p in points], restart_at)
    assert replayed["gb3838:w01019"] <= rule.lookback / dt.timedelta(minutes=30) + 1 <= 12
    [(start, detail)] = conn.execute("select observed_start, detail from alert where rule = 'gb3838:w01019'"
                                     ).fetchall()
    first = NOW - dt.timedelta(minutes=30 * len(points))
    assert start - first == uninterrupted.start - T0 and detail == uninterrupted.detail
    assert "unconfirmed" in detail


def test_an_alarm_from_a_terminals_first_reading_stays_confirmed_when_a_restart_re_reads_it(conn, db_url,
                                                                                           monkeypatch):
    """A station over its limit from its very first reading (nothing crept) pages at once, confirmed. The worker
    taking over 19 hours later replays from the alarm's start, the terminal's first reading: that is not a re-read
    of history from inside a doubt (which the series' length made it), and the alarm is not rewritten unconfirmed."""
    monkeypatch.setattr(evaluate, "CHECKPOINT_S", 0.0)
    monkeypatch.setattr(alerts_service, "REFRESH", dt.timedelta(0))
    code = service.create_terminal(conn, river_station(), Actor("t"))
    conn.commit()
    _judged_by_two_workers(db_url, code, [6.9, 6.92] * 19 + [7.3, 7.35], 38)  # worse after it: its detail
    [(start, detail, status)] = conn.execute(
        "select observed_start, detail, status from alert where rule = 'gb3838:w01019'").fetchall()
    assert start == NOW - dt.timedelta(minutes=30 * 40) and status == "open"
    assert "7.35" in detail and "unconfirmed" not in detail


def _drift_station(conn, db_url: str, hours_over: float) -> tuple[str, list[tuple], Worker]:
    """A river station whose permanganate analyser crept over the limit and stays at its offset; a worker has
    judged it until ``hours_over`` after its first reading over the limit (the steward's drift alert is open, the
    bureau's held). Returns the code, the readings still to come and the worker."""
    code = service.create_terminal(conn, river_station(), Actor("t"))
    conn.commit()
    points, over = _permanganate_offset(16)
    readings = [(-30 * (len(points) - i), p.value, None) for i, p in enumerate(points)]
    cut = next(i for i, p in enumerate(points) if p.ts == over + dt.timedelta(hours=hours_over))
    worker = Worker(db_url)
    for at in range(0, cut, 6):
        _write(db_url, code, "w01019", readings[at:min(at + 6, cut)])
        worker.step()
    assert [rule for rule, *_ in _alerts(db_url)] == ["device:drift:w01019"]
    return code, readings[cut:], worker


def _acknowledge_drift(conn, action: str, verdict: str | None = None, at: int | None = None) -> None:
    """The steward acts on the drift alert; ``at``: when (minutes from NOW, the readings' clock: they are written in
    the past, the acknowledgement would otherwise come after all of them)."""
    alert_id = conn.execute("select id from alert where rule = 'device:drift:w01019'").fetchone()[0]
    alerts_service.act(conn, alert_id, action, "steward", "zero/span check", verdict)
    if at is not None:
        conn.execute("update alert set acknowledged_at = %s where id = %s", (NOW + dt.timedelta(minutes=at), alert_id))
    conn.commit()


def test_a_steward_vouching_for_the_analyser_pages_the_bureau_confirmed_at_once(conn, db_url, monkeypatch):
    """The steward acknowledges the drift alert with the verdict "sensor OK" (a zero/span check found the analyser
    reading true): the readings over the limit are a real breach, and the bureau is paged with the next reading,
    confirmed, not 12 h after the doubt latched."""
    code, rest, worker = _drift_station(conn, db_url, 1)
    try:
        _acknowledge_drift(conn, "acknowledge", SENSOR_OK)
        _write(db_url, code, "w01019", rest[:2])
        worker.step()
    finally:
        worker.close()
    [(status, detail)] = conn.execute("select status, detail from alert where rule = 'gb3838:w01019'").fetchall()
    assert status == "open" and "unconfirmed" not in detail


def test_a_steward_fixing_the_analyser_shelves_the_escalation_for_at_most_a_day(conn, db_url, monkeypatch):
    """Acknowledged as being fixed: the doubted readings do not escalate to the bureau when 12 h are up (shelved,
    ISA-18.2), though the drift alert resolved itself when the creep stopped; once the shelving expires
    (``SHELVE_MAX``) with the readings still over the limit, the escalation pages the bureau, unconfirmed."""
    code, rest, worker = _drift_station(conn, db_url, 1)
    try:
        _acknowledge_drift(conn, "acknowledge", FIXING, rest[0][0])
        for at in range(0, 28, 6):  # to 15 h after the first reading over the limit
            _write(db_url, code, "w01019", rest[at:at + 6])
            worker.step()
        assert [rule for rule, *_ in _alerts(db_url)] == ["device:drift:w01019"]
        monkeypatch.setattr(rules, "SHELVE_MAX", -dt.timedelta(days=2))  # the readings now come after it expired
        _write(db_url, code, "w01019", rest[28:30])
        worker.step()
    finally:
        worker.close()
    [detail] = conn.execute("select detail from alert where rule = 'gb3838:w01019'").fetchone()
    assert "unconfirmed" in detail


def _permanganate_rule():
    return next(r for r in rules_for(_permanganate_station()) if r.key == "gb3838:w01019")


def test_fixing_acknowledged_after_the_escalation_paged_does_not_take_it_back():
    """The bureau was paged 12 h after the doubt latched; an hour later the steward acknowledges the drift alert as
    being fixed. A re-read anchored on the open escalation (a late reading) still finds it: the shelving covers
    readings observed from the acknowledgement on, never an escalation that already paged."""
    rule = _permanganate_rule()
    points, over = _permanganate_offset(24)
    seen = points[:next(i for i, p in enumerate(points) if p.ts == over + dt.timedelta(hours=14)) + 1]
    ack = [{"status": "acknowledged", "acknowledged_at": over + dt.timedelta(hours=13), "verdict": FIXING}]
    judge, tracker = rule.make_judge({"w01019": seen}), rule.make_tracker()
    for point in seen:
        if point.ts == ack[0]["acknowledged_at"]:
            rules.heed(judge, ack)
        tracker.feed_all([point], judge)
    paged = tracker.current
    assert paged is not None and "unconfirmed" in paged.detail
    window = {"w01019": [p for p in seen if p.ts >= paged.start - rule.lookback]}
    reread = rules.resumed(rule.make_judge(window), latch_of(judge))
    rules.heed(reread, ack)
    again = rule.evaluate_with(window, reread, rule.make_tracker())
    assert [(e.start, e.detail) for e in again] == [(paged.start, paged.detail)]


def _sewage_alert_history(series: dict[str, list[Point]], ack_after: dt.timedelta | None) -> list[str]:
    """A 1A outlet's phosphorus rule re-evaluated over its window as each reading arrives, anchored on the alert it
    raised (as the worker anchors it), its latch carried from one evaluation to the next; the steward acknowledges
    the drift alert (no verdict: fixing) ``ack_after`` the first reading over the limit. What happens to the
    bureau's alert: "paged" and "retracted", in order."""
    rule = next(r for r in rules_for(_outlet()) if r.key == "gb18918:w21011")
    points = series["w21011"]
    first_over = next(p.ts for p in points if p.value > 0.5)
    latch, alert, history = {"origin": points[0].ts.isoformat()}, None, []
    for point in points:
        start = min([point.ts] + ([alert] if alert else [])) - rule.lookback
        window = {m: [p for p in s if start <= p.ts <= point.ts] for m, s in series.items()}
        judge = rules.resumed(rule.make_judge(window), latch)
        if ack_after is not None and point.ts >= first_over + ack_after:
            rules.heed(judge, [{"status": "acknowledged", "acknowledged_at": first_over + ack_after, "verdict": None}])
        found = rule.evaluate_with(window, judge, rule.make_tracker())
        latch = latch_of(judge)
        if found and alert is None:
            alert = found[0].start
            history.append("paged")
        elif alert and not found:
            alert = None
            history.append("retracted")
    return history


def test_a_sewage_escalation_acknowledged_after_it_paged_stays_paged():
    """Paged 12 h after the doubt latched, acknowledged (fixing) at 13 h: the next evaluation does not retract it."""
    creep = [round(0.3 + 0.25 * i / 6, 3) for i in range(1, 19)]
    flat = [creep[-1] + 0.01 * (i % 2) for i in range(6 * 20)]
    assert _sewage_alert_history(_outlet_series(w21011=creep + flat), dt.timedelta(hours=13)) == ["paged"]


def test_an_escalation_resolved_by_a_recalibration_survives_a_later_re_read():
    """The escalation paged 12 h after the doubt latched and resolved when the analyser was recalibrated; a late
    reading then re-reads the window anchored on the resolved alert (the lookback before it, well inside the doubt):
    the latch, kept with when it ended, still says suspect since hours before, so the same escalation is found."""
    rule = _permanganate_rule()
    points, _ = _permanganate_offset(16)
    points += [Point(points[-1].ts + dt.timedelta(minutes=30 * (i + 1)), 4.4 + 0.02 * (i % 2)) for i in range(6)]
    judge = rule.make_judge({"w01019": points})
    [alarm] = rule.make_tracker().feed_all(points, judge)
    assert alarm.end is not None and "unconfirmed" in alarm.detail
    window = {"w01019": [p for p in points if p.ts >= alarm.start - rule.lookback]}
    again = rule.evaluate_with(window, rules.resumed(rule.make_judge(window), latch_of(judge)), rule.make_tracker())
    assert [(e.start, e.end, e.detail) for e in again] == [(alarm.start, alarm.end, alarm.detail)]


def test_a_sewage_escalation_stays_paged_once_the_readings_come_back():
    """Back under the limit after 15 h: the window re-read as readings arrive, anchored on the escalated alert,
    takes up the ended latch and finds the escalation again instead of rebuilding the doubt from its start."""
    creep = [round(0.3 + 0.25 * i / 6, 3) for i in range(1, 19)]
    flat = [creep[-1] + 0.01 * (i % 2) for i in range(6 * 15)] + [0.3 + 0.01 * (i % 2) for i in range(36)]
    assert _sewage_alert_history(_outlet_series(w21011=creep + flat), None) == ["paged"]


def test_a_real_discharge_after_an_outage_longer_than_the_lookback_pages_from_its_first_reading():
    """Eight hours without readings (longer than the lookback), then the outlet's ammonia nitrogen reads 12 mg/L
    (1A limit 5 mg/L in warm water): the first window after the outage is the first readings after a gap, not a
    re-read of history from inside a doubt, so the discharge is judged at once, not held as suspect 12 h."""
    series = _outlet_series(w21003=[1.4 + 0.01 * (i % 2) for i in range(6)])
    for key, points in series.items():
        level = 12.0 if key == "w21003" else points[-1].value
        series[key] = points + [Point(points[-1].ts + dt.timedelta(hours=8, minutes=10 * i), level + 0.01 * (i % 2))
                                for i in range(30)]
    back = series["w21003"][24].ts
    assert [e.start for e in _sewage_found(series)["gb18918:w21003"]] == [back]


def test_the_steward_gives_the_verdict_on_a_drift_alert_resolved_while_the_analyser_stays_off(
        conn, db_url, monkeypatch):
    """The drift alert resolves when the creep stops, the analyser still at its offset (the latch's main case): the
    steward's "fixing" on it is taken all the same (the alert stays resolved), and shelves the escalation."""
    monkeypatch.setattr(alerts_service, "REFRESH", dt.timedelta(0))
    code, rest, worker = _drift_station(conn, db_url, 8)
    try:
        assert conn.execute("select status from alert where rule = 'device:drift:w01019'").fetchone() == ("resolved",)
        _acknowledge_drift(conn, "acknowledge", FIXING, rest[0][0])
        for at in range(0, 14, 6):  # to 15 h after the first reading over the limit
            _write(db_url, code, "w01019", rest[at:at + 6])
            worker.step()
    finally:
        worker.close()
    assert [rule for rule, *_ in _alerts(db_url)] == ["device:drift:w01019"]
    assert conn.execute("select status, verdict from alert where rule = 'device:drift:w01019'").fetchone() == (
        "resolved", FIXING)


def test_a_late_reading_rewinding_past_the_stewards_word_still_heeds_it(conn, db_url):
    """The steward vouches for the analyser; the next batch brings a late reading, so the rule rewinds to a mark
    from before the word: the word is taken in after the rewind, and the bureau is paged, confirmed."""
    code, rest, worker = _drift_station(conn, db_url, 2)
    try:
        _acknowledge_drift(conn, "acknowledge", SENSOR_OK)
        _write(db_url, code, "w01019", [(rest[0][0] - 45, 6.91, None), *rest[:2]])
        worker.step()
    finally:
        worker.close()
    [(status, detail)] = conn.execute("select status, detail from alert where rule = 'gb3838:w01019'").fetchall()
    assert status == "open" and "unconfirmed" not in detail


def test_a_word_on_a_doubt_already_over_is_not_taken_for_the_next():
    """The steward vouched for the analyser during an earlier doubt; the readings came back, and a new creep latched
    again: that word (on a drift alert over before this doubt began, or given before the last doubt ended) does
    not vouch for the new readings. A word on the drift alert still on when the doubt began does."""
    rule = _permanganate_rule()
    old = {"status": "acknowledged", "verdict": SENSOR_OK, "acknowledged_at": T0 + dt.timedelta(hours=2),
           "observed_end": T0 + dt.timedelta(hours=3)}
    for latch in ({"origin": T0.isoformat(), "suspect": (T0 + dt.timedelta(hours=30)).isoformat()},
                  {"origin": T0.isoformat(), "suspect": (T0 + dt.timedelta(hours=1)).isoformat(),
                   "cleared": (T0 + dt.timedelta(hours=4)).isoformat()}):
        judge = rules.resumed(rule.make_judge({}), latch)
        rules.heed(judge, [old])
        assert latch_of(judge)["steward"] is None
    judge = rules.resumed(rule.make_judge({}), {"origin": T0.isoformat(),
                                                "suspect": (T0 + dt.timedelta(hours=1)).isoformat()})
    rules.heed(judge, [old])
    assert latch_of(judge)["steward"] == [SENSOR_OK, old["acknowledged_at"].isoformat()]


def test_a_backtest_from_inside_a_doubt_is_a_re_read_not_the_terminals_first_readings(conn, db_url):
    """Backtesting from a time when the analyser already stood at its drifted offset: the rules are told the
    terminal's first stored reading, so the backtest's first window is history not evaluated and the doubt is
    suspect since its start, as a re-read; not a confirmed bureau alert at the backtest's first reading."""
    code = service.create_terminal(conn, river_station(), Actor("t"))
    conn.commit()
    points, over = _permanganate_offset(8)
    _write(db_url, code, "w01019", [(-30 * (len(points) - i), p.value, None) for i, p in enumerate(points)])
    info = evaluate.queries.terminal_info(conn, conn.execute("select id from terminal where code = %s",
                                                             (code,)).fetchone()[0])
    start = NOW - dt.timedelta(minutes=30 * len(points)) + (over - T0) + dt.timedelta(hours=2)
    assert [r.key for r, _ in evaluate.backtest(conn, info, start, NOW, "gb3838:")] == []


def test_a_stuck_window_shorter_than_the_metrics_flat_line_window_is_invisible_not_missed():
    """The live bench's run-long period cuts a stuck window that runs past the end in two: the piece at the start
    may be shorter than the metric's live signal is ever flat (6 h for water pressure), which no rule may call
    stuck. It is counted invisible, as a sensor frozen at rest is; the long piece is still owed an alert."""
    point = _terminal("water_pressure_point", ("water_pressure",), 300)
    short = truth.Truth(Fault.stuck, point.code, "water_pressure", T0, T0 + dt.timedelta(hours=3))
    long = truth.Truth(Fault.stuck, point.code, "water_pressure", T0 + dt.timedelta(hours=10),
                       T0 + dt.timedelta(hours=20))
    device = _score([point], [short, long], {short: 0.31, long: 0.31}, [])["device"]
    assert (device.invisible, device.injected, device.detected) == (1, 1, 0)


def test_a_drift_window_shorter_than_the_drift_test_is_invisible_not_missed():
    """The live bench cut a logger's drift window at the run's end to its first 7 minutes and scored it a miss:
    no drift test sees 7 minutes of creep. A drift shorter than the drift window counts invisible; a long one is
    still owed its ``device:drift``."""
    outlet = _terminal("river_station", ("w01019",), 1800)
    cut = truth.Truth(Fault.drift, outlet.code, "w01019", T0, T0 + dt.timedelta(minutes=7))
    whole = truth.Truth(Fault.drift, outlet.code, "w01019", T0 + dt.timedelta(hours=10), T0 + dt.timedelta(hours=15))
    device = _score([outlet], [cut, whole], {}, [])["device"]
    assert (device.invisible, device.injected, device.detected) == (1, 1, 0)
    assert len(device.missed) == 1 and "10:00–15:00" in device.missed[0]


def test_each_stuck_window_is_judged_at_the_value_it_froze_at(conn, db_url):
    """The live bench's run-long period cuts a window running past the end in two, and each piece freezes afresh
    (``Distortion._enter``): a methane detector at rest (0 %LEL) in the piece open at the run's first reading, at
    1 %LEL in the piece at the end. The first is invisible (clean air reads the same); reading one value back per
    terminal and metric judged it at the last piece's 1 %LEL and scored it a miss."""
    code = service.create_terminal(conn, terminal_in("测试阀井甲烷", "methane_detector"), Actor("t"))
    conn.commit()
    at_rest = truth.Truth(Fault.stuck, code, "methane_lel", NOW - dt.timedelta(hours=24),
                          NOW - dt.timedelta(hours=14.4))
    at_one = truth.Truth(Fault.stuck, code, "methane_lel", NOW - dt.timedelta(hours=4), NOW)
    _write(db_url, code, "methane_lel", [(m, 0.0 if m < -4 * 60 else 1.0, None) for m in range(-24 * 60, 0, 5)])
    device = score_stored(conn, [at_rest, at_one], NOW - dt.timedelta(hours=25), NOW).scores["device"]
    assert (device.invisible, device.injected, device.missed) == (2, 0, [])
