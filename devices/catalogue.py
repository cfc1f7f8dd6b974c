"""The metric catalogue and the kinds of sensing terminal, kept as data.

Water and air quantities use their HJ 212-2017 factor codes as keys, so loggers and
MQTT devices name them the same way; gas, water-supply and heating quantities have
named keys. Ranges are physical plausibility bounds (a value outside is a device or
transport fault), not regulatory limits, which live with the rules.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    key: str
    name: str
    name_zh: str
    unit: str
    low: float
    high: float
    precision: int
    hj212: str | None = None
    resolution: float | None = None
    """The smallest step the usual instrument reports (default ``10 ** -precision``)."""
    resting: tuple[float, ...] = ()
    """Values a healthy sensor may read for a whole day (methane in clean air, no flow at night)."""
    flat_after_h: float | None = 6.0
    """How long a live signal is never flat to within its resolution; a longer flat line suggests a stuck
    sensor. None: the quantity is held constant on purpose (a regulated pressure), so a flat line is normal."""
    drift_per_h: float | None = None
    """A steady change faster than this (unit per hour), sustained over the drift window, is no change of the live
    quantity but a sensor creeping away from the truth (``device:drift``). None: the quantity itself changes as
    fast (weather, air quality, dissolved oxygen's daily swing, a network pressure following demand) or a steady
    rise is the bureau's (methane building up), so only a neighbour could tell: no drift test."""

    @property
    def step(self) -> float:
        return self.resolution if self.resolution is not None else 10.0 ** -self.precision

    def at_rest(self, value: float) -> bool:
        return any(abs(value - rest) < self.step / 2 for rest in self.resting)


@dataclass(frozen=True)
class TerminalKind:
    key: str
    name: str
    name_zh: str
    class_code: str
    """Two digits of the city code that name this kind of terminal."""
    steward: str
    """Department code that usually stewards this kind."""
    metrics: tuple[str, ...]
    interval_s: int
    """Expected reporting interval, seconds."""
    drift_per_h: tuple[tuple[str, float], ...] = ()
    """(metric, limit) pairs replacing ``MetricSpec.drift_per_h`` for this kind: its analysers work on a wider range
    (a sewage outlet's ammonia on 0–50 mg/L, a river station's on 0–10 mg/L) and its live values move faster."""


METRICS: tuple[MetricSpec, ...] = (
    # Surface and waste water (HJ 212 codes)
    MetricSpec("w01001", "pH", "pH值", "", 0, 14, 2, "w01001", drift_per_h=0.2),
    MetricSpec("w01009", "dissolved oxygen", "溶解氧", "mg/L", 0, 20, 2, "w01009"),
    MetricSpec("w01010", "water temperature", "水温", "°C", -5, 45, 1, "w01010", flat_after_h=12, drift_per_h=0.4),
    MetricSpec("w01003", "turbidity", "浑浊度", "NTU", 0, 4000, 1, "w01003", drift_per_h=10),
    MetricSpec("w01014", "conductivity", "电导率", "µS/cm", 0, 20000, 0, "w01014", drift_per_h=50),
    MetricSpec("w01018", "COD", "化学需氧量", "mg/L", 0, 5000, 1, "w01018", drift_per_h=6),
    MetricSpec("w01019", "permanganate index", "高锰酸盐指数", "mg/L", 0, 200, 2, "w01019", drift_per_h=0.25),
    MetricSpec("w21003", "ammonia nitrogen", "氨氮", "mg/L", 0, 300, 3, "w21003", drift_per_h=0.15),
    MetricSpec("w21011", "total phosphorus", "总磷", "mg/L", 0, 50, 3, "w21011", drift_per_h=0.025),
    MetricSpec("w21001", "total nitrogen", "总氮", "mg/L", 0, 300, 2, "w21001", drift_per_h=0.125),
    MetricSpec("w00000", "waste water flow", "污水流量", "m³/h", 0, 100000, 1, "w00000", resting=(0.0,),
               drift_per_h=500),
    MetricSpec("water_level", "water level", "水位", "m", -10, 500, 2, flat_after_h=12, drift_per_h=0.025),
    # Air (HJ 212 codes)
    MetricSpec("a34004", "PM2.5", "细颗粒物", "µg/m³", 0, 2000, 0, "a34004"),
    MetricSpec("a34002", "PM10", "可吸入颗粒物", "µg/m³", 0, 3000, 0, "a34002"),
    MetricSpec("a01001", "air temperature", "温度", "°C", -55, 50, 1, "a01001"),
    MetricSpec("a01002", "relative humidity", "湿度", "%", 0, 100, 0, "a01002", resting=(100.0,), flat_after_h=12),
    # Gas network
    MetricSpec("gas_pressure", "gas pressure", "燃气压力", "kPa", 0, 4000, 2, flat_after_h=3, drift_per_h=10),
    MetricSpec("methane_lel", "methane", "甲烷浓度", "%LEL", 0, 100, 1, resolution=1.0, resting=(0.0,)),
    # Water supply
    MetricSpec("water_pressure", "water pressure", "供水压力", "MPa", 0, 1.6, 3),
    MetricSpec("water_flow", "water flow", "供水流量", "m³/h", 0, 20000, 2, resting=(0.0,), drift_per_h=60),
    # District heating
    MetricSpec("supply_temp", "supply temperature", "供水温度", "°C", -10, 150, 1, drift_per_h=2.4),
    MetricSpec("return_temp", "return temperature", "回水温度", "°C", -10, 150, 1, drift_per_h=2.4),
    MetricSpec("supply_pressure", "supply pressure", "供水压力", "MPa", 0, 2.5, 3, flat_after_h=None,
               drift_per_h=0.004),
    MetricSpec("return_pressure", "return pressure", "回水压力", "MPa", 0, 2.5, 3, flat_after_h=None,
               drift_per_h=0.004),
    MetricSpec("indoor_temp", "indoor temperature", "室内温度", "°C", -30, 45, 1, flat_after_h=12, drift_per_h=0.8),
    MetricSpec("outdoor_temp", "outdoor temperature", "室外温度", "°C", -55, 45, 1),
)

KINDS: tuple[TerminalKind, ...] = (
    TerminalKind(
        "water_quality_station", "water-quality station", "水质自动监测站", "21", "sthjj",
        ("w01001", "w01009", "w01010", "w01003", "w01014", "w01019", "w21003", "w21011", "w21001"), 1800,
    ),
    TerminalKind(
        "sewage_outlet_analyser", "sewage outlet analyser", "污水排放口在线监测仪", "22", "sthjj",
        ("w00000", "w01001", "w01010", "w01018", "w21003", "w21011", "w21001"), 600,
        (("w21003", 0.5), ("w21001", 0.5), ("w21011", 0.1)),
    ),
    TerminalKind("water_level_gauge", "water-level gauge", "水位监测站", "23", "swj", ("water_level",), 600),
    TerminalKind("air_sensor", "air/PM sensor", "空气质量监测微站", "24", "sthjj",
                 ("a34004", "a34002", "a01001", "a01002"), 300),
    TerminalKind("gas_pressure_sensor", "gas pressure sensor", "燃气管网压力监测", "31", "zjj", ("gas_pressure",), 60),
    TerminalKind("methane_detector", "methane detector", "可燃气体探测器", "32", "zjj", ("methane_lel",), 60),
    TerminalKind("water_pressure_point", "water pressure point", "供水管网压力监测点", "41", "swj",
                 ("water_pressure",), 300),
    TerminalKind("district_flow_meter", "district flow meter", "分区计量流量计", "42", "swj",
                 ("water_flow", "water_pressure"), 300),
    TerminalKind(
        "heating_substation_sensor", "heating substation sensor", "换热站监测", "51", "zjj",
        ("supply_temp", "return_temp", "supply_pressure", "return_pressure", "outdoor_temp"), 300,
    ),
    TerminalKind("indoor_temp_sensor", "indoor temperature sensor", "室温采集器", "52", "zjj", ("indoor_temp",), 900),
    TerminalKind("video_camera", "video camera", "视频监控摄像机", "61", "sthjj", (), 60),
    TerminalKind("thermal_camera", "thermal camera", "热成像摄像机", "62", "sthjj", (), 60),
)

_METRICS_BY_KEY = {m.key: m for m in METRICS}
_KINDS_BY_KEY = {k.key: k for k in KINDS}


def metric(key: str) -> MetricSpec | None:
    """The metric with this key, or None."""
    return _METRICS_BY_KEY.get(key)


def kind(key: str) -> TerminalKind | None:
    """The terminal kind with this key, or None."""
    return _KINDS_BY_KEY.get(key)


def drift_limit(kind_key: str, metric_key: str) -> float | None:
    """The drift test's limit (unit per hour) for ``metric_key`` on a terminal of ``kind_key``: the kind's own, else
    the metric's; None when the metric has no drift test."""
    found = kind(kind_key)
    own = dict(found.drift_per_h) if found is not None else {}
    spec = metric(metric_key)
    return own.get(metric_key, spec.drift_per_h if spec is not None else None)
