"""The instruments behind the simulated readings: their working range and how fast a healthy one may drift,
so that a simulated drift fault creeps at a rate a real failing instrument would, not at a share of the
protocol's plausibility range (HJ 212 allows ammonia up to 300 mg/L; a river station's analyser works on
0–10 mg/L).

Allowances are the 24-hour zero/span drift the online-analyser norms accept, as commonly cited (check the
primary text before quoting them elsewhere): ±5 % F.S. for the wet-chemistry analysers (HJ/T 100–103-2003
permanganate, ammonia, total nitrogen and phosphorus; HJ 377 COD), ±3 % F.S. turbidity (HJ/T 98), ±1 % F.S.
conductivity (HJ/T 97). Field transmitters (level, pressure) have no such norm; 1 % F.S. per 24 h is taken, far
looser than their datasheets' yearly stability, so the faults stay visible. A drift *fault* is an instrument
using up its daily allowance every ``FAULT_HOURS_PER_ALLOWANCE`` hours (a fouled electrode, ageing reagent,
a damaged membrane): the rate the daily zero/span check of HJ 355 would reject.
"""

from __future__ import annotations

from dataclasses import dataclass

FAULT_HOURS_PER_ALLOWANCE = 2.0
"""A drift fault uses up the norm's 24-hour allowance in this many hours (twelve times the allowed rate)."""


@dataclass(frozen=True)
class Instrument:
    low: float
    high: float
    drift_per_day: float
    """The norm's 24-hour drift allowance, a share of the span (``high - low``)."""

    @property
    def fault_drift_per_h(self) -> float:
        """How fast a failing instrument of this kind creeps, in the metric's unit per hour."""
        return (self.high - self.low) * self.drift_per_day / FAULT_HOURS_PER_ALLOWANCE


_ANALYSER = 0.05
_TRANSMITTER = 0.01
_RIVER = {
    "w01003": Instrument(0, 1000, 0.03), "w01019": Instrument(0, 20, _ANALYSER), "w21003": Instrument(0, 10, _ANALYSER),
    "w21011": Instrument(0, 2, _ANALYSER), "w21001": Instrument(0, 10, _ANALYSER),
}
_SEWAGE = {
    "w01018": Instrument(0, 500, _ANALYSER), "w21003": Instrument(0, 50, _ANALYSER),
    "w21011": Instrument(0, 10, _ANALYSER), "w21001": Instrument(0, 50, _ANALYSER),
}
_OTHER = {
    "water_level": Instrument(0, 10, _TRANSMITTER),
    "supply_pressure": Instrument(0, 1.6, _TRANSMITTER), "return_pressure": Instrument(0, 1.6, _TRANSMITTER),
}
_BY_KIND = {"water_quality_station": _RIVER, "sewage_outlet_analyser": _SEWAGE}


def instrument(kind: str, key: str) -> Instrument | None:
    """The usual instrument measuring ``key`` on a terminal of ``kind``; None where no drift fault is modelled
    (a quantity whose own changes are as fast as a failing instrument's creep: no test could tell them apart)."""
    return _BY_KIND.get(kind, _OTHER).get(key)
