"""Townships and grids below the county-level divisions."""

from __future__ import annotations

import psycopg
import shapely
from shapely.geometry import shape

from registry import queries
from registry.changes import Actor, change_row
from registry.errors import Conflict, Invalid
from registry.lookups import forget_divisions
from registry.models import DivisionIn

_PARENT_LEVEL = {"township": ("district", "county", "county-level city"), "grid": ("township",)}
_MAX_OUTSIDE_SHARE = 0.01


def add_division(conn: psycopg.Connection, item: DivisionIn, actor: Actor) -> None:
    parent = queries.get_division(conn, item.parent)
    if parent is None:
        raise Invalid(f"parent division {item.parent!r} does not exist", field="parent")
    if parent["level"] not in _PARENT_LEVEL[item.level]:
        raise Invalid(f"a {item.level} must sit below a {' or '.join(_PARENT_LEVEL[item.level])}, "
                      f"not a {parent['level']}", field="parent")
    if not item.code.startswith(parent["code"]) or len(item.code) != len(parent["code"]) + 3:
        raise Invalid(f"code {item.code} must be the parent's code {parent['code']} and 3 more digits", field="code")
    if item.boundary is not None:
        _check_boundary(item.boundary, parent["boundary"])
    if queries.get_division(conn, item.code) is not None:
        raise Conflict(f"division {item.code} already exists", field="code")
    try:
        with conn.transaction():
            queries.insert_division(conn, {**item.model_dump(exclude={"level"}), "level": item.level.value})
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"{parent['name']} already has a division named {item.name}", field="name") from exc
    after = item.model_dump(mode="json", exclude={"boundary"})
    queries.insert_changes(conn, [change_row(actor, "create", "division", item.code, None, after,
                                             related=("division", parent["code"]))])
    forget_divisions()


def _check_boundary(boundary: dict, parent_boundary: dict | None) -> None:
    try:
        geometry = shape(boundary)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Invalid(f"boundary is not a GeoJSON geometry: {exc}", field="boundary") from exc
    if geometry.geom_type not in ("Polygon", "MultiPolygon") or not geometry.is_valid or geometry.is_empty:
        raise Invalid(f"boundary must be a valid Polygon or MultiPolygon ({shapely.is_valid_reason(geometry)})",
                      field="boundary")
    if parent_boundary is not None:
        outside = geometry.difference(shape(parent_boundary)).area
        if outside > _MAX_OUTSIDE_SHARE * geometry.area:
            raise Invalid("boundary reaches outside its parent division", field="boundary")
