"""Rule families on sequences of readings, without a database: the exact episodes expected."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from analytics.engine import POLLUTION_SKIP_FLAGS, Point
from analytics.rules import TerminalInfo, rules_for

BEIJING = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 27, 8, 0, tzinfo=BEIJING)


def _terminal(kind: str, metrics: tuple[str, ...], attrs: dict, interval: int = 1800) -> TerminalInfo:
    return TerminalInfo(1, "23120221000001R", kind, "sthjj", "231202", None, 126.9, 46.5, interval, metrics, attrs)


def _rule(t: TerminalInfo, key: str):
    return next(r for r in rules_for(t) if r.key == key)


def _series(metric: str, values: list[float], step_min: int = 30, flags: dict[int, str] | None = None,
            start: dt.datetime = T0) -> dict[str, list[Point]]:
    flags = flags or {}
    return {metric: [Point(start + dt.timedelta(minutes=step_min * i), v, flags.get(i)) for i, v in enumerate(values)]}


RIVER = _terminal("water_quality_station", ("w21003", "w01009", "w01001", "w21011"),
                  {"river": "呼兰河", "chainage_km": 162, "target_class": "III"})


def test_river_ammonia_worse_than_target_class_with_hysteresis_and_minimum_duration():
    rule = _rule(RIVER, "gb3838:w21003")
    # 0.8 ok; 1.3 (IV) x3; 0.98 in the band (≤1.0 but above 0.95): holds; 0.7 clears.
    found = rule.evaluate(_series("w21003", [0.8, 1.3, 1.35, 1.3, 0.98, 0.7]))
    assert len(found) == 1
    episode = found[0]
    assert (episode.start, episode.end) == (T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=150))
    assert episode.severity == "warning" and episode.worst_value == 1.35
    assert "meets class IV only; the section's target is class III (GB 3838-2002)" in episode.detail
    # a single violating reading is shorter than the minimum duration (one interval): no alert
    assert rule.evaluate(_series("w21003", [0.8, 1.3, 0.7])) == []
    # two classes worse is critical; worse than V says so
    worst = rule.evaluate(_series("w21003", [2.5, 2.6]))[0]
    assert worst.severity == "critical" and "worse than V" in worst.detail and worst.active


def test_dissolved_oxygen_is_judged_as_a_floor_and_lakes_use_the_lake_phosphorus_column():
    low_oxygen = _rule(RIVER, "gb3838:w01009").evaluate(_series("w01009", [6.0, 4.0, 3.5, 6.5]))
    assert len(low_oxygen) == 1 and "class IV only" in low_oxygen[0].detail
    lake = _terminal("water_quality_station", ("w21011",), {"river": "湖", "chainage_km": 0, "target_class": "III",
                                                             "water_body": "lake"})
    assert _rule(lake, "gb3838:w21011").evaluate(_series("w21011", [0.08, 0.09]))  # > 0.05 for lakes
    assert not _rule(RIVER, "gb3838:w21011").evaluate(_series("w21011", [0.08, 0.09]))  # ≤ 0.2 for rivers


def test_maintenance_and_calibration_values_raise_no_pollution_alert():
    rule = _rule(RIVER, "gb3838:w21003")
    flagged = _series("w21003", [3.0, 3.1, 3.2, 0.4], flags={0: "M", 1: "C", 2: "M"})
    assert rule.evaluate(flagged) == []


SEWAGE = _terminal("sewage_outlet_analyser", ("w21003", "w01010", "w21011", "w01018"),
                   {"plant": "北林区污水处理厂", "grade": "1A", "build_year": 2004}, interval=600)


def test_sewage_ammonia_uses_the_cold_water_limit_and_tp_the_build_year():
    rule = _rule(SEWAGE, "gb18918:w21003")
    cold = {**_series("w01010", [10.0], start=T0 - dt.timedelta(hours=1)), **_series("w21003", [6.5, 7.0], 10)}
    warm = {**_series("w01010", [14.0], start=T0 - dt.timedelta(hours=1)), **_series("w21003", [6.5, 7.0], 10)}
    assert rule.evaluate(cold) == []  # ≤ 12 °C: the bracketed 8 mg/L applies
    found = rule.evaluate(warm)
    assert len(found) == 1 and "limit 5 " in found[0].detail
    tp = _rule(SEWAGE, "gb18918:w21011").evaluate(_series("w21011", [0.8, 0.9], 10))
    assert tp == []  # a plant built before 2006 is allowed 1 mg/L
    daily = _rule(SEWAGE, "gb18918:w01018:avg:day").evaluate(_series("w01018:avg:day", [55.0], 1440))
    assert daily[0].severity == "critical" and daily[0].detail.startswith("daily mean COD 55")


def test_gas_band_drop_rate_and_methane_levels():
    gas = _terminal("gas_pressure_sensor", ("gas_pressure",), {"pressure_class": "medium_b", "set_point_kpa": 200.0},
                    interval=60)
    band = _rule(gas, "gas:pressure_band").evaluate(_series("gas_pressure", [200, 240, 199], 1))
    assert len(band) == 1 and "above 230" in band[0].detail
    drop = _rule(gas, "gas:pressure_drop").evaluate(_series("gas_pressure", [200, 198, 180, 165, 165], 1))
    assert len(drop) == 1 and "possible leak" in drop[0].detail
    detector = _terminal("methane_detector", ("methane_lel",), {}, interval=60)
    levels = _rule(detector, "gas:methane").evaluate(_series("methane_lel", [2, 22, 55, 48, 18, 10], 1))
    assert len(levels) == 1 and levels[0].severity == "critical"  # 18 is in the band, 10 clears
    # A lone 55 between 22 and 18 is what the QARTOD spike test calls a spike: the steward's, not a level 2
    spiked = _rule(detector, "gas:methane").evaluate(_series("methane_lel", [2, 22, 55, 18, 10], 1))
    assert len(spiked) == 1 and spiked[0].severity == "warning"


def test_water_service_pressure_and_minimum_night_flow():
    point = _terminal("water_pressure_point", ("water_pressure",), {"min_service_mpa": 0.14}, interval=300)
    low = _rule(point, "water:service_pressure").evaluate(_series("water_pressure", [0.2, 0.12, 0.11, 0.2], 5))
    assert len(low) == 1
    meter = _terminal("district_flow_meter", ("water_flow",), {"district": "DMA-01", "night_allowance_m3h": 12},
                      interval=300)
    night = dt.datetime(2026, 11, 27, 1, 0, tzinfo=BEIJING)
    flows = [30.0] * 12 + [15.0] * 24 + [30.0] * 12  # 01:00-05:00, 5-minute readings; 02:00-04:00 at 15 m³/h
    found = _rule(meter, "water:night_flow").evaluate(_series("water_flow", flows, 5, start=night))
    assert len(found) == 1 and found[0].start == dt.datetime(2026, 11, 27, 2, 0, tzinfo=BEIJING)
    assert "suspected leak" in found[0].detail and found[0].active


def test_indoor_temperature_only_in_the_heating_season():
    room = _terminal("indoor_temp_sensor", ("indoor_temp",), {}, interval=900)
    cold = [16.5] * 12
    assert len(_rule(room, "heating:indoor").evaluate(_series("indoor_temp", cold, 15))) == 1
    summer = dt.datetime(2026, 7, 1, 8, tzinfo=BEIJING)
    assert _rule(room, "heating:indoor").evaluate(_series("indoor_temp", cold, 15, start=summer)) == []


def test_device_faults_stuck_and_impossible_jumps():
    air = _terminal("air_sensor", ("a34004",), {}, interval=300)
    stuck = _rule(air, "device:stuck:a34004").evaluate(_series("a34004", [35.0] * 150 + [36.0], 5))
    assert len(stuck) == 1 and "flat at 35" in stuck[0].detail
    jump = _rule(air, "device:jump:a34004").evaluate(_series("a34004", [35.0, 1800.0, 36.0], 5))
    assert len(jump) == 1 and "physically impossible" in jump[0].detail
    assert all(r.bureau == "steward" for r in rules_for(air))


def test_the_docs_name_the_same_skipped_hj212_flags_as_the_one_constant():
    """docs/rules.md and docs/devices.md list exactly ``POLLUTION_SKIP_FLAGS``, and every bureau rule on a
    pollutant skips exactly those (issue 12 §3: one source of truth)."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    rules_md = " ".join((docs / "rules.md").read_text(encoding="utf-8").split())
    listed = re.search(r"POLLUTION_SKIP_FLAGS` — (.+?) — never count", rules_md).group(1)
    assert {item.split()[0] for item in listed.split(", ")} == set(POLLUTION_SKIP_FLAGS)
    devices_md = " ".join((docs / "devices.md").read_text(encoding="utf-8").split())
    cited = re.search(r"POLLUTION_SKIP_FLAGS` \(([A-Z, ]+);", devices_md).group(1)
    assert set(cited.split(", ")) == set(POLLUTION_SKIP_FLAGS)
    for t in (RIVER, _terminal("sewage_outlet_analyser", ("w01018", "w21003", "w01001"), {"grade": "1A"}, 600)):
        assert {r.skip_flags for r in rules_for(t) if r.family in ("river", "sewage")} == {POLLUTION_SKIP_FLAGS}


def test_a_fall_from_overpressure_back_to_the_band_is_no_leak():
    """A pressure coming back from above the band (a regulator recovering, a drifting sensor recalibrated) falls
    fast but is no leak: the drop rule calls a fall from within the band only. The band rule had the overpressure."""
    gas = _terminal("gas_pressure_sensor", ("gas_pressure",), {"pressure_class": "medium_b", "set_point_kpa": 200.0},
                    interval=60)
    back = [400.0 - 0.2 * i for i in range(10)] + [198.0, 197.5, 198.2, 197.9]
    assert _rule(gas, "gas:pressure_drop").evaluate(_series("gas_pressure", back, 1)) == []
    assert len(_rule(gas, "gas:pressure_band").evaluate(_series("gas_pressure", back, 1))) == 1
