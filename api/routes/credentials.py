"""Broker credentials of poles and terminals."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import ActorDep, ConnDep
from registry import codes, credentials

router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"])


@router.post("/{code}", status_code=status.HTTP_201_CREATED)
def issue_credential(conn: ConnDep, actor: ActorDep, code: str) -> dict:
    """A new broker secret for a pole or terminal (its user name is its city code). Shown once; the ledger keeps
    only its hash. The broker run by `ganzhi up` accepts it within seconds; the old secret stops working."""
    with conn.transaction():
        secret = credentials.issue(conn, code, actor)
    return {"username": codes.parse(code).value, "password": secret}
