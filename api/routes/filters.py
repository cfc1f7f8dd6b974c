"""Query parameters shared by the terminal and pole lists and the exports."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import Depends, Query

from api.auth import Reader
from api.deps import ConnDep
from registry import codes, queries
from registry.errors import Invalid
from registry.lookups import terminal_kind
from registry.models import Status
from registry.queries import Search


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise Invalid(f"bbox must be min_lon,min_lat,max_lon,max_lat, got {text!r}", field="bbox") from exc
    if min_lon > max_lon or min_lat > max_lat:
        raise Invalid(f"bbox {text!r} has its minimum above its maximum", field="bbox")
    return min_lon, min_lat, max_lon, max_lat


def division_subtree(conn: psycopg.Connection, code: str | None) -> list[str] | None:
    if code is None:
        return None
    subtree = queries.division_subtree(conn, code)
    if not subtree:
        raise Invalid(f"division {code!r} is unknown", field="division")
    return subtree


def department_code(conn: psycopg.Connection, value: str | None) -> str | None:
    if value is None:
        return None
    row = conn.execute(
        "select code from department where code = %(v)s or name = %(v)s or %(v)s = any(aliases)", {"v": value}
    ).fetchone()
    if row is None:
        raise Invalid(f"department {value!r} is unknown", field="department")
    return row[0]


def terminal_search(
    conn: ConnDep,
    who: Reader,
    division: Annotated[str | None, Query(description="division code; matches its whole subtree")] = None,
    department: Annotated[str | None, Query(description="steward department, code or name")] = None,
    kind: Annotated[str | None, Query(description="terminal kind key or Chinese name")] = None,
    pole: Annotated[str | None, Query(description="city code of the host pole")] = None,
    status: Status | None = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84)")] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=100, description="code prefix or text in name/address")
    ] = None,
    readable_by: Annotated[str | None, Query(description="only terminals this department owns or was granted")] = None,
    after: Annotated[str | None, Query(description="cursor: the `next` of the previous page")] = None,
) -> Search:
    return Search(
        division=division_subtree(conn, division),
        department=department_code(conn, department),
        kind=terminal_kind(kind).key if kind else None,
        pole=codes.normalise(pole) if pole else None,
        status=status.value if status else None,
        bbox=parse_bbox(bbox),
        q=q,
        readable_by=department_code(conn, readable_by),
        visible_to=who.scope,
        after=after,
    )


TerminalSearch = Annotated[Search, Depends(terminal_search)]
