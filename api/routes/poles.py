"""Smart poles (一杆多感): one pole, many departments' sensors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.auth import Reader, Steward, owned_department, writable_pole
from api.deps import ConnDep
from api.routes.filters import department_code, division_subtree, parse_bbox
from api.routes.paging import After, Limit, page
from api.schemas import Created, Page
from registry import queries, service
from registry.models import Pole, PoleIn, PolePatch, Status, Terminal

router = APIRouter(prefix="/api/v1/poles", tags=["poles"])


@router.get("", response_model=Page[Pole])
def list_poles(
    conn: ConnDep,
    who: Reader,
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
        bbox=parse_bbox(bbox), q=q, visible_to=who.scope, after=after,
    )
    rows = queries.search_poles(conn, search, limit + 1)
    next_cursor = rows[limit - 1].code if len(rows) > limit else None
    return Page[Pole](data=rows[:limit], next=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created)
def create_pole(conn: ConnDep, who: Steward, item: PoleIn) -> Created:
    item.department = owned_department(conn, who, item.department, item.department)
    with conn.transaction():
        return Created(code=service.create_pole(conn, item, who.actor()))


@router.get("/{code}", response_model=Pole)
def get_pole(conn: ConnDep, who: Reader, code: str) -> Pole:
    return service.require_pole(conn, code, who.scope)


@router.get("/{code}/terminals", response_model=Page[Terminal])
def pole_terminals(conn: ConnDep, who: Reader, code: str, after: After = None, limit: Limit = 100) -> Page[Terminal]:
    """The terminals the pole carries that the caller reads, whichever department stewards it: in code order, one
    page at a time, as /terminals (`next` is the page's last code)."""
    pole = service.require_pole(conn, code, who.scope)
    rows = queries.search_terminals(conn, queries.Search(pole=pole.code, visible_to=who.scope, after=after), limit + 1)
    data, next_cursor = page(rows, limit, key="code")
    return Page[Terminal](data=data, next=next_cursor)


@router.patch("/{code}", response_model=Pole)
def update_pole(conn: ConnDep, who: Steward, code: str, patch: PolePatch) -> Pole:
    """Change some fields; a pole that moves takes its terminals with it."""
    current = writable_pole(conn, who, code)
    if patch.department is not None:
        patch.department = owned_department(conn, who, patch.department, current.department)
    with conn.transaction():
        service.update_pole(conn, code, patch, who.actor())
    return service.require_pole(conn, code, who.scope)


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_pole(conn: ConnDep, who: Steward, code: str) -> Response:
    writable_pole(conn, who, code)
    with conn.transaction():
        service.delete_pole(conn, code, who.actor())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
