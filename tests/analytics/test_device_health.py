"""Device-health rules against what healthy sensors really read: resting values, resolution, regulated
quantities; and the faults they must still catch (issue 12 §2)."""

from __future__ import annotations

import datetime as dt
import math
import random

from analytics.engine import Point
from analytics.rules import TerminalInfo, rules_for

BEIJING = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 27, 0, 0, tzinfo=BEIJING)


def _terminal(kind: str, metrics: tuple[str, ...], interval: int, attrs: dict | None = None) -> TerminalInfo:
    return TerminalInfo(1, "23120232000001R", kind, "zjj", "231202", None, 126.9, 46.5, interval, metrics, attrs or {})


def _points(values, step_s: int) -> list[Point]:
    return [Point(T0 + dt.timedelta(seconds=step_s * i), v) for i, v in enumerate(values)]


def _device_episodes(t: TerminalInfo, series: dict[str, list[Point]]) -> dict[str, list]:
    return {r.key: found for r in rules_for(t) if r.family == "device" and (found := r.evaluate(series))}


def test_clean_air_methane_detector_at_zero_all_day_raises_nothing():
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    assert _device_episodes(detector, {"methane_lel": _points([0.0] * 1440, 60)}) == {}


def test_regulated_supply_pressure_constant_at_resolution_raises_nothing():
    substation = _terminal("heating_substation_sensor", ("supply_pressure", "return_pressure"), 300)
    day = 24 * 12
    series = {"supply_pressure": _points([0.62] * day, 300), "return_pressure": _points([0.32] * day, 300)}
    assert _device_episodes(substation, series) == {}


def test_flow_meter_at_zero_through_the_night_raises_nothing():
    meter = _terminal("district_flow_meter", ("water_flow",), 300)
    night = [0.0] * (8 * 12) + [12.5, 30.1, 41.7]
    assert _device_episodes(meter, {"water_flow": _points(night, 300)}) == {}


def test_a_quantised_live_signal_is_never_called_stuck():
    """A river's slow water temperature at 0.1 °C resolution sits on one step for hours near its daily peak."""
    station = _terminal("water_quality_station", ("w01010", "w01009"), 1800)
    rng = random.Random(4)
    temps = [round(2.0 + 0.6 * math.cos(2 * math.pi * (i / 2 - 15) / 24) + rng.gauss(0, 0.02), 1) for i in range(96)]
    oxygen = [round(9.4 + 1.2 * math.cos(2 * math.pi * (i / 2 - 14) / 24) + rng.gauss(0, 0.03), 2) for i in range(96)]
    series = {"w01010": _points(temps, 1800), "w01009": _points(oxygen, 1800)}
    assert _device_episodes(station, series) == {}


def test_dissolved_oxygen_frozen_while_the_station_moves_is_stuck():
    station = _terminal("water_quality_station", ("w01009", "w01010", "w01001"), 1800)
    rng = random.Random(5)
    hours = 16
    n = hours * 2
    series = {
        "w01009": _points([round(9.0 + rng.gauss(0, 0.05), 2) for _ in range(4)] + [7.43] * (n - 4), 1800),
        "w01010": _points([round(2.0 + 0.3 * math.sin(i / 3) + rng.gauss(0, 0.05), 1) for i in range(n)], 1800),
        "w01001": _points([round(7.6 + rng.gauss(0, 0.02), 2) for _ in range(n)], 1800),
    }
    found = _device_episodes(station, series)
    assert list(found) == ["device:stuck:w01009"]
    episode = found["device:stuck:w01009"][0]
    frozen_at = T0 + dt.timedelta(hours=2)
    assert episode.start == frozen_at + dt.timedelta(hours=6) and episode.active
    assert "flat at 7.43 mg/L" in episode.detail and "other sensors moved" in episode.detail


def test_a_whole_terminal_flat_waits_twice_as_long():
    station = _terminal("water_quality_station", ("w01009", "w01001"), 1800)
    series = {"w01009": _points([7.43] * 30, 1800), "w01001": _points([7.61] * 30, 1800)}
    found = _device_episodes(station, series)
    assert {key: found[key][0].start for key in found} == {
        "device:stuck:w01009": T0 + dt.timedelta(hours=12), "device:stuck:w01001": T0 + dt.timedelta(hours=12)}


