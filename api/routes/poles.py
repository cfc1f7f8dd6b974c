"""Smart poles (一杆多感): one pole, many departments' sensors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import ActorDep, ConnDep
from api.routes.filters import department_code, division_subtree, parse_bbox
from api.schemas import Created, Page
from registry import queries, service
from registry.models import Pole, PoleIn, PolePatch, Status, Terminal

router = APIRouter(prefix="/api/v1/poles", tags=["poles"])


@router.get("", response_model=Page[Pole])
def list_poles(
    conn: ConnDep,
    division: Annotated[str | None, Query(description="division code; matches its whole subtree")] = None,
    department: str | None = None,
    status: Status | None = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[Pole]:
    search = queries.Search(
        division=division_subtree(conn, division), department=department_code(conn, department),
        status=status.value if status else None,
        bbox=parse_bbox(bbox), q=q, after=after,
    )
    rows = queries.search_poles(conn, search, limit + 1)
    next_cursor = rows[limit - 1].code if len(rows) > limit else None
    return Page[Pole](data=rows[:limit], next=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created)
def create_pole(conn: ConnDep, actor: ActorDep, item: PoleIn) -> Created:
    with conn.transaction():
        return Created(code=service.create_pole(conn, item, actor))


@router.get("/{code}", response_model=Pole)
def get_pole(conn: ConnDep, code: str) -> Pole:
    return service.require_pole(conn, code)


@router.get("/{code}/terminals", response_model=list[Terminal])
def pole_terminals(conn: ConnDep, code: str) -> list[Terminal]:
    """Every terminal the pole carries, whichever department stewards it."""
    pole = service.require_pole(conn, code)
    return queries.search_terminals(conn, queries.Search(pole=pole.code), limit=10_000)


@router.patch("/{code}", response_model=Pole)
def update_pole(conn: ConnDep, actor: ActorDep, code: str, patch: PolePatch) -> Pole:
    """Change some fields; a pole that moves takes its terminals with it."""
    with conn.transaction():
        service.update_pole(conn, code, patch, actor)
    return service.require_pole(conn, code)


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_pole(conn: ConnDep, actor: ActorDep, code: str) -> Response:
    with conn.transaction():
        service.delete_pole(conn, code, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
