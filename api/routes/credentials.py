"""Broker credentials of poles and terminals."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.auth import Steward, writable_pole, writable_terminal
from api.deps import ConnDep
from registry import codes, credentials

router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"])


@router.post("/{code}", status_code=status.HTTP_201_CREATED)
def issue_credential(conn: ConnDep, who: Steward, code: str) -> dict:
    """A new broker secret for a pole or terminal (its user name is its city code). Shown once; the ledger keeps
    only its hash. The broker run by `ganzhi up` accepts it within seconds; the old secret stops working.
    Only a steward admin of the device's department, or the platform admin, issues one."""
    parsed = codes.parse(code)
    if parsed.class_code == codes.POLE_CLASS:
        writable_pole(conn, who, parsed.value)
    else:
        writable_terminal(conn, who, parsed.value)
    with conn.transaction():
        secret = credentials.issue(conn, code, who.actor())
    return {"username": codes.parse(code).value, "password": secret}
