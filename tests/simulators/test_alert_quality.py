"""The simulated fleet is quiet when healthy and heard when something happens: a day of every kind of
terminal, judged by the rules and scored against the injected ground truth (issue 12 §2)."""

from __future__ import annotations

import random

from analytics.rules import TerminalInfo
from ganzhi.bench_alert_quality import FAMILIES, judge_day, score_run
from simulators.faults import Distortion

_KINDS = (
    ("water_quality_station", 21, ("w01001", "w01009", "w01010", "w01003", "w01014", "w01019", "w21003", "w21011",
                                    "w21001"), 1800, {"river": "呼兰河", "chainage_km": 120, "target_class": "III"}),
    ("sewage_outlet_analyser", 22, ("w00000", "w01001", "w01010", "w01018", "w21003", "w21011", "w21001"), 600,
     {"grade": "1A", "build_year": 2012}),
    ("air_sensor", 24, ("a34004", "a34002", "a01001", "a01002"), 300, {}),
    ("gas_pressure_sensor", 31, ("gas_pressure",), 60, {"set_point_kpa": 3.0, "pressure_class": "low"}),
    ("methane_detector", 32, ("methane_lel",), 60, {}),
    ("water_pressure_point", 41, ("water_pressure",), 300, {"district": "DMA-01", "min_service_mpa": 0.14}),
    ("district_flow_meter", 42, ("water_flow", "water_pressure"), 300, {"district": "DMA-01",
                                                                      "night_allowance_m3h": 12.0}),
    ("heating_substation_sensor", 51, ("supply_temp", "return_temp", "supply_pressure", "return_pressure",
                                       "outdoor_temp"), 300, {"substation": "换热站01"}),
    ("indoor_temp_sensor", 52, ("indoor_temp",), 900, {}),
)


def _ledger(per_kind: int) -> list[TerminalInfo]:
    return [TerminalInfo(k * 100 + n, f"2312022{cls}{n:06d}", kind, "zjj", "231202", None, 126.9, 46.6, interval,
                         metrics, attrs)
            for k, (kind, cls, metrics, interval, attrs) in enumerate(_KINDS) for n in range(per_kind)]


def test_a_healthy_day_raises_nothing():
    """Methane at 0 %LEL in clean air, regulated pressures on one step, flow meters low at night: all healthy."""
    raised = [(info.code, r.rule.key, r.episode.detail) for info in _ledger(3)
              for r in judge_day(info, Distortion(None, random.Random(1)), 24, seed=11)]
    assert raised == []


def test_every_injected_fault_and_event_is_heard_and_every_alert_explained():
    """Every injection is heard (drift included), every device alert is explained by its fault, and the strict
    precision (a bureau alert a device fault raised counts as false) is at the goal: a drifting analyser's readings
    are suspect once the drift test calls the creep, and a spike never reaches a bureau's rule. What remains is a
    drift crossing a limit close above the normal value before the creep can be told from the world: on this
    ledger, the 1A outlet's phosphorus analyser (limit 0.5 mg/L, reading 0.3) passes the limit within the hour
    (docs/rules.md, "Quality flags")."""
    scores = score_run(_ledger(4), 24, seed=12, per_kind=4, share=0.75)
    for family in FAMILIES:
        s = scores[family]
        assert s.injected > 0, family
        assert s.recall == 1.0, (family, s.missed)
        assert s.explained + s.by_fault == s.alerts, (family, s.false)
        assert s.precision >= 0.95 or (family == "sewage" and s.by_fault == 1), (family, s.false)
    assert scores["device"].precision == 1.0
