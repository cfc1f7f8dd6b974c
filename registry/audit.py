"""The one append-only audit log (the ``change`` table): ledger changes, grants, credential issues, alert steps,
fire verdicts, heat sources, accounts and tokens, logins and failed logins.

Rows are only inserted; the database refuses UPDATE and DELETE of them (migration 0019). The actor is always the
authenticated account, never a name the client sends.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg.rows import class_row

from registry.changes import Actor, change_row
from registry.models import Change
from registry.queries import insert_changes


def record(conn: psycopg.Connection, actor: Actor, action: str, object_type: str, code: str, *,
           before: dict | None = None, after: dict | None = None, related: tuple[str, str | None] | None = None,
           summary: str | None = None) -> None:
    """One audit row, in the caller's transaction."""
    related = related if related and related[1] is not None else None
    insert_changes(conn, [change_row(actor, action, object_type, code, before, after, related=related,
                                     summary=summary)])


def entries(
    conn: psycopg.Connection, *, object_type: str | None = None, object_code: str | None = None,
    batch_id: str | None = None, actor: str | None = None, action: str | None = None,
    start: dt.datetime | None = None, end: dt.datetime | None = None, department: str | None = None,
    before_id: int | None = None, limit: int = 100,
) -> list[Change]:
    """Audit rows, newest first; ``department`` keeps those made by that department's accounts."""
    with conn.cursor(row_factory=class_row(Change)) as cur:
        return cur.execute(
            """
            select id, at, actor, actor_department, client, batch_id::text, action, object_type, object_code,
                   related_type, related_code, summary, before, after
              from change
             where (%(object_type)s::text is null or object_type = %(object_type)s)
               and (%(object_code)s::text is null or object_code = %(object_code)s)
               and (%(batch_id)s::uuid is null or batch_id = %(batch_id)s::uuid)
               and (%(actor)s::text is null or actor = %(actor)s)
               and (%(action)s::text is null or action = %(action)s)
               and (%(start)s::timestamptz is null or at >= %(start)s)
               and (%(end)s::timestamptz is null or at < %(end)s)
               and (%(department)s::text is null or actor_department = %(department)s)
               and (%(before_id)s::bigint is null or id < %(before_id)s)
             order by id desc
             limit %(limit)s
            """,
            {"object_type": object_type, "object_code": object_code, "batch_id": batch_id, "actor": actor,
             "action": action, "start": start, "end": end, "department": department, "before_id": before_id,
             "limit": limit},
        ).fetchall()
