"""Divisions, departments, terminal kinds and metrics."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.auth import PlatformAdmin
from api.deps import ConnDep
from api.geojson import DivisionFeature
from api.schemas import Created, Page
from devices import METRICS
from registry import departments, divisions, queries
from registry.errors import NotFound
from registry.models import DepartmentChange, DepartmentIn, DepartmentOut, Division, DivisionIn

router = APIRouter(prefix="/api/v1", tags=["reference"])


class Kind(BaseModel):
    key: str = Field(description="e.g. water_quality_station")
    name: str
    name_zh: str
    class_code: str = Field(description="the two digits of the city code that name the kind")
    steward: str = Field(description="the department that usually stewards it")
    metrics: list[str] = Field(description="metric keys it reports by default")
    interval_s: int = Field(description="expected reporting interval, seconds")


class Metric(BaseModel):
    key: str = Field(description="HJ 212 code where one exists, e.g. w01009")
    name: str
    name_zh: str
    unit: str = Field(description="empty for a dimensionless quantity (pH)")
    low: float = Field(description="physical range: values below are refused")
    high: float = Field(description="physical range: values above are refused")
    precision: int = Field(description="decimals the value is shown with")
    hj212: str | None = Field(description="HJ 212-2017 code, if any")
    resolution: float | None = Field(description="the usual instrument's smallest step (default 10^-precision)")
    resting: list[float] = Field(description="values a healthy sensor may read all day (no flat-line alert)")
    flat_after_h: float | None = Field(description="hours after which a flat line is suspicious; null: held "
                                                   "constant on purpose")
    drift_per_h: float | None = Field(description="a steadier change per hour is sensor drift; null: no drift test")


@router.get("/divisions", response_model=Page[Division])
def list_divisions(conn: ConnDep, parent: str | None = None) -> Page[Division]:
    """Suihua (231200), its ten county-level divisions, and any townships and grids added below them; the whole
    list in one page (`next` is null)."""
    return Page[Division](data=queries.list_divisions(conn, parent), next=None)


@router.get("/divisions/{code}", response_model=DivisionFeature)
def get_division(conn: ConnDep, code: str) -> DivisionFeature:
    """One division as a GeoJSON Feature with its boundary (WGS84)."""
    division = queries.get_division(conn, code)
    if division is None:
        raise NotFound(f"division {code} does not exist", field="code")
    boundary = division.pop("boundary")
    return DivisionFeature(id=code, geometry=boundary, properties=division)


@router.post("/divisions", status_code=status.HTTP_201_CREATED, response_model=Created)
def add_division(conn: ConnDep, who: PlatformAdmin, item: DivisionIn) -> Created:
    """Add a township (9 digits) below a county, or a grid (12 digits) below a township (platform admin)."""
    with conn.transaction():
        divisions.add_division(conn, item, who.actor())
    return Created(code=item.code)


@router.get("/departments", response_model=Page[DepartmentOut])
def list_departments(conn: ConnDep) -> Page[DepartmentOut]:
    """The departments sharing the platform, the whole list in one page (`next` is null)."""
    return Page[DepartmentOut](data=queries.list_departments(conn), next=None)


@router.post("/departments", status_code=status.HTTP_201_CREATED, response_model=DepartmentOut)
def add_department(conn: ConnDep, who: PlatformAdmin, item: DepartmentIn) -> DepartmentOut:
    """Add a department sharing the platform (platform admin; audited). Its steward admins are then added as
    accounts of it; alerts reach it for its own terminals and by grants (routes by bureau are the seed's)."""
    with conn.transaction():
        return departments.add_department(conn, item, who.actor())


@router.patch("/departments/{code}", response_model=DepartmentOut)
def rename_department(conn: ConnDep, who: PlatformAdmin, code: str, change: DepartmentChange) -> DepartmentOut:
    """Rename a department (its name, English name or aliases; the code stays), or disable or enable it
    (platform admin; audited). A disabled department takes no new terminals, poles, accounts or grants, and its
    accounts stop working at once; what it has stays, to be moved to another department."""
    with conn.transaction():
        return departments.change_department(conn, code, change, who.actor())


@router.get("/kinds", response_model=Page[Kind])
def list_kinds(conn: ConnDep) -> Page[Kind]:
    """Terminal kinds with their class code, usual steward, metrics and expected interval; the whole catalogue in
    one page (`next` is null)."""
    return Page[Kind](data=queries.list_kinds(conn), next=None)


@router.get("/metrics", response_model=Page[Metric])
def list_metrics() -> Page[Metric]:
    """The metric catalogue: key (HJ 212 code where one exists), unit and physical range; the whole catalogue in
    one page (`next` is null)."""
    return Page[Metric](data=[Metric(**m.__dict__) for m in METRICS], next=None)
