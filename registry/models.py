"""The ledger's domain objects and the shapes a write may take."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

Scalar = str | bool | int | float | None
"""A JSON value that is not a container."""
Attrs = Annotated[dict[str, Scalar | list[dict[str, Scalar]]], Field(
    description="the attributes that bind the terminal to its standard, one set per kind (registry/attributes.py): "
                "water_quality_station river, chainage_km, target_class, water_body; sewage_outlet_analyser plant, "
                "grade, build_year; gas_pressure_sensor pressure_class, set_point_kpa, high_kpa, low_kpa; "
                "water_level_gauge river, chainage_km, warning_level_m; water_pressure_point district, "
                "min_service_mpa; district_flow_meter district, night_allowance_m3h; heating_substation_sensor "
                "substation; indoor_temp_sensor substation, building; video_camera and thermal_camera "
                "mast_height_m, heading_deg, tilt_deg, hfov_deg, tilt_error_deg, preset, presets (a list of {preset, "
                "heading_deg, tilt_deg, hfov_deg, tilt_error_deg}); other kinds none")]
"""A terminal's attributes as stored: checked against its kind's model when written."""
Snapshot = dict[str, Scalar | list[Scalar] | dict[str, Scalar | list[dict[str, Scalar]]]]
"""An object as the change log keeps it: its fields (a terminal's ``attrs`` nested), without bookkeeping."""


class Status(StrEnum):
    planned = "planned"
    active = "active"
    maintenance = "maintenance"
    retired = "retired"


class Protocol(StrEnum):
    mqtt = "mqtt"
    hj212 = "hj212"
    rtsp = "rtsp"
    http = "http"
    other = "other"


class DivisionLevel(StrEnum):
    township = "township"
    grid = "grid"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _measured_as_sent(cls, value: Any, info: ValidationInfo) -> Any:
        """A string is measured as sent, before its outer whitespace is stripped: the schema's ``maxLength`` counts
        what the client sends, and a value over it is refused, not trimmed to fit (the schema fuzz: a 101-character
        English name led by a newline was stored)."""
        field = cls.model_fields[info.field_name]
        limit = next((m.max_length for m in field.metadata if isinstance(m, annotated_types.MaxLen)), None)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError("string_too_long", "String should have at most {max_length} characters",
                                      {"max_length": limit})
        return value


def _not_null(**constraints: Any) -> Any:
    """A PATCH field that may be left out (its default is never validated nor shown) but not set to null."""
    return Field(default=None, json_schema_extra=lambda schema: schema.pop("default", None), **constraints)


class PoleIn(_In):
    """A smart pole to create or replace; ``code`` is issued when absent."""

    code: str | None = None
    name: str = Field(min_length=1, max_length=200)
    department: str = Field(description="owning department: code or name")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-180, le=180, description="WGS84; checked against the divisions")
    address: str | None = Field(default=None, max_length=300)
    install_date: dt.date | None = None
    status: Status = Status.active


class PolePatch(_In):
    """Fields left out keep their value; only address and install_date may be cleared with null."""

    name: str = _not_null(min_length=1, max_length=200)
    department: str = _not_null()
    lon: float = _not_null(ge=-180, le=180)
    lat: float = _not_null(ge=-180, le=180)
    address: str | None = Field(default=None, max_length=300)
    install_date: dt.date | None = None
    status: Status = _not_null()


class TerminalIn(_In):
    """A terminal to create or replace. Left out: ``code`` is issued, ``department`` is the kind's
    usual steward, location is the host pole's, interval and metrics are the kind's defaults."""

    code: str | None = None
    name: str = Field(min_length=1, max_length=200)
    kind: str
    department: str | None = Field(default=None, description="steward department: code or name")
    pole: str | None = Field(default=None, description="city code of the host pole")
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=300)
    install_date: dt.date | None = None
    status: Status = Status.active
    vendor: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    protocol: Protocol = Protocol.mqtt
    report_interval_s: int | None = Field(default=None, gt=0, le=86400 * 31)
    metrics: list[str] | None = None
    attrs: dict = Field(default_factory=dict)
    mn: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{1,24}$", description="HJ 212 logger MN")
    pw: str | None = Field(default=None, pattern=r"^[!-~]{1,16}$",
                           description="HJ 212 access password (PW); left out, the current one is kept")


