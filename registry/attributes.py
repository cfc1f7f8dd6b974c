"""The attributes that bind a terminal to its standard, one model per kind.

A water-quality station names its river, its chainage and the GB 3838 class its
section must meet; a sewage outlet its plant's GB 18918 grade and build year; a gas
pressure point its GB 50028 pressure class and regulator set point; a camera its pose.
Rules (and fire location) read these; the ledger refuses values that make no sense.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from registry.errors import Invalid


class _Attrs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiverStationAttrs(_Attrs):
    river: str = Field(min_length=1, max_length=64, description="river name, e.g. 呼兰河")
    chainage_km: float = Field(ge=0, le=3000, description="distance along the river from its source, km")
    target_class: Literal["I", "II", "III", "IV", "V"] = Field(description="GB 3838-2002 class the section must meet")
    water_body: Literal["river", "lake"] = Field(default="river", description="TP limits differ for lakes")


class WaterLevelAttrs(_Attrs):
    river: str | None = Field(default=None, max_length=64)
    chainage_km: float | None = Field(default=None, ge=0, le=3000)
    warning_level_m: float | None = Field(default=None, description="flood warning stage, m")


class SewageOutletAttrs(_Attrs):
    plant: str = Field(min_length=1, max_length=128, description="sewage plant name")
    grade: Literal["1A", "1B"] = Field(description="GB 18918-2002 discharge grade")
    build_year: int = Field(ge=1950, le=2100, description="sets the TP limit (plants built before 2006)")


class GasPressureClass(StrEnum):
    low = "low"
    medium_b = "medium_b"
    medium_a = "medium_a"
    sub_high_b = "sub_high_b"
    sub_high_a = "sub_high_a"
    high_b = "high_b"
    high_a = "high_a"


# GB 50028 Table 6.1.6, gauge pressure in kPa: (lowest, highest) of each class.
GAS_CLASS_KPA: dict[GasPressureClass, tuple[float, float]] = {
    GasPressureClass.low: (0, 10),
    GasPressureClass.medium_b: (10, 200),
    GasPressureClass.medium_a: (200, 400),
    GasPressureClass.sub_high_b: (400, 800),
    GasPressureClass.sub_high_a: (800, 1600),
    GasPressureClass.high_b: (1600, 2500),
    GasPressureClass.high_a: (2500, 4000),
}


class GasPressureAttrs(_Attrs):
    pressure_class: GasPressureClass = Field(description="GB 50028 pressure class of the pipe")
    set_point_kpa: float = Field(gt=0, le=4000, description="regulator set point, kPa gauge")
    high_kpa: float | None = Field(default=None, gt=0, le=4000, description="alert above (default set point +15 %)")
    low_kpa: float | None = Field(default=None, ge=0, le=4000, description="alert below (default set point −15 %)")

    @model_validator(mode="after")
    def _set_point_in_class(self) -> GasPressureAttrs:
        low, high = GAS_CLASS_KPA[self.pressure_class]
        if not low <= self.set_point_kpa <= high:
            raise ValueError(
                f"set point {self.set_point_kpa} kPa is outside the {self.pressure_class} class ({low}–{high} kPa)"
            )
        return self


class PresetPose(_Attrs):
    """Where a PTZ camera looks at one of its presets."""
    preset: int = Field(ge=0, le=255)
    heading_deg: float = Field(ge=0, lt=360)
    tilt_deg: float = Field(ge=-90, le=30)
    hfov_deg: float | None = Field(default=None, gt=0, le=180, description="zoom; the camera's own when absent")
    tilt_error_deg: float | None = Field(default=None, gt=0, le=10, description="the camera's own when absent")


class CameraPose(_Attrs):
    mast_height_m: float = Field(gt=0, le=300, description="camera height above ground, m")
    heading_deg: float = Field(ge=0, lt=360, description="bearing of the optical axis, degrees from north")
    tilt_deg: float = Field(ge=-90, le=30, description="negative looks down")
    hfov_deg: float = Field(gt=0, le=180, description="horizontal field of view")
    tilt_error_deg: float | None = Field(default=None, gt=0, le=10,
                                         description="how far the tilt may be off, degrees (default 0.5): sets how far "
                                                     "out the fire worker looks for far fires, mast / tan(error)")
    preset: int | None = Field(default=None, ge=0, le=255)
    presets: list[PresetPose] | None = Field(default=None, max_length=256,
                                             description="per-preset heading, tilt and zoom of a PTZ camera")

    @model_validator(mode="after")
    def _presets_unique(self) -> CameraPose:
        numbers = [p.preset for p in self.presets or []]
        if len(numbers) != len(set(numbers)):
            raise ValueError("a preset is listed twice")
        return self


class WaterPressureAttrs(_Attrs):
    district: str | None = Field(default=None, max_length=64, description="metered district (DMA)")
    min_service_mpa: float = Field(default=0.14, gt=0, le=1.0, description="minimum service pressure")


class DistrictFlowAttrs(_Attrs):
    district: str = Field(min_length=1, max_length=64, description="metered district (DMA) this meter feeds")
    night_allowance_m3h: float = Field(ge=0, le=10000, description="allowed minimum night flow, m³/h")


class HeatingAttrs(_Attrs):
    substation: str = Field(min_length=1, max_length=64)


class IndoorAttrs(_Attrs):
    substation: str | None = Field(default=None, max_length=64)
    building: str | None = Field(default=None, max_length=128)


class NoAttrs(_Attrs):
    """Kinds with nothing to bind."""


ATTRS_BY_KIND: dict[str, type[_Attrs]] = {
    "water_quality_station": RiverStationAttrs,
    "water_level_gauge": WaterLevelAttrs,
    "sewage_outlet_analyser": SewageOutletAttrs,
    "gas_pressure_sensor": GasPressureAttrs,
    "methane_detector": NoAttrs,
    "water_pressure_point": WaterPressureAttrs,
    "district_flow_meter": DistrictFlowAttrs,
    "heating_substation_sensor": HeatingAttrs,
    "indoor_temp_sensor": IndoorAttrs,
    "video_camera": CameraPose,
    "thermal_camera": CameraPose,
    "air_sensor": NoAttrs,
}
OPTIONAL_ATTRS = frozenset({"video_camera", "thermal_camera", "water_level_gauge", "indoor_temp_sensor"})
"""Kinds that may be registered without attributes (a camera without a pose is still a camera)."""


def validate_attrs(kind: str, attrs: dict) -> dict:
    """The attributes checked against the kind's model, as plain JSON; raises ``Invalid``."""
    model = ATTRS_BY_KIND[kind]
    if not attrs and kind in OPTIONAL_ATTRS:
        return {}
    try:
        return model.model_validate(attrs).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise Invalid(f"attrs for a {kind}: {_first_errors(exc)}", field="attrs") from exc


def _first_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:4]:
        where = ".".join(str(p) for p in error["loc"]) or "attrs"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
