"""Departments: added and renamed by the platform admin, audited. Codes never change (objects, accounts, grants
and alert routes point at them); the seed adds the city's bureaus once and leaves their names to the admin."""

from __future__ import annotations

import psycopg
from psycopg.rows import class_row

from registry.audit import record
from registry.changes import Actor
from registry.errors import Conflict, NotFound
from registry.models import DepartmentChange, DepartmentIn, DepartmentOut

_SELECT = "select code, name, name_en, aliases, bureau, disabled_at from department where code = %(code)s"


def get_department(conn: psycopg.Connection, code: str) -> DepartmentOut:
    with conn.cursor(row_factory=class_row(DepartmentOut)) as cur:
        found = cur.execute(_SELECT, {"code": code}).fetchone()
    if found is None:
        raise NotFound(f"department {code!r} does not exist", field="code")
    return found


def add_department(conn: psycopg.Connection, item: DepartmentIn, actor: Actor) -> DepartmentOut:
    try:
        with conn.transaction():
            conn.execute("insert into department (code, name, name_en, aliases, bureau) "
                         "values (%(code)s, %(name)s, %(name_en)s, %(aliases)s, %(bureau)s)", item.model_dump())
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"a department with code {item.code!r} or name {item.name!r} exists", field="code") from exc
    record(conn, actor, "create", "department", item.code, after=item.model_dump())
    return get_department(conn, item.code)


def change_department(conn: psycopg.Connection, code: str, change: DepartmentChange, actor: Actor) -> DepartmentOut:
    before = get_department(conn, code)
    fields = change.model_dump(exclude_unset=True)
    if not fields:
        return before
    disabled = fields.pop("disabled", None)
    sets = [f"{name} = %({name})s" for name in fields]  # names from DepartmentChange's fields only
    if disabled is not None:
        sets.append("disabled_at = case when %(disabled)s then coalesce(disabled_at, now()) end")
    try:
        with conn.transaction():
            conn.execute(f"update department set {', '.join(sets)} where code = %(code)s",
                         {**fields, "disabled": disabled, "code": code})
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"another department is named {fields.get('name')!r}", field="name") from exc
    if fields:
        record(conn, actor, "update", "department", code, before={k: getattr(before, k) for k in fields},
               after=fields)
    if disabled is not None and disabled != (before.disabled_at is not None):
        record(conn, actor, "disable" if disabled else "enable", "department", code)
    return get_department(conn, code)
