"""Logging in and out of a browser session, and who the caller is."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import CSRF_HEADER, SESSION_COOKIE, Reader
from api.deps import ConnDep
from registry import accounts

router = APIRouter(prefix="/api/v1/auth", tags=["accounts"])


class Login(BaseModel):
    login: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class Me(BaseModel):
    login: str
    department: str | None
    roles: list[str]
    csrf_token: str | None = Field(default=None, description=f"send it as {CSRF_HEADER} with every change")


@router.post("/login", response_model=Me, responses={401: {"description": "wrong login or password"},
                                                    429: {"description": "too many failed logins (Retry-After)"}})
def login(conn: ConnDep, request: Request, body: Login) -> Response:
    """Open a browser session: an HttpOnly, SameSite=Strict cookie and a CSRF token for changes. Logins and
    failed logins go to the audit log. Machines use API tokens instead."""
    client = request.client.host if request.client else None
    with conn.transaction():  # a failed or refused login is audited too: caught inside, so it commits
        try:
            opened = accounts.log_in(conn, body.login, body.password, client)
        except accounts.LoginThrottled as refused:
            return JSONResponse({"detail": str(refused)}, status_code=429,
                                headers={"Retry-After": str(refused.retry_after)})
    if opened is None:
        return JSONResponse({"detail": "wrong login or password"}, status_code=401)
    identity, session_id, csrf = opened
    response = JSONResponse(Me(login=identity.login, department=identity.department,
                               roles=sorted(identity.roles), csrf_token=csrf).model_dump())
    response.set_cookie(SESSION_COOKIE, session_id, max_age=accounts.SESSION_HOURS * 3600, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout", status_code=204)
def logout(conn: ConnDep, who: Reader, request: Request) -> Response:
    """End the session (with a session cookie) and record the logout."""
    with conn.transaction():
        accounts.log_out(conn, who, request.client.host if request.client else None)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me)
def me(who: Reader) -> Me:
    return Me(login=who.login, department=who.department, roles=sorted(who.roles))
