"""Sharing grants: a steward department lets another department read its terminals."""

from __future__ import annotations

import psycopg

from registry import queries
from registry.changes import Actor, change_row, snapshot
from registry.errors import Conflict, Invalid, NotFound
from registry.lookups import Lookups, terminal_kind
from registry.models import Grant, GrantIn


def grant(conn: psycopg.Connection, item: GrantIn, actor: Actor) -> Grant:
    lookups = Lookups.load(conn)
    steward, grantee = lookups.department(item.steward), lookups.department(item.grantee)
    if steward == grantee:
        raise Invalid("a department already reads its own terminals", field="grantee")
    kind = terminal_kind(item.kind).key if item.kind else None
    try:
        with conn.transaction():
            row = {"steward": steward, "grantee": grantee, "kind": kind, "granted_by": actor.name, "note": item.note}
            created = queries.insert_grant(conn, row)
    except psycopg.errors.UniqueViolation as exc:
        scope = kind or "all kinds"
        raise Conflict(f"{steward} already shares {scope} with {grantee}") from exc
    queries.insert_changes(conn, [change_row(actor, "create", "grant", str(created.id), None, snapshot(created),
                                             related=("department", steward))])
    return created


def revoke(conn: psycopg.Connection, grant_id: int, actor: Actor) -> None:
    current = queries.get_grant(conn, grant_id)
    if current is None:
        raise NotFound(f"grant {grant_id} does not exist", field="id")
    queries.delete_grant(conn, grant_id)
    queries.insert_changes(conn, [change_row(actor, "delete", "grant", str(grant_id), snapshot(current), None,
                                             related=("department", current.steward))])
