"""The ledger's SQL. Every function takes the connection first and never commits."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from registry.models import DepartmentOut, Division, Grant, Pole, Terminal

_CODE_PREFIX = re.compile(r"^23[0-9]{4}[-0-9A-Za-z]*$")

TERMINAL_SELECT = """
    select t.code, t.name, t.kind, t.department_code as department, p.code as pole,
           t.division_code as division, t.lon, t.lat, t.address, t.install_date, t.status,
           t.vendor, t.model, t.protocol, t.report_interval_s, t.metrics, t.attrs, t.mn, t.pw,
           t.created_at, t.updated_at
      from terminal t
      left join pole p on p.id = t.pole_id
"""

POLE_SELECT = """
    select p.code, p.name, p.department_code as department, p.division_code as division,
           p.lon, p.lat, p.address, p.install_date, p.status,
           (select count(*) from terminal t where t.pole_id = p.id) as terminal_count,
           p.created_at, p.updated_at
      from pole p
"""


def terminal_visible(alias: str = "t", param: str = "visible_to") -> str:
    """The rights filter: terminal ``alias`` is readable by the department in ``%(param)s`` because it stewards it
    or was granted it (all the steward's terminals, or those of one kind). Every terminal, reading, state, pole
    and alert query of a department user is filtered by this one predicate, in SQL."""
    # The grants are read once per query into a hashed set of (steward, kind), not once per terminal row.
    return f"""({alias}.department_code = %({param})s or ({alias}.department_code, {alias}.kind) in (
        select g.steward_code, k.key from sharing_grant g join terminal_kind k on g.kind is null or g.kind = k.key
         where g.grantee_code = %({param})s))"""


def pole_visible(alias: str = "p", param: str = "visible_to") -> str:
    """A pole is readable by the department that stewards it and by those that read a terminal on it."""
    return f"""({alias}.department_code = %({param})s or exists (
        select 1 from terminal vt where vt.pole_id = {alias}.id and {terminal_visible("vt", param)}))"""


# One fragment per filter; each is literal SQL with named parameters.
_TERMINAL_FILTERS = {
    "division": "t.division_code = any(%(division)s)",
    "department": "t.department_code = %(department)s",
    "kind": "t.kind = %(kind)s",
    "pole": "p.code = %(pole)s",
    "status": "t.status = %(status)s",
    "bbox": "point(t.lon, t.lat) <@ box(point(%(min_lon)s, %(min_lat)s), point(%(max_lon)s, %(max_lat)s))",
    "q": "(t.code like %(q_prefix)s or (t.name || ' ' || coalesce(t.address, '')) ilike %(q_like)s)",
    "code_prefix": "t.code like %(q_prefix)s",
    "readable_by": terminal_visible("t", "readable_by"),
    "visible_to": terminal_visible("t", "visible_to"),
    "after": "t.code > %(after)s",
}

_POLE_FILTERS = {
    "division": "p.division_code = any(%(division)s)",
    "department": "p.department_code = %(department)s",
    "status": "p.status = %(status)s",
    "bbox": "point(p.lon, p.lat) <@ box(point(%(min_lon)s, %(min_lat)s), point(%(max_lon)s, %(max_lat)s))",
    "q": "(p.code like %(q_prefix)s or (p.name || ' ' || coalesce(p.address, '')) ilike %(q_like)s)",
    "code_prefix": "p.code like %(q_prefix)s",
    "visible_to": pole_visible("p", "visible_to"),
    "after": "p.code > %(after)s",
}


@dataclass
class Search:
    """Filters of a terminal or pole search; ``None`` means not filtered."""

    division: list[str] | None = None
    """Division codes: a division and its subtree, from ``division_subtree``."""
    department: str | None = None
    kind: str | None = None
    pole: str | None = None
    status: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    q: str | None = None
    readable_by: str | None = None
    visible_to: str | None = None
    """The caller's department when it reads only its own view (see ``terminal_visible``); None reads all."""
    after: str | None = None

    @property
    def code_like(self) -> bool:
        """A ``q`` such as 2312812 or 231281-24 is the start of a city code: search codes only, in code order."""
        return self.q is not None and _CODE_PREFIX.match(self.q) is not None

    def where(self, fragments: dict[str, str]) -> tuple[str, dict]:
        clauses, params = [], {}
        for name, fragment in fragments.items():
            value = getattr(self, name, None)
            if value is None:
                continue
            clauses.append(fragment)
            if name == "bbox":
                params.update(zip(("min_lon", "min_lat", "max_lon", "max_lat"), value, strict=True))
            elif name == "division" and len(value) == 1:
                # One division (no townships below it): plain equality lets the planner read its index in code order.
                clauses[-1] = fragment.replace("= any(%(division)s)", "= %(division)s")
                params[name] = value[0]
            elif name == "q":
                if self.code_like:
                    clauses[-1] = fragments["code_prefix"]
                escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                params["q_prefix"] = value.replace("-", "").upper() + "%"
                params["q_like"] = f"%{escaped}%"
            else:
                params[name] = value
        return (" where " + " and ".join(clauses)) if clauses else "", params


def terminal_where(search: Search) -> tuple[str, dict]:
    """The WHERE clause of a terminal search over ``terminal t left join pole p``, for other packages' queries."""
    return search.where(_TERMINAL_FILTERS)


def search_terminals(conn: psycopg.Connection, search: Search, limit: int) -> list[Terminal]:
    return _search(conn, TERMINAL_SELECT, _TERMINAL_FILTERS, "t.code", search, limit, Terminal)


def _search(conn: psycopg.Connection, select: str, filters: dict[str, str], order: str, search: Search, limit: int,
            row_type: type):
    where, params = search.where(filters)
    params["limit"] = limit
    sql = f"{select}{where} order by {order} limit %(limit)s"
    if search.q is not None and not search.code_like:
        # Text matches are found through the trigram and prefix indexes first, then ordered; left alone, the
        # planner walks the code index in order and filters every row.
        sql = f"with hits as materialized ({select}{where}) select * from hits order by code limit %(limit)s"
    with conn.cursor(row_factory=class_row(row_type)) as cur:
        return cur.execute(sql, params).fetchall()


def count_terminals(conn: psycopg.Connection, search: Search) -> int:
    where, params = replace(search, after=None).where(_TERMINAL_FILTERS)
    sql = "select count(*) from terminal t left join pole p on p.id = t.pole_id" + where
    return conn.execute(sql, params).fetchone()[0]


def get_terminal(conn: psycopg.Connection, code: str, visible_to: str | None = None) -> Terminal | None:
    """The terminal, if it is in the ledger and (with ``visible_to``) in that department's view."""
    where, params = Search(visible_to=visible_to).where(_TERMINAL_FILTERS)
    where = f"{where} and t.code = %(code)s" if where else " where t.code = %(code)s"
    with conn.cursor(row_factory=class_row(Terminal)) as cur:
        return cur.execute(TERMINAL_SELECT + where, {**params, "code": code}).fetchone()


def terminals_by_code(conn: psycopg.Connection, codes: list[str]) -> dict[str, Terminal]:
    with conn.cursor(row_factory=class_row(Terminal)) as cur:
        rows = cur.execute(TERMINAL_SELECT + " where t.code = any(%s)", (codes,)).fetchall()
    return {row.code: row for row in rows}


_TERMINAL_STAGE = """
    create temp table if not exists terminal_stage (
        code text, name text, kind text, department_code text, pole text, division_code text, lon float8,
        lat float8, address text, install_date date, status text, vendor text, model text, protocol text,
        report_interval_s int, metrics text[], attrs jsonb, mn text, pw text
    ) on commit delete rows
"""


def upsert_terminals(conn: psycopg.Connection, rows: list[dict]) -> None:
    """Insert or replace terminals by code: COPY into a staging table, then one merge."""
    _stage(conn, _TERMINAL_STAGE, "terminal_stage", rows, jsonb=("attrs",))
    conn.execute(
        """
        insert into terminal (code, name, kind, department_code, pole_id, division_code, lon, lat, address,
                              install_date, status, vendor, model, protocol, report_interval_s, metrics, attrs, mn, pw)
        select s.code, s.name, s.kind, s.department_code, p.id, s.division_code, s.lon, s.lat, s.address,
               s.install_date, s.status, s.vendor, s.model, s.protocol, s.report_interval_s, s.metrics, s.attrs,
               s.mn, s.pw
          from terminal_stage s
          left join pole p on p.code = s.pole
        on conflict (code) do update set
            name = excluded.name, kind = excluded.kind, department_code = excluded.department_code,
            pole_id = excluded.pole_id, division_code = excluded.division_code, lon = excluded.lon,
            lat = excluded.lat, address = excluded.address, install_date = excluded.install_date,
            status = excluded.status, vendor = excluded.vendor, model = excluded.model,
            protocol = excluded.protocol, report_interval_s = excluded.report_interval_s,
            metrics = excluded.metrics, attrs = excluded.attrs, mn = excluded.mn, pw = excluded.pw,
            updated_at = now()
        """
    )


def _stage(conn: psycopg.Connection, create_sql: str, table: str, rows: list[dict], jsonb: tuple[str, ...] = ()):
    """Empty the session's staging table and COPY the rows into it."""
    conn.execute(create_sql)
    conn.execute(f"truncate {table}")
    columns = list(rows[0])
    with conn.cursor() as cur, cur.copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in jsonb else row[c] for c in columns])


