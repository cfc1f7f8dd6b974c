"""Divisions, departments, terminal kinds and metrics."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import PlatformAdmin
from api.deps import ConnDep
from api.schemas import Created
from devices import METRICS
from registry import divisions, queries
from registry.errors import NotFound
from registry.models import DepartmentOut, Division, DivisionIn

router = APIRouter(prefix="/api/v1", tags=["reference"])


@router.get("/divisions", response_model=list[Division])
def list_divisions(conn: ConnDep, parent: str | None = None) -> list[Division]:
    """Suihua (231200), its ten county-level divisions, and any townships and grids added below them."""
    return queries.list_divisions(conn, parent)


@router.get("/divisions/{code}")
def get_division(conn: ConnDep, code: str) -> dict:
    """One division as a GeoJSON Feature with its boundary (WGS84)."""
    division = queries.get_division(conn, code)
    if division is None:
        raise NotFound(f"division {code} does not exist", field="code")
    boundary = division.pop("boundary")
    return {"type": "Feature", "id": code, "geometry": boundary, "properties": division}


@router.post("/divisions", status_code=status.HTTP_201_CREATED, response_model=Created)
def add_division(conn: ConnDep, who: PlatformAdmin, item: DivisionIn) -> Created:
    """Add a township (9 digits) below a county, or a grid (12 digits) below a township (platform admin)."""
    with conn.transaction():
        divisions.add_division(conn, item, who.actor())
    return Created(code=item.code)


@router.get("/departments", response_model=list[DepartmentOut])
def list_departments(conn: ConnDep) -> list[DepartmentOut]:
    return queries.list_departments(conn)


@router.get("/kinds")
def list_kinds(conn: ConnDep) -> list[dict]:
    """Terminal kinds with their class code, usual steward, metrics and expected interval."""
    return queries.list_kinds(conn)


@router.get("/metrics")
def list_metrics() -> list[dict]:
    """The metric catalogue: key (HJ 212 code where one exists), unit and physical range."""
    return [m.__dict__ for m in METRICS]
