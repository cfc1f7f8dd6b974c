"""The simulated sensors read like Suihua's in late autumn, and faults distort them as named."""

from __future__ import annotations

import datetime as dt
import random

from devices import KINDS, metric
from simulators.faults import Distortion, Fault, pick_faults
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


def test_faults_distort_values():
    rng = random.Random(3)
    stuck = Distortion(Fault.stuck, rng)
    assert {stuck.apply("a34004", v, 0, 2000) for v in (10.0, 20.0, 30.0)} == {10.0}
    drift = Distortion(Fault.drift, rng)
    assert drift.apply("a34004", 10.0, 5.0, 2000) == 10.0 + 0.02 * 2000 * 5
    spikes = Distortion(Fault.spike, rng)
    jumps = [spikes.apply("a34004", 100.0, 0, 2000) for _ in range(2000)]
    assert 40 < sum(1 for v in jumps if abs(v - 100) > 500) < 170
    healthy = Distortion(None, rng)
    assert healthy.apply("a34004", 12.0, 9, 2000) == 12.0


def test_faults_are_picked_deterministically():
    codes = [f"code{i}" for i in range(1000)]
    first = pick_faults(codes, [Fault.stuck, Fault.skew], 0.1, seed=7)
    assert first == pick_faults(codes, [Fault.stuck, Fault.skew], 0.1, seed=7)
    assert 60 < len(first) < 140 and set(first.values()) == {Fault.stuck, Fault.skew}
    assert pick_faults(codes, [], 0.5, seed=7) == {}
