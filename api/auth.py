"""Who is calling, and whether they may: bearer tokens for machines, a session cookie for browsers.

Every route but /healthz and the OpenAPI document depends on ``authenticated``: 401 without valid credentials.
A role the route needs and the caller lacks is 403; an object outside the caller's view is 404 (the routes
look objects up through the caller's view, so its existence does not leak).

A browser session is a cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) plus a CSRF token handed out at
login: a request that changes state on a session must echo it in ``X-CSRF-Token``, which a cross-site form or
script cannot do. A bearer token is never sent by a browser on its own, so it needs no CSRF token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from api.deps import ConnDep
from registry import service
from registry.accounts import Identity, Role, identify_session, identify_token
from registry.lookups import Lookups
from registry.models import Pole, Terminal

SESSION_COOKIE = "ganzhi_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer gzt_…`")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                       description=f"a browser session from POST /api/v1/auth/login; changes need {CSRF_HEADER}")


def _unauthenticated(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="ganzhi"'})


def authenticated(
    request: Request,
    conn: ConnDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(_cookie)],
) -> Identity:
    """The caller's identity, from a bearer token or a session cookie; 401 without either, 403 on a CSRF miss."""
    if bearer is not None:
        identity = identify_token(conn, bearer.credentials)
        if identity is None:
            raise _unauthenticated("the token is unknown, revoked or expired")
        return identity
    if session:
        found = identify_session(conn, session)
        if found is None:
            raise _unauthenticated("the session has ended; log in again")
        identity, csrf = found
        if request.method not in SAFE_METHODS and not hmac.compare_digest(
                request.headers.get(CSRF_HEADER, "").encode(), csrf.encode()):
            raise HTTPException(403, f"a change made with a session needs its {CSRF_HEADER} header (CSRF)")
        return identity
    raise _unauthenticated("log in (POST /api/v1/auth/login) or send an API token as `Authorization: Bearer …`")


def requires(role: Role) -> Callable[[Identity], Identity]:
    """A dependency: the caller, if they hold ``role`` (403 otherwise)."""

    def check(identity: Annotated[Identity, Depends(authenticated)]) -> Identity:
        if not identity.holds(role):
            raise HTTPException(403, f"this needs the {role.value} role")
        return identity

    return check


def forbid(message: str) -> HTTPException:
    return HTTPException(403, message)


def require_steward(identity: Identity, department: str, what: str) -> None:
    """403 unless the caller may write ``department``'s ledger."""
    if not identity.stewards(department):
        raise forbid(f"{what} belongs to {department}; only its steward admins or the platform admin change it")


Reader = Annotated[Identity, Depends(authenticated)]
Operator = Annotated[Identity, Depends(requires(Role.operator))]
Steward = Annotated[Identity, Depends(requires(Role.steward_admin))]
PlatformAdmin = Annotated[Identity, Depends(requires(Role.platform_admin))]


def writable_terminal(conn: psycopg.Connection, who: Identity, code: str) -> Terminal:
    """A terminal the caller changes: 404 outside their view, 403 when another department stewards it."""
    terminal = service.require_terminal(conn, code, who.scope)
    require_steward(who, terminal.department, f"terminal {terminal.code}")
    return terminal


def writable_pole(conn: psycopg.Connection, who: Identity, code: str) -> Pole:
    pole = service.require_pole(conn, code, who.scope)
    require_steward(who, pole.department, f"pole {pole.code}")
    return pole


def owned_department(conn: psycopg.Connection, who: Identity, department: str | None, default: str) -> str:
    """The department a new or moved object is written to (the caller's own unless given): 403 if not theirs."""
    code = Lookups.load(conn).department(department) if department else (who.department if who.scope else default)
    require_steward(who, code, "the department")
    return code


def audit_reader(identity: Annotated[Identity, Depends(authenticated)]) -> Identity:
    """The platform admin and the leading group read the whole audit log; a steward admin its department's part."""
    if not identity.rights & {Role.platform_admin, Role.leading_group, Role.steward_admin}:
        raise forbid("the audit log is for admins")
    return identity


AuditReader = Annotated[Identity, Depends(audit_reader)]