def delete_terminal(conn: psycopg.Connection, code: str) -> bool:
    return conn.execute("delete from terminal where code = %s", (code,)).rowcount == 1


def search_poles(conn: psycopg.Connection, search: Search, limit: int) -> list[Pole]:
    return _search(conn, POLE_SELECT, _POLE_FILTERS, "p.code", search, limit, Pole)


def get_pole(conn: psycopg.Connection, code: str, visible_to: str | None = None) -> Pole | None:
    where, params = Search(visible_to=visible_to).where(_POLE_FILTERS)
    where = f"{where} and p.code = %(code)s" if where else " where p.code = %(code)s"
    with conn.cursor(row_factory=class_row(Pole)) as cur:
        return cur.execute(POLE_SELECT + where, {**params, "code": code}).fetchone()


def poles_by_code(conn: psycopg.Connection, codes: list[str]) -> dict[str, Pole]:
    with conn.cursor(row_factory=class_row(Pole)) as cur:
        rows = cur.execute(POLE_SELECT + " where p.code = any(%s)", (codes,)).fetchall()
    return {row.code: row for row in rows}


_POLE_STAGE = """
    create temp table if not exists pole_stage (
        code text, name text, department_code text, division_code text, lon float8, lat float8, address text,
        install_date date, status text
    ) on commit delete rows
"""


