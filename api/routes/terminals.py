"""Terminals: every sensing device in the ledger."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse

from api.auth import Reader, Steward, owned_department, writable_terminal
from api.deps import ConnDep
from api.geojson import TerminalCollectionPage, geojson_response
from api.routes.filters import TerminalSearch
from api.schemas import Created, Page
from registry import exporter, queries, service
from registry.lookups import terminal_kind
from registry.models import Terminal, TerminalIn, TerminalPatch

router = APIRouter(prefix="/api/v1/terminals", tags=["terminals"])

Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("", response_model=Page[Terminal], responses={200: geojson_response(TerminalCollectionPage)})
def list_terminals(
    conn: ConnDep, search: TerminalSearch, limit: Limit = 100, count: bool = False,
    format: Literal["json", "geojson"] = "json",
):
    """Search terminals, ordered by city code, one page at a time."""
    rows = queries.search_terminals(conn, search, limit + 1)
    next_cursor = rows[limit - 1].code if len(rows) > limit else None
    rows = rows[:limit]
    total = queries.count_terminals(conn, search) if count else None
    if format == "geojson":
        body = exporter.to_geojson(rows) | {"next": next_cursor, "count": total}
        return JSONResponse(body, media_type="application/geo+json")
    return Page[Terminal](data=rows, next=next_cursor, count=total)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created)
def create_terminal(conn: ConnDep, who: Steward, item: TerminalIn) -> Created:
    """Register a terminal; a city code is issued when none is given. A steward admin registers its own
    department's terminals (the default department); the platform admin any department's."""
    item.department = owned_department(conn, who, item.department, terminal_kind(item.kind).steward)
    with conn.transaction():
        return Created(code=service.create_terminal(conn, item, who.actor()))


@router.get("/{code}", response_model=Terminal)
def get_terminal(conn: ConnDep, who: Reader, code: str) -> Terminal:
    return service.require_terminal(conn, code, who.scope)


@router.patch("/{code}", response_model=Terminal)
def update_terminal(conn: ConnDep, who: Steward, code: str, patch: TerminalPatch) -> Terminal:
    """Change some fields; moving to another pole moves the terminal to it unless a location is given."""
    current = writable_terminal(conn, who, code)
    if patch.department is not None:
        patch.department = owned_department(conn, who, patch.department, current.department)
    with conn.transaction():
        service.update_terminal(conn, code, patch, who.actor())
    return service.require_terminal(conn, code, who.scope)


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_terminal(conn: ConnDep, who: Steward, code: str) -> Response:
    """Remove a terminal from the ledger (prefer status=retired to keep its history readable)."""
    writable_terminal(conn, who, code)
    with conn.transaction():
        service.delete_terminal(conn, code, who.actor())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
