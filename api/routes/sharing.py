"""Sharing grants and the change log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import ActorDep, ConnDep
from api.routes.filters import department_code
from registry import queries, sharing
from registry.models import Change, Grant, GrantIn

router = APIRouter(prefix="/api/v1", tags=["sharing", "changes"])


@router.get("/grants", response_model=list[Grant])
def list_grants(conn: ConnDep, department: str | None = None) -> list[Grant]:
    """Grants given or received by a department (all grants without a filter)."""
    return queries.list_grants(conn, department_code(conn, department))


@router.post("/grants", status_code=status.HTTP_201_CREATED, response_model=Grant)
def create_grant(conn: ConnDep, actor: ActorDep, item: GrantIn) -> Grant:
    """Let ``grantee`` read ``steward``'s terminals (of one kind, or all kinds)."""
    with conn.transaction():
        return sharing.grant(conn, item, actor)


@router.delete("/grants/{grant_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_grant(conn: ConnDep, actor: ActorDep, grant_id: int) -> Response:
    with conn.transaction():
        sharing.revoke(conn, grant_id, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/changes", response_model=list[Change])
def list_changes(
    conn: ConnDep,
    object_type: Annotated[str | None, Query(description="terminal, pole, grant, division, code_sequence")] = None,
    object_code: str | None = None,
    batch_id: Annotated[uuid.UUID | None, Query(description="an import batch or request id")] = None,
    before_id: Annotated[int | None, Query(description="cursor: the smallest id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Change]:
    """The change log, newest first: who changed what, when, before and after."""
    batch = str(batch_id) if batch_id else None
    return queries.list_changes(conn, object_type=object_type, object_code=object_code, batch_id=batch,
                                before_id=before_id, limit=limit)