def upsert_poles(conn: psycopg.Connection, rows: list[dict]) -> None:
    _stage(conn, _POLE_STAGE, "pole_stage", rows)
    conn.execute(
        """
        insert into pole (code, name, department_code, division_code, lon, lat, address, install_date, status)
        select code, name, department_code, division_code, lon, lat, address, install_date, status from pole_stage
        on conflict (code) do update set
            name = excluded.name, department_code = excluded.department_code,
            division_code = excluded.division_code, lon = excluded.lon, lat = excluded.lat,
            address = excluded.address, install_date = excluded.install_date, status = excluded.status,
            updated_at = now()
        """
    )


def delete_pole(conn: psycopg.Connection, code: str) -> bool:
    return conn.execute("delete from pole where code = %s", (code,)).rowcount == 1


def issue_serials(conn: psycopg.Connection, division: str, class_code: str, count: int) -> int:
    """Reserve ``count`` serials in a division and class; returns the first one."""
    row = conn.execute(
        """
        insert into code_sequence as s (division_code, class_code, last_serial) values (%s, %s, %s)
        on conflict (division_code, class_code) do update set last_serial = s.last_serial + excluded.last_serial
        returning last_serial
        """,
        (division, class_code, count),
    ).fetchone()
    return row[0] - count + 1


def list_divisions(conn: psycopg.Connection, parent: str | None = None) -> list[Division]:
    with conn.cursor(row_factory=class_row(Division)) as cur:
        sql = "select code, name, name_en, level, parent_code as parent from division"
        if parent is not None:
            return cur.execute(sql + " where parent_code = %s order by code", (parent,)).fetchall()
        return cur.execute(sql + " order by code").fetchall()


