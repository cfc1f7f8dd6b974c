"""Accounts, their API tokens, and the audit log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from api.auth import AuditReader, PlatformAdmin, Reader, forbid
from api.deps import ConnDep
from api.routes.filters import department_code
from api.routes.paging import After, Limit, cursor, page
from api.schemas import Instant, Page
from registry import accounts, audit
from registry.accounts import Identity, Role
from registry.errors import NotFound
from registry.models import Change

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class AccountIn(BaseModel):
    login: str = Field(description="2–64 of a-z 0-9 . _ @ -")
    name: str = Field(min_length=1, max_length=100, description="the person, or the system")
    department: str | None = Field(default=None, description="code or name; none only for platform-wide roles")
    roles: list[Role] = Field(min_length=1)
    kind: Literal["person", "service"] = "person"
    password: str | None = Field(default=None, description="left out: one is made and shown once (persons)")


class Account(BaseModel):
    id: int
    login: str
    name: str
    kind: Literal["person", "service"] = Field(description="a person (logs in), or a system (uses tokens)")
    department: str | None = Field(description="none for a platform-wide role")
    roles: list[Role]
    created_at: dt.datetime
    created_by: str
    disabled_at: dt.datetime | None = Field(description="set while the account is disabled")
    has_password: bool = Field(description="it may log in with a password")


class NewAccount(Account):
    password: str | None = Field(description="the password made for a person, shown only now; null when it was "
                                             "given, or for a service")


class Token(BaseModel):
    """An API token, never its secret."""
    id: int
    account: str = Field(description="login of the account it acts as")
    name: str
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None = Field(description="to the minute")


class NewToken(Token):
    token: str = Field(description="the secret (`Authorization: Bearer gzt_…`), shown only now")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="what uses it, e.g. 住建局燃气监管系统")
    days: int | None = Field(default=None, ge=1, le=3650, description="expires after; none: until revoked")


@router.get("/users", response_model=Page[Account])
def list_users(conn: ConnDep, who: PlatformAdmin,
               department: Annotated[str | None, Query(description="department, code or name")] = None,
               after: After = None, limit: Limit = 100) -> Page[Account]:
    """Accounts in login order, one page at a time (`next` is the page's last login)."""
    rows = accounts.list_accounts(conn, department_code(conn, department), after=after, limit=limit + 1)
    data, next_cursor = page(rows, limit, key="login")
    return Page[Account](data=data, next=next_cursor)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=NewAccount)
def add_user(conn: ConnDep, who: PlatformAdmin, item: AccountIn) -> NewAccount:
    """A person or a service account. A person's password, when not given, is made and returned once."""
    password = item.password or (accounts.new_password() if item.kind == "person" else None)
    with conn.transaction():
        created = accounts.add_account(conn, login=item.login, name=item.name, department=item.department,
                                       roles=list(item.roles), kind=item.kind, password=password, actor=who.actor())
    return NewAccount(**created, password=password if item.password is None else None)


@router.get("/users/{login}", response_model=Account)
def get_user(conn: ConnDep, who: PlatformAdmin, login: str) -> Account:
    return accounts.account_by_login(conn, login)


@router.post("/users/{login}/disable", response_model=Account)
def disable_user(conn: ConnDep, who: PlatformAdmin, login: str) -> Account:
    """Disable an account: its tokens and sessions stop working at once."""
    with conn.transaction():
        return accounts.set_disabled(conn, login, True, who.actor())


@router.post("/users/{login}/enable", response_model=Account)
def enable_user(conn: ConnDep, who: PlatformAdmin, login: str) -> Account:
    with conn.transaction():
        return accounts.set_disabled(conn, login, False, who.actor())


def _own_or_admin(who: Identity, login: str) -> None:
    if login.strip().lower() != who.login and not who.holds(Role.platform_admin):
        raise forbid("only the platform admin manages another account's tokens")


@router.get("/users/{login}/tokens", response_model=Page[Token])
def list_tokens(conn: ConnDep, who: Reader, login: str, after: After = None, limit: Limit = 100) -> Page[Token]:
    """An account's API tokens (never their secrets), oldest first, one page at a time: the account itself, or the
    platform admin."""
    _own_or_admin(who, login)
    rows = accounts.list_tokens(conn, accounts.account_by_login(conn, login)["login"], after_id=cursor(after),
                                limit=limit + 1)
    data, next_cursor = page(rows, limit)
    return Page[Token](data=data, next=next_cursor)


@router.post("/users/{login}/tokens", status_code=status.HTTP_201_CREATED, response_model=NewToken)
def issue_token(conn: ConnDep, who: Reader, login: str, item: TokenIn) -> NewToken:
    """A new API token for the account: `Authorization: Bearer <token>`. The token is shown only here, once."""
    _own_or_admin(who, login)
    with conn.transaction():
        token, secret = accounts.issue_token(conn, login, item.name, item.days, who.actor())
    return NewToken(**token, token=secret)


@router.delete("/tokens/{token_id}", response_model=Token)
def revoke_token(conn: ConnDep, who: Reader, token_id: int) -> Token:
    """Revoke a token at once: its owner, or the platform admin. Another account's token is 404, as a token that
    does not exist: token ids are counted, and their existence is not the caller's to learn."""
    if accounts.get_token(conn, token_id)["account"] != who.login and not who.holds(Role.platform_admin):
        raise NotFound(f"token {token_id} does not exist", field="id")
    with conn.transaction():
        return accounts.revoke_token(conn, token_id, who.actor())


@router.get("/audit", response_model=Page[Change])
def audit_log(
    conn: ConnDep,
    who: AuditReader,
    actor: Annotated[str | None, Query(description="login of the account that acted")] = None,
    action: Annotated[str | None, Query(description="create, update, delete, issue, revoke, login, "
                                                    "login_failed, acknowledge, verdict, ...")] = None,
    object_type: Annotated[str | None, Query(description="terminal, pole, grant, credential, alert, account, "
                                                         "token, heat_source, fire_event, ...")] = None,
    object_code: str | None = None,
    batch_id: uuid.UUID | None = None,
    start: Annotated[Instant | None, Query(alias="from")] = None,
    end: Annotated[Instant | None, Query(alias="to")] = None,
    after: After = None,
    limit: Limit = 100,
) -> Page[Change]:
    """The append-only audit log, newest first, one page at a time. A steward admin reads what its department's
    accounts did."""
    rows = audit.entries(conn, object_type=object_type, object_code=object_code,
                         batch_id=str(batch_id) if batch_id else None, actor=actor, action=action, start=start,
                         end=end, department=who.scope, before_id=cursor(after), limit=limit + 1)
    data, next_cursor = page(rows, limit)
    return Page[Change](data=data, next=next_cursor)
