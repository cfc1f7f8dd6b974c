"""Broker credentials of poles and terminals."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.auth import Steward, writable_pole, writable_terminal
from api.deps import ConnDep
from registry import codes, credentials

router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"])


class BrokerCredential(BaseModel):
    username: str = Field(description="the device's city code")
    password: str = Field(description="the broker secret, shown only now")


@router.post("/{code}", status_code=status.HTTP_201_CREATED, response_model=BrokerCredential)
def issue_credential(conn: ConnDep, who: Steward, code: str) -> BrokerCredential:
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
    return BrokerCredential(username=codes.parse(code).value, password=secret)