def division_subtree(conn: psycopg.Connection, code: str) -> list[str]:
    """A division and every division below it; empty when the code is unknown."""
    rows = conn.execute(
        """
        with recursive sub as (
            select code from division where code = %s
            union all
            select d.code from division d join sub on d.parent_code = sub.code)
        select code from sub
        """,
        (code,),
    ).fetchall()
    return [row[0] for row in rows]


def division_boundaries(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select code, name, level, boundary from division order by code").fetchall()


def get_division(conn: psycopg.Connection, code: str) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select code, name, name_en, level, parent_code as parent, boundary from division where code = %s", (code,)
        ).fetchone()


def insert_division(conn: psycopg.Connection, division: dict) -> None:
    conn.execute(
        """
        insert into division (code, name, name_en, level, parent_code, boundary)
        values (%(code)s, %(name)s, %(name_en)s, %(level)s, %(parent)s, %(boundary)s)
        """,
        {**division, "boundary": Jsonb(division["boundary"]) if division["boundary"] else None},
    )


def list_departments(conn: psycopg.Connection) -> list[DepartmentOut]:
    with conn.cursor(row_factory=class_row(DepartmentOut)) as cur:
        return cur.execute("select code, name, name_en, aliases, bureau, disabled_at from department "
                           "order by code").fetchall()


def list_kinds(conn: psycopg.Connection) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select key, name, name_zh, class_code, steward, metrics, interval_s from terminal_kind order by class_code"
        ).fetchall()


_GRANT_SELECT = """
    select id, steward_code as steward, grantee_code as grantee, kind, granted_by, granted_at, note
      from sharing_grant
"""


def list_grants(conn: psycopg.Connection, department: str | None = None, visible_to: str | None = None,
                after_id: int | None = None, limit: int | None = None) -> list[Grant]:
    """Grants given or received by ``department`` (all without it); ``visible_to`` keeps that department's own.
    In id order; ``after_id`` and ``limit`` read one page of them."""
    with conn.cursor(row_factory=class_row(Grant)) as cur:
        return cur.execute(
            _GRANT_SELECT + """
             where (%(d)s::text is null or steward_code = %(d)s or grantee_code = %(d)s)
               and (%(v)s::text is null or steward_code = %(v)s or grantee_code = %(v)s)
               and (%(after)s::bigint is null or id > %(after)s)
             order by id limit %(limit)s
            """,
            {"d": department, "v": visible_to, "after": after_id, "limit": limit},
        ).fetchall()


def insert_grant(conn: psycopg.Connection, grant: dict) -> Grant:
    with conn.cursor(row_factory=class_row(Grant)) as cur:
        return cur.execute(
            """
            insert into sharing_grant (steward_code, grantee_code, kind, granted_by, note)
            values (%(steward)s, %(grantee)s, %(kind)s, %(granted_by)s, %(note)s)
            returning id, steward_code as steward, grantee_code as grantee, kind, granted_by, granted_at, note
            """,
            grant,
        ).fetchone()


def get_grant(conn: psycopg.Connection, grant_id: int) -> Grant | None:
    with conn.cursor(row_factory=class_row(Grant)) as cur:
        return cur.execute(_GRANT_SELECT + " where id = %s", (grant_id,)).fetchone()


def delete_grant(conn: psycopg.Connection, grant_id: int) -> None:
    conn.execute("delete from sharing_grant where id = %s", (grant_id,))


def insert_changes(conn: psycopg.Connection, changes: list[dict]) -> None:
    """Write change-log rows with COPY (an import may write 100,000 of them)."""
    columns = ("actor", "actor_id", "actor_department", "client", "batch_id", "action", "object_type",
               "object_code", "related_type", "related_code", "summary", "before", "after")
    with conn.cursor() as cur, cur.copy(f"copy change ({', '.join(columns)}) from stdin") as copy:
        for change in changes:
            copy.write_row(
                [Jsonb(change[c]) if c in ("before", "after") and change[c] is not None else change[c] for c in columns]
            )
