"""Sharing grants and the change log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.auth import AuditReader, Reader, Steward, require_steward
from api.deps import ConnDep
from api.routes.filters import department_code
from api.routes.paging import After, Limit, cursor, page
from api.schemas import Page
from registry import audit, queries, sharing
from registry.errors import NotFound
from registry.lookups import Lookups
from registry.models import Change, Grant, GrantIn

router = APIRouter(prefix="/api/v1", tags=["sharing", "changes"])


@router.get("/grants", response_model=Page[Grant])
def list_grants(conn: ConnDep, who: Reader, department: str | None = None, after: After = None,
                limit: Limit = 100) -> Page[Grant]:
    """Grants given or received by a department (all grants without a filter), oldest first, one page at a time;
    a department's users see only its own grants."""
    rows = queries.list_grants(conn, department_code(conn, department), who.scope, after_id=cursor(after),
                               limit=limit + 1)
    data, next_cursor = page(rows, limit)
    return Page[Grant](data=data, next=next_cursor)


@router.post("/grants", status_code=status.HTTP_201_CREATED, response_model=Grant)
def create_grant(conn: ConnDep, who: Steward, item: GrantIn) -> Grant:
    """Let ``grantee`` read ``steward``'s terminals (of one kind, or all kinds): the steward's admins grant."""
    require_steward(who, Lookups.load(conn).department(item.steward), "the shared terminals")
    with conn.transaction():
        return sharing.grant(conn, item, who.actor())


@router.delete("/grants/{grant_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_grant(conn: ConnDep, who: Steward, grant_id: int) -> Response:
    grant = queries.get_grant(conn, grant_id)
    if grant is None or (who.scope and who.scope not in (grant.steward, grant.grantee)):
        raise NotFound(f"grant {grant_id} does not exist", field="id")
    require_steward(who, grant.steward, f"grant {grant_id}")
    with conn.transaction():
        sharing.revoke(conn, grant_id, who.actor())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/changes", response_model=Page[Change])
def list_changes(
    conn: ConnDep,
    who: AuditReader,
    object_type: Annotated[str | None, Query(description="terminal, pole, grant, division, code_sequence")] = None,
    object_code: str | None = None,
    batch_id: Annotated[uuid.UUID | None, Query(description="an import batch or request id")] = None,
    after: After = None,
    limit: Limit = 100,
) -> Page[Change]:
    """The change log, newest first, one page at a time: who changed what, when, before and after (the audit log,
    see /audit)."""
    batch = str(batch_id) if batch_id else None
    rows = audit.entries(conn, object_type=object_type, object_code=object_code, batch_id=batch,
                         department=who.scope, before_id=cursor(after), limit=limit + 1)
    data, next_cursor = page(rows, limit)
    return Page[Change](data=data, next=next_cursor)
