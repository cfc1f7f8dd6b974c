"""Known static heat sources: a satellite hotspot within one's radius is industry, not a straw fire."""

from __future__ import annotations

from typing import Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from registry.errors import Conflict, Invalid, NotFound
from registry.lookups import division_index


class HeatSourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    kind: Literal["power_plant", "factory", "flare", "boiler", "other"]
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(default=1000, gt=0, le=10_000, description="hotspots this close are dropped")
    note: str | None = Field(default=None, max_length=500)


def add(conn: psycopg.Connection, item: HeatSourceIn) -> dict:
    division = division_index(conn).locate(item.lon, item.lat)
    if division is None:
        raise Invalid(f"{item.lat}, {item.lon} is outside Suihua's divisions", field="lat")
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                """
                insert into heat_source (name, kind, lat, lon, radius_m, division_code, note)
                values (%s, %s, %s, %s, %s, %s, %s) returning *
                """,
                (item.name, item.kind, item.lat, item.lon, item.radius_m, division, item.note),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"a heat source named {item.name!r} exists already", field="name") from exc


def list_all(conn: psycopg.Connection, *, after: str | None = None, limit: int | None = None) -> list[dict]:
    """Heat sources in name order, those after the name ``after``; at most ``limit``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("select * from heat_source where %(after)s::text is null or name > %(after)s "
                           "order by name limit %(limit)s", {"after": after, "limit": limit}).fetchall()


def remove(conn: psycopg.Connection, source_id: int) -> None:
    if conn.execute("delete from heat_source where id = %s", (source_id,)).rowcount == 0:
        raise NotFound(f"heat source {source_id} does not exist", field="id")
