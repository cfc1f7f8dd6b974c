"""Reference data every ledger starts with: Suihua's divisions, the departments
(stewards), the metric catalogue and the terminal kinds. ``seed`` upserts them, so it
runs after every migration; departments it only adds when missing: their names are then the platform admin's
(PATCH /api/v1/departments/{code}), not reverted by the next release."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from devices import KINDS, METRICS

CITY_CODE = "231200"
BOUNDARIES = Path(__file__).with_name("data") / "suihua-counties.geojson"


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    name_en: str
    bureau: str
    """Which bureau's alerts this department's terminals feed: environment, housing, water, other."""
    aliases: tuple[str, ...] = ()
    """Short names departments write in their sheets."""


DEPARTMENTS: tuple[Department, ...] = (
    Department("sthjj", "绥化市生态环境局", "Ecology and Environment Bureau", "environment", ("环保局", "生态环境局")),
    Department("zjj", "绥化市住房和城乡建设局", "Housing and Urban-Rural Development Bureau", "housing",
               ("住建局", "住房城乡建设局")),
    Department("swj", "绥化市水务局", "Water Affairs Bureau", "water", ("水务局", "水利局")),
    Department("zrzyj", "绥化市自然资源局", "Natural Resources Bureau", "other", ("自然资源局", "自然资源和规划局")),
    Department("nyncj", "绥化市农业农村局", "Agriculture and Rural Affairs Bureau", "other", ("农业农村局", "农业局")),
    Department("cgj", "绥化市城市管理综合执法局", "Urban Management Bureau", "other",
               ("城管局", "城市管理局", "城管执法局")),
    Department("yjglj", "绥化市应急管理局", "Emergency Management Bureau", "other", ("应急局", "应急管理局")),
)

ALERT_ROUTES: tuple[tuple[str, str | None, str | None], ...] = (
    ("sthjj", "environment", None),  # rivers, sewage outlets, straw fires
    ("zjj", "housing", None),  # gas, water supply, heating
    ("nyncj", None, "fire"),  # straw burning is also the agriculture bureau's (秸秆禁烧)
)
"""(department, bureau, family): who receives alerts besides the steward of the alert's terminal."""


def county_features() -> list[dict]:
    """The ten county-level boundary features (WGS84)."""
    with BOUNDARIES.open(encoding="utf-8") as f:
        return json.load(f)["features"]


def seed(conn: psycopg.Connection) -> None:
    """Upsert the reference data; safe to run any number of times."""
    with conn.transaction():
        _seed_divisions(conn)
        conn.cursor().executemany(
            """
            insert into department (code, name, name_en, aliases, bureau) values (%s, %s, %s, %s, %s)
            on conflict (code) do nothing
            """,
            [(d.code, d.name, d.name_en, list(d.aliases), d.bureau) for d in DEPARTMENTS],
        )
        conn.cursor().executemany(
            "insert into alert_route (department_code, bureau, family) values (%s, %s, %s) on conflict do nothing",
            ALERT_ROUTES,
        )
        conn.cursor().executemany(
            """
            insert into metric (key, name, name_zh, unit, low, high, precision, hj212)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (key) do update set name = excluded.name, name_zh = excluded.name_zh, unit = excluded.unit,
                low = excluded.low, high = excluded.high, precision = excluded.precision, hj212 = excluded.hj212
            """,
            [(m.key, m.name, m.name_zh, m.unit, m.low, m.high, m.precision, m.hj212) for m in METRICS],
        )
        conn.cursor().executemany(
            """
            insert into terminal_kind (key, name, name_zh, class_code, steward, metrics, interval_s)
            values (%s, %s, %s, %s, %s, %s, %s)
            on conflict (key) do update set name = excluded.name, name_zh = excluded.name_zh,
                class_code = excluded.class_code, steward = excluded.steward, metrics = excluded.metrics,
                interval_s = excluded.interval_s
            """,
            [(k.key, k.name, k.name_zh, k.class_code, k.steward, list(k.metrics), k.interval_s) for k in KINDS],
        )


def _seed_divisions(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        insert into division (code, name, name_en, level, parent_code) values (%s, '绥化市', 'Suihua', 'city', null)
        on conflict (code) do nothing
        """,
        (CITY_CODE,),
    )
    rows = []
    for feature in county_features():
        props = feature["properties"]
        geometry = Jsonb(feature["geometry"])
        rows.append((str(props["adcode"]), props["name"], props["name_en"], props["level"], CITY_CODE, geometry))
    conn.cursor().executemany(
        """
        insert into division (code, name, name_en, level, parent_code, boundary) values (%s, %s, %s, %s, %s, %s)
        on conflict (code) do update set name = excluded.name, name_en = excluded.name_en, level = excluded.level,
            parent_code = excluded.parent_code, boundary = excluded.boundary
        """,
        rows,
    )