class TerminalPatch(_In):
    """Fields left out keep their value; null means what leaving the field out of a create means (the kind's
    steward, interval or metrics, the pole's location, no address...). Name, status, protocol and attrs take no
    null."""

    name: str = _not_null(min_length=1, max_length=200)
    department: str | None = None
    pole: str | None = None
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=300)
    install_date: dt.date | None = None
    status: Status = _not_null()
    vendor: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    protocol: Protocol = _not_null()
    report_interval_s: int | None = Field(default=None, gt=0, le=86400 * 31)
    metrics: list[str] | None = None
    attrs: dict = _not_null()
    mn: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{1,24}$")
    pw: str | None = Field(default=None, pattern=r"^[!-~]{1,16}$")


class DivisionIn(_In):
    """A township or grid below an existing division."""

    code: str = Field(pattern=r"^[0-9]{9}([0-9]{3})?$")
    name: str = Field(min_length=1, max_length=100)
    name_en: str | None = None
    level: DivisionLevel
    parent: str
    boundary: dict | None = Field(default=None, description="GeoJSON Polygon or MultiPolygon, WGS84")


class GrantIn(_In):
    steward: str
    grantee: str
    kind: str | None = None
    note: str | None = Field(default=None, max_length=500)


class Pole(BaseModel):
    code: str
    name: str
    department: str
    division: str
    lon: float
    lat: float
    address: str | None
    install_date: dt.date | None
    status: Status
    terminal_count: int = 0
    created_at: dt.datetime
    updated_at: dt.datetime


class Terminal(BaseModel):
    code: str
    name: str
    kind: str
    department: str
    pole: str | None
    division: str
    lon: float
    lat: float
    address: str | None
    install_date: dt.date | None
    status: Status
    vendor: str | None
    model: str | None
    protocol: Protocol
    report_interval_s: int
    metrics: list[str]
    attrs: Attrs
    mn: str | None = None
    pw: str | None = Field(default=None, exclude=True)
    created_at: dt.datetime
    updated_at: dt.datetime


class Division(BaseModel):
    code: str = Field(description="GB/T 2260 code (9 digits for a township, 12 for a grid)")
    name: str
    name_en: str | None
    level: str = Field(description="city, district, county, county-level city, township or grid")
    parent: str | None


class DepartmentOut(BaseModel):
    code: str
    name: str
    name_en: str
    aliases: list[str]
    bureau: str
    disabled_at: dt.datetime | None = Field(default=None, description="set: it takes no new objects, accounts or "
                                            "grants, and its accounts do not work")


class Grant(BaseModel):
    id: int
    steward: str
    grantee: str
    kind: str | None
    granted_by: str
    granted_at: dt.datetime
    note: str | None


class Change(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    actor_department: str | None = None
    client: str | None = None
    batch_id: str | None
    action: str
    object_type: str
    object_code: str
    related_type: str | None
    related_code: str | None
    summary: str
    before: Snapshot | None = Field(description="the object before the change (its fields, a terminal's attrs "
                                                "nested); null for a create")
    after: Snapshot | None = Field(description="the object after it, or what the action recorded (a comment, a "
                                               "replay's window); null for a delete")


class DepartmentIn(_In):
    """A department sharing the platform (a bureau, or a unit below one)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$", description="short code, e.g. zjj (住建局)")
    name: str = Field(min_length=2, max_length=100, description="full name, e.g. 绥化市住房和城乡建设局")
    name_en: str = Field(min_length=2, max_length=100)
    aliases: list[str] = Field(default=[], max_length=10, description="short names it is also looked up by")
    bureau: Literal["environment", "housing", "water", "other"] = "other"


class DepartmentChange(_In):
    """A rename, or disabling and enabling: the code stays (objects, accounts and grants keep pointing at it)."""

    name: str = _not_null(min_length=2, max_length=100)
    name_en: str = _not_null(min_length=2, max_length=100)
    aliases: list[str] = _not_null(max_length=10)
    disabled: bool = _not_null(description="true: no new objects, accounts or grants in it, and its accounts stop "
                               "working at once; what it has stays, readable by the platform admin and the "
                               "leading group, to be handed over (moved) to another department")
