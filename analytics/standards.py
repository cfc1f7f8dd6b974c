"""Standards as data, each version with the date it takes effect (values: shared/reference/standards.md).

A rule asks ``limits(...)`` for the version in force at the observation time, so a revised
standard applies from its date and history keeps being judged by the old one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CLASSES = ("I", "II", "III", "IV", "V")


@dataclass(frozen=True)
class Version:
    name: str
    effective: dt.date
    data: dict


# GB 3838-2002 Table 1: upper limits (DO and pH: see below) per class I..V, mg/L.
GB3838 = (
    Version("GB 3838-2002", dt.date(2002, 6, 1), {
        "w01019": (2, 4, 6, 10, 15),            # permanganate index
        "w01018": (15, 15, 20, 30, 40),         # COD
        "w21003": (0.15, 0.5, 1.0, 1.5, 2.0),   # ammonia nitrogen
        "w21011": (0.02, 0.1, 0.2, 0.3, 0.4),   # total phosphorus, rivers
        "w21011:lake": (0.01, 0.025, 0.05, 0.1, 0.2),
        "w21001:lake": (0.2, 0.5, 1.0, 1.5, 2.0),  # total nitrogen applies to lakes and reservoirs
        "w01009": (7.5, 6, 5, 3, 2),            # dissolved oxygen: lower limits
        "w01001": (6, 9),                       # pH range, every class
    }),
)

# GB 18918-2002 Table 1, daily means (mg/L), for grades 1A and 1B.
GB18918 = (
    Version("GB 18918-2002", dt.date(2003, 7, 1), {
        "1A": {"w01018": 50, "w21001": 15, "w21003": 5, "w21003:cold": 8, "w21011": 0.5, "w21011:old": 1.0},
        "1B": {"w01018": 60, "w21001": 20, "w21003": 8, "w21003:cold": 15, "w21011": 1.0, "w21011:old": 1.5},
        "pH": (6, 9),
        "cold_c": 12.0,                 # water temperature at or below which the bracketed NH3-N limit applies
        "old_plant_before": dt.date(2006, 1, 1),
    }),
)

GAS = (
    Version("gas practice (GB 50028 classes; GB/T 50493 §5.5.2 detector levels)", dt.date(2006, 1, 1), {
        "high_factor": 1.15, "low_factor": 0.85,    # around the regulator set point unless the ledger says otherwise
        "drop_per_min": 0.05,                       # a fall faster than 5 % of the set point per minute
        "lel_level1": 20.0, "lel_level2": 50.0,
    }),
)

WATER = (
    Version("CJ/T 316-2009 §6.2 (end pressure 0.14 MPa); MNF 02:00-04:00", dt.date(2009, 10, 1), {
        "min_service_mpa": 0.14, "night_start_h": 2, "night_end_h": 4,
    }),
)

HEATING = (
    Version("CJJ 34-2010 secondary network; Heilongjiang indoor 18 °C", dt.date(2010, 1, 1), {
        "supply_max_c": 95.0, "supply_pressure_max_mpa": 1.6, "return_pressure_min_mpa": 0.05,
        "indoor_min_c": 18.0, "season_start": (10, 20), "season_end": (4, 20),
    }),
)


def in_force(versions: tuple[Version, ...], on: dt.date) -> Version:
    """The newest version effective on ``on`` (the oldest when none is yet)."""
    current = versions[0]
    for version in versions:
        if version.effective <= on:
            current = version
    return current


def river_class(metric: str, value: float, water_body: str, on: dt.date) -> int | None:
    """The GB 3838 class (1..5, 6 = worse than V) a value meets, or None when the metric has no class."""
    table = in_force(GB3838, on).data
    if metric == "w01009":
        return next((i + 1 for i, low in enumerate(table["w01009"]) if value >= low), 6)
    key = f"{metric}:lake" if water_body == "lake" and f"{metric}:lake" in table else metric
    limits = table.get(key)
    if limits is None or key == "w01001" or (metric == "w21001" and water_body != "lake"):
        return None
    return next((i + 1 for i, high in enumerate(limits) if value <= high), 6)


def class_name(index: int) -> str:
    return CLASSES[index - 1] if index <= 5 else "worse than V (劣V类)"


def heating_season(on: dt.date) -> bool:
    start, end = in_force(HEATING, on).data["season_start"], in_force(HEATING, on).data["season_end"]
    return (on.month, on.day) >= start or (on.month, on.day) < end
