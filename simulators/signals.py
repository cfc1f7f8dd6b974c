"""What each kind of sensor would read at a given moment, for a Suihua late-autumn day.

Daily cycles are on Beijing time: river dissolved oxygen peaks in the afternoon and
ammonia at dawn; sewage inflow peaks at 9:00 and 20:00; gas pressure sags with demand;
water flow is lowest 02:00–04:00; heating supply follows the outdoor temperature.
Each reading carries the noise of a field instrument (one standard deviation in ``NOISE``) and
is quantised to the metric's resolution, as the instrument reports it: a methane detector in
clean air reads 0 %LEL, a regulated heating pressure sits on one step for hours.
"""

from __future__ import annotations

import datetime as dt
import math
import random

from devices import metric

_BEIJING = dt.timezone(dt.timedelta(hours=8))


NOISE = {
    "w01001": 0.02, "w01009": 0.05, "w01010": 0.05, "w01003": 1.0, "w01014": 3.0, "w01018": 0.8, "w01019": 0.08,
    "w21003": 0.02, "w21011": 0.005, "w21001": 0.05, "w00000": 8.0, "water_level": 0.005,
    "a34004": 3.0, "a34002": 4.0, "a01001": 0.1, "a01002": 1.0,
    "methane_lel": 0.3, "water_pressure": 0.003, "water_flow": 0.5,
    "supply_temp": 0.3, "return_temp": 0.3, "supply_pressure": 0.0003, "return_pressure": 0.0003,
    "indoor_temp": 0.1, "outdoor_temp": 0.2,
}
"""Instrument and process noise, one standard deviation in the metric's unit."""
GAS_NOISE = 0.004
"""Gas pressure noise as a share of the set point (regulators hunt by a few tenths of a per cent)."""


def _hour(t: dt.datetime) -> float:
    local = t.astimezone(_BEIJING)
    return local.hour + local.minute / 60 + local.second / 3600


def _wave(hour: float, peak: float) -> float:
    """-1…1, highest at ``peak`` o'clock."""
    return math.cos(2 * math.pi * (hour - peak) / 24)


def outdoor(hour: float) -> float:
    return -12 + 5 * _wave(hour, 15)


def demand(hour: float) -> float:
    """Urban demand, 0.2 at night to about 1.2 at the morning and evening peaks."""
    morning = math.exp(-((hour - 7.5) ** 2) / 3)
    evening = math.exp(-((hour - 19) ** 2) / 4)
    midday = 0.5 * math.exp(-((hour - 12) ** 2) / 4)
    return 0.2 + morning + evening + midday


def base_value(kind: str, key: str, t: dt.datetime, attrs: dict, rng: random.Random) -> float:
    """An undisturbed reading of ``key`` for a terminal of ``kind``."""
    h = _hour(t)
    poor = attrs.get("target_class") in ("IV", "V")
    grade_1a = attrs.get("grade") == "1A"
    sewage_flow = 600 * (0.6 + 0.7 * math.exp(-((h - 9) ** 2) / 4) + 0.6 * math.exp(-((h - 20) ** 2) / 4))
    supply = min(95.0, max(45.0, 55 + 1.3 * -outdoor(h)))
    models = {
        "w01010": lambda: 2.0 + 0.6 * _wave(h, 15) if kind == "water_quality_station" else 12.5 + 0.5 * _wave(h, 15),
        "w01009": lambda: 9.4 + 1.2 * _wave(h, 14) - (2.0 if poor else 0),
        "w21003": lambda: (1.15 if poor else 0.55) + 0.2 * _wave(h, 5) if kind == "water_quality_station"
        else (1.4 if grade_1a else 2.6) + 0.4 * _wave(h, 11),
        "w01001": lambda: 7.6 + 0.15 * _wave(h, 14) if kind == "water_quality_station" else 7.1,
        "w01019": lambda: 6.8 if poor else 4.4,
        "w21011": lambda: (0.22 if poor else 0.12) if kind == "water_quality_station" else (0.3 if grade_1a else 0.5),
        "w21001": lambda: 1.1 if kind == "water_quality_station" else 11.0,
        "w01003": lambda: 15.0,
        "w01014": lambda: 420.0,
        "w01018": lambda: 28.0 + 4 * _wave(h, 11),
        "w00000": lambda: sewage_flow,
        "water_level": lambda: 2.1 + 0.05 * _wave(h, 6),
        "a34004": lambda: 45 + 25 * _wave(h, 21),
        "a34002": lambda: 70 + 35 * _wave(h, 21),
        "a01001": lambda: outdoor(h),
        "a01002": lambda: 65 - 12 * _wave(h, 15),
        "gas_pressure": lambda: float(attrs.get("set_point_kpa", 200.0)) * (1 - 0.02 * demand(h)),
        "methane_lel": lambda: 0.0,
        "water_pressure": lambda: 0.34 - 0.05 * demand(h),
        "water_flow": lambda: 40 * demand(h),
        "supply_temp": lambda: supply,
        "return_temp": lambda: supply - 14,
        "supply_pressure": lambda: 0.62,
        "return_pressure": lambda: 0.32,
        "outdoor_temp": lambda: outdoor(h),
        "indoor_temp": lambda: 20.5 + 0.8 * _wave(h, 17),
    }
    value = models[key]()
    noise = GAS_NOISE * float(attrs.get("set_point_kpa", 200.0)) if key == "gas_pressure" else NOISE[key]
    return clamp(key, value + rng.gauss(0, noise))


def clamp(key: str, value: float) -> float:
    """Within the metric's physical range, quantised to its resolution."""
    spec = metric(key)
    steps = round(min(spec.high, max(spec.low, value)) / spec.step)
    return round(steps * spec.step, spec.precision)