def test_methane_stuck_above_rest_is_caught_and_a_leak_is_not_a_spike():
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    stuck = _device_episodes(detector, {"methane_lel": _points([0.0] * 30 + [7.0] * 400, 60)})
    assert list(stuck) == ["device:stuck:methane_lel"]
    leak = [0.0] * 30 + [float(35 + i % 20) for i in range(60)] + [0.0] * 30
    assert _device_episodes(detector, {"methane_lel": _points(leak, 60)}) == {}


def test_a_spike_is_caught_on_the_reading_after_it():
    air = _terminal("air_sensor", ("a34004",), 300)
    found = _device_episodes(air, {"a34004": _points([35.0, 36.0, 800.0, 37.0, 36.0], 300)})
    assert list(found) == ["device:jump:a34004"]
    assert found["device:jump:a34004"][0].start == T0 + dt.timedelta(minutes=15)
    assert "spiked to 800" in found["device:jump:a34004"][0].detail


def _with_noise(values, sd: float, seed: int = 5, digits: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [round(v + rng.gauss(0, sd), digits) for v in values]


def test_a_sensor_creeping_away_from_the_truth_is_a_drift_for_the_steward():
    """QARTOD has no single drift test; a steady creep is one: over the drift window the sensor's level climbs
    quarter after quarter faster than the live quantity ever steadily changes (a supply temperature sensor
    creeping 3.2 °C an hour: 2 % of its range, the simulators' drift)."""
    substation = _terminal("heating_substation_sensor", ("supply_temp", "return_temp"), 300)
    steady = [70.0] * 24
    creeping = [70.0 + 3.2 * i / 12 for i in range(1, 48)]  # two hours of readings every 5 minutes, then four
    series = {"supply_temp": _points(_with_noise(steady + creeping, 0.3), 300),
              "return_temp": _points(_with_noise([56.0] * 71, 0.3, seed=6), 300)}
    found = _device_episodes(substation, series)
    assert list(found) == ["device:drift:supply_temp"]
    [episode] = found["device:drift:supply_temp"]
    assert T0 + dt.timedelta(hours=2) < episode.start <= T0 + dt.timedelta(hours=4, minutes=5)
    assert episode.facts is None and "drift" in episode.detail


def test_daily_cycles_steps_and_spikes_are_not_drift():
    """The live quantity's own daily cycle, a real event's step (a heating failure: indoor 15 °C) and a spiking
    sensor stay below the drift test."""
    indoor = _terminal("indoor_temp_sensor", ("indoor_temp",), 900)
    day = [20.5 + 0.8 * math.cos(2 * math.pi * (i / 4 - 17) / 24) for i in range(96)]
    failure = day[:40] + [15.0] * 20 + day[60:]
    spiking = [v + (30.0 if i % 9 == 4 else 0.0) for i, v in enumerate(day)]
    for values in (day, failure, spiking):
        found = _device_episodes(indoor, {"indoor_temp": _points(_with_noise(values, 0.1), 900)})
        assert "device:drift:indoor_temp" not in found


def test_quantities_that_change_as_fast_as_a_drift_have_no_drift_test():
    """Weather and air quality, dissolved oxygen's daily swing, a methane reading rising (a leak building up is
    the bureau's) and a network pressure that follows demand: a steady change there is the world, not the
    sensor (only a neighbour could tell them apart)."""
    air = _terminal("air_sensor", ("a34004", "a01001"), 300)
    keys = {r.key for r in rules_for(air)}
    assert not any(k.startswith("device:drift:") for k in keys)
    detector = _terminal("methane_detector", ("methane_lel",), 60)
    assert "device:drift:methane_lel" not in {r.key for r in rules_for(detector)}
    gas = _terminal("gas_pressure_sensor", ("gas_pressure",), 60, {"set_point_kpa": 200.0})
    assert "device:drift:gas_pressure" in {r.key for r in rules_for(gas)}


def test_a_step_inside_a_quarter_on_a_rising_quantity_is_not_drift():
    """A heating failure's supply at 98 °C arriving in the middle of a quarter moves two quarters' means, and an
    hour's rise before it (2.6 °C/h) the third: a creep is steady, a step is not. Wherever the step falls."""
    substation = _terminal("heating_substation_sensor", ("supply_temp",), 300)
    values = [75.0] * 48 + [75.0 + 2.6 * i / 12 for i in range(1, 13)] + [98.0] * 24
    for shift in range(6):
        points = [Point(p.ts + dt.timedelta(minutes=5 * shift), p.value) for p in _points(values, 300)]
        found = _device_episodes(substation, {"supply_temp": points})
        assert "device:drift:supply_temp" not in found, shift
