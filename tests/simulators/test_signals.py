"""The simulated sensors read like Suihua's in late autumn, and faults distort them as named."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import time

import pytest

from devices import KINDS, drift_limit, metric
from simulators import truth
from simulators.faults import SPIKE_GAP, Distortion, Fault, Injection, pick_faults, plan
from simulators.instruments import instrument
from simulators.signals import base_value

BEIJING = dt.timezone(dt.timedelta(hours=8))


def _at(hour: int) -> dt.datetime:
    return dt.datetime(2026, 11, 27, hour, tzinfo=BEIJING)


def _mean(kind: str, key: str, hour: int, attrs: dict | None = None) -> float:
    rng = random.Random(1)
    return sum(base_value(kind, key, _at(hour), attrs or {}, rng) for _ in range(200)) / 200


def test_every_kind_reads_inside_the_physical_ranges_all_day():
    rng = random.Random(2)
    for kind in KINDS:
        for key in kind.metrics:
            spec = metric(key)
            for hour in range(24):
                value = base_value(kind.key, key, _at(hour), {"set_point_kpa": 200.0}, rng)
                assert spec.low <= value <= spec.high, (kind.key, key, hour, value)


def test_daily_cycles():
    river = "water_quality_station"
    assert _mean(river, "w01009", 14) > _mean(river, "w01009", 4) + 1.5  # dissolved oxygen peaks in the afternoon
    assert _mean(river, "w21003", 5) > _mean(river, "w21003", 17)        # ammonia at dawn
    assert _mean("water_quality_station", "w21003", 5, {"target_class": "IV"}) > 1.0
    sewage = "sewage_outlet_analyser"
    assert _mean(sewage, "w00000", 9) > 1.5 * _mean(sewage, "w00000", 3)  # morning inflow peak
    assert _mean("district_flow_meter", "water_flow", 3) < 0.4 * _mean("district_flow_meter", "water_flow", 8)
    gas = _mean("gas_pressure_sensor", "gas_pressure", 18, {"set_point_kpa": 200.0})
    assert 190 < gas < _mean("gas_pressure_sensor", "gas_pressure", 3, {"set_point_kpa": 200.0}) <= 200
    heating = "heating_substation_sensor"
    assert _mean(heating, "outdoor_temp", 4) < _mean(heating, "outdoor_temp", 15)
    assert _mean(heating, "supply_temp", 4) > _mean(heating, "supply_temp", 15)  # colder night, hotter supply


def test_readings_are_quantised_to_the_instrument_resolution_with_noise():
    rng = random.Random(6)
    methane = {base_value("methane_detector", "methane_lel", _at(h), {}, rng) for h in range(24) for _ in range(60)}
    assert methane <= {0.0, 1.0} and 0.0 in methane  # clean air: 0 %LEL, now and then one step of noise
    pressure = [base_value("heating_substation_sensor", "supply_pressure", _at(h), {}, rng) for h in range(24)]
    assert set(pressure) <= {0.619, 0.62, 0.621}  # regulated: on one step, give or take one
    oxygen = [base_value("water_quality_station", "w01009", _at(10), {}, rng) for _ in range(50)]
    assert len(set(oxygen)) > 5 and all(round(v * 100) == round(v * 100, 6) for v in oxygen)


def test_value_faults_last_their_window_only():
    rng = random.Random(3)
    stuck = Distortion(Injection(Fault.stuck, "x", "a34004", 1.0, 3.0), rng)
    assert [stuck.apply("a34004", v, h, 2000) for v, h in ((10.0, 0.5), (20.0, 1.0), (30.0, 2.0), (40.0, 3.0))] \
        == [10.0, 20.0, 20.0, 40.0]
    assert stuck.apply("a34002", 55.0, 2.0, 3000) == 55.0  # one sensor of the terminal sticks, not the others
    drift = Distortion(Injection(Fault.drift, "x", "w21003", 0.0, 9.0, rate_per_h=0.25), rng)
    assert drift.apply("w21003", 0.55, 5.0, 300) == 0.55 + 0.25 * 5
    assert drift.apply("w01009", 9.4, 5.0, 20) == 9.4  # one sensor of the terminal drifts, not the others
    spikes = Distortion(Injection(Fault.spike, "x", None, 0.5, 9.0), rng)
    assert spikes.apply("a34004", 100.0, 0.2, 2000) == 100.0  # the series runs before the window
    jumps = [spikes.apply("a34004", 100.0, 1, 2000) for _ in range(2000)]
    assert jumps[0] == 700.0 and 50 < sum(1 for v in jumps if abs(v - 100) > 500) < 170
    at = [i for i, v in enumerate(jumps) if v != 100.0]
    assert min(b - a for a, b in itertools.pairwise(at)) > SPIKE_GAP  # isolated: a spike, not a plateau with a dip
    assert Distortion(None, rng).apply("a34004", 12.0, 9, 2000) == 12.0


def test_a_drift_creeps_at_what_a_failing_instrument_of_the_kind_does():
    """Twelve times the norm's 24-hour allowance (5 % F.S.) on the analyser's range, not a share of the protocol's
    plausibility range (0–300 mg/L ammonia would creep 6 mg/L an hour, past a river's limit in minutes)."""
    river = plan(Fault.drift, "x", "water_quality_station", ("w01009", "w21003"), 24, seed=3)
    sewage = plan(Fault.drift, "x", "sewage_outlet_analyser", ("w21003",), 24, seed=3)
    assert (river.metric, river.rate_per_h) == ("w21003", 10 * 0.05 / 2)
    assert sewage.rate_per_h == 50 * 0.05 / 2
    assert instrument("water_quality_station", "w21003").fault_drift_per_h == river.rate_per_h


def test_injections_are_planned_inside_the_run_and_long_enough_to_see():
    stuck = plan(Fault.stuck, "x", "water_quality_station", ("w01009", "w01010"), 24, seed=3)
    assert stuck == plan(Fault.stuck, "x", "water_quality_station", ("w01009", "w01010"), 24, seed=3)
    assert stuck.metric in ("w01009", "w01010") and 0.5 <= stuck.start_h < stuck.end_h <= 23.5
    assert stuck.end_h - stuck.start_h > metric(stuck.metric).flat_after_h
    assert plan(Fault.stuck, "x", "heating_substation_sensor", ("supply_pressure",), 24, seed=3) is None  # regulated
    drift = plan(Fault.drift, "x", "water_quality_station", ("w01009", "w01019"), 24, seed=3)
    assert drift.metric == "w01019"  # a sensor with a drift test: dissolved oxygen swings as fast as a drift
    assert plan(Fault.drift, "x", "methane_detector", ("methane_lel",), 24, seed=3) is None
    assert plan(Fault.pollution, "x", "air_sensor", ("a34004",), 24, seed=3) is None  # nothing an event changes
    assert plan(Fault.skew, "x", "air_sensor", ("a34004",), 24, seed=3) is None  # transport faults last the whole run


def test_live_runs_repeat_events_daily_from_a_random_phase():
    event = Injection(Fault.pollution, "x", None, 22.0, 27.0, every_h=24)
    assert [event.covers(h) for h in (0.0, 2.9, 3.0, 21.9, 22.0, 26.0, 46.5)] == [True, True, False, False, True,
                                                                                  True, True]
    assert event.occurrences(30) == [(0.0, 3.0), (22.0, 27.0)]
    assert plan(Fault.pollution, "x", "methane_detector", ("methane_lel",), 24, seed=3, repeat=True).every_h == 24


def test_ground_truth_round_trips_through_its_file(tmp_path):
    started = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    injection = Injection(Fault.pollution, "23120221000001R", None, 2.0, 5.0)
    truth.record(tmp_path / "truth.jsonl", truth.observed(injection, started, speed=10, until_h=24))
    [back] = truth.load(tmp_path / "truth.jsonl")
    assert (back.kind, back.terminal, back.metric) == (Fault.pollution, "23120221000001R", None)
    assert (back.start, back.end) == (started + dt.timedelta(minutes=12), started + dt.timedelta(minutes=30))


def test_faults_are_picked_deterministically():
    codes = [f"code{i}" for i in range(1000)]
    first = pick_faults(codes, [Fault.stuck, Fault.skew], 0.1, seed=7)
    assert first == pick_faults(codes, [Fault.stuck, Fault.skew], 0.1, seed=7)
    assert 60 < len(first) < 140 and set(first.values()) == {Fault.stuck, Fault.skew}
    assert pick_faults(codes, [], 0.5, seed=7) == {}


def test_a_spike_window_open_at_a_series_first_reading_spikes_the_next_one():
    """A spike window that is already open when the series begins (a live run's window wrapped round its start, a
    device switched on while faulty) spikes the first reading that has one before it: a series' first reading has
    nothing to stand out from, so neither a spike test nor an operator could tell it, and the fault would not show."""
    spikes = Distortion(Injection(Fault.spike, "x", None, 0.0, 9.0), random.Random(3))
    first = [spikes.apply("water_level", 2.0, h / 10, 10.0) for h in range(4)]
    assert first[0] == 2.0 and first[1] == 5.0, first
    opened = Distortion(Injection(Fault.spike, "x", None, 1.0, 9.0), random.Random(3))
    seen = [opened.apply("water_level", 2.0, h, 10.0) for h in (0.5, 1.0, 1.5)]
    assert seen[:2] == [2.0, 5.0], seen  # a window opening on a running series spikes its first reading, as before


def test_a_pollution_event_adds_a_load_and_leaves_the_rivers_own_cycle_as_slow_as_it_was():
    """A spill adds its load to what the river carries (three times the level at its start): the river's daily cycle
    goes on under it at its own pace. Tripling every reading instead tripled the cycle's slope, and river ammonia's
    (0.2 mg/L a half-day swing) then crept faster than the drift test's 0.15 mg/L/h: the live bench's false
    ``device:drift:w21003`` on a polluted river station (seed 501)."""
    event = Distortion(Injection(Fault.pollution, "x", None, 0.0, 9.0), random.Random(5))
    clean = [0.55 + 0.2 * math.cos(2 * math.pi * (h - 5) / 24) for h in range(9)]
    polluted = [event.apply("w21003", v, h, 300) for h, v in enumerate(clean)]
    assert polluted[0] == pytest.approx(3 * clean[0], abs=0.002)
    steepest = max(abs(b - a) for a, b in itertools.pairwise(polluted))
    assert steepest <= max(abs(b - a) for a, b in itertools.pairwise(clean)) + 0.002, polluted
    assert steepest < drift_limit("water_quality_station", "w21003")
    assert min(p - c for p, c in zip(polluted, clean, strict=True)) > 0.9  # a load all through the event


def test_a_loggers_real_time_series_keeps_its_spike_when_aggregates_are_sent_at_the_same_moment():
    """A logger sends its real-time values (2011) and, at the same moment, minute (2051) and hourly (2061) aggregates:
    each series has its own fault state, so the spike owed to the real-time series (the one the rules judge) is not
    spent on an aggregate packet, and spikes in it stay ``SPIKE_GAP`` apart."""
    from simulators.loggers import SimLogger, _Clock, _data, _Distorted

    lg = SimLogger("23120200000000000001", "water_quality_station", "MN1", "pw", ("w21003",), {})
    event = _Distorted(Injection(Fault.spike, lg.code, None, 0.0, 9.0), lg.mn, _Clock(time.monotonic(), 1.0))
    rng = random.Random(1)
    at = dt.datetime(2026, 10, 15, 10, tzinfo=dt.UTC)
    real_time = []
    for n in range(40):
        for cn in ("2011", "2051", "2061") if n == 0 else ("2011",):
            packet = _data(lg, cn, at + dt.timedelta(seconds=30 * n), rng, event)
            if cn == "2011":
                real_time.append(float(packet.cp.split("w21003-Rtd=")[1].split(",")[0]))
    usual = sorted(real_time)[len(real_time) // 2]
    span = metric("w21003").high - metric("w21003").low
    spiked = [n for n, v in enumerate(real_time) if abs(v - usual) > 0.2 * span]
    assert spiked and spiked[0] == 1, real_time  # the series' second reading: its first could not show it
    assert all(b - a > SPIKE_GAP for a, b in itertools.pairwise(spiked)), spiked


def test_each_window_of_a_repeating_fault_starts_afresh():
    """A daily repeated window (live runs) is a new occurrence: a flat line sticks at that day's value, a spill
    starts from that day's level."""
    stuck = Distortion(Injection(Fault.stuck, "x", "w21003", 0.0, 2.0, 24.0), random.Random(1))
    assert stuck.apply("w21003", 1.0, 1.0, 10) == 1.0 and stuck.apply("w21003", 5.0, 1.5, 10) == 1.0
    assert stuck.apply("w21003", 3.0, 25.0, 10) == 3.0  # the next day's window sticks where the value is then
    spill = Distortion(Injection(Fault.pollution, "x", None, 0.0, 2.0, 24.0), random.Random(1))
    assert spill.apply("w21003", 1.0, 1.0, 10) == pytest.approx(3.0)
    assert spill.apply("w21003", 2.0, 25.0, 10) == pytest.approx(6.0)
