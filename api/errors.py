"""Every error becomes an HTTP answer in one place, with one body (``ErrorOut``) whatever its cause.

Ledger errors carry their own status. The database's own refusals are the client's doing too: a write that breaks a
unique, foreign-key or check constraint (a race past the service's checks) is 409 or 422 naming the column or
constraint, a value PostgreSQL cannot take is 422. Anything else is a 500 whose cause is logged, not shown.
"""

from __future__ import annotations

import logging
import re

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import errors as pg
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

from api.schemas import ErrorOut, Problem
from registry.errors import LedgerError

log = logging.getLogger(__name__)

_PLAIN = {"text/plain": {"schema": {"type": "string"}}}
ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorOut, "description": "the body cannot be parsed"},
    401: {"model": ErrorOut, "description": "no credentials, or bad ones (`WWW-Authenticate` says how to log in)"},
    403: {"model": ErrorOut, "description": "a role the route needs and the caller lacks, or a CSRF header missing"},
    404: {"model": ErrorOut, "description": "not in the ledger, or outside the caller's view"},
    409: {"model": ErrorOut, "description": "collides with what the ledger holds (duplicate, still in use)"},
    413: {"model": ErrorOut, "description": "the body is larger than this route takes (a Content-Length over the "
                                             "limit is answered at once, in plain text)", "content": _PLAIN},
    422: {"model": ErrorOut, "description": "invalid input; `field` names it, `problems` lists every one"},
    500: {"model": ErrorOut, "description": "the server failed; the cause is logged"},
    503: {"model": ErrorOut, "description": "the database is unavailable or busy; try again"},
}
"""Declared on every route (``include_router(..., responses=ERROR_RESPONSES)``)."""

_KEY = re.compile(r"Key \(([^)]*)\)")


def error_response(status: int, detail: str, field: str | None = None, problems: list[Problem] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorOut(detail=detail, field=field, problems=problems or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(LedgerError, _ledger_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(pg.IntegrityError, _integrity_error)
    app.add_exception_handler(psycopg.DataError, _data_error)
    app.add_exception_handler(PoolTimeout, _unavailable)
    app.add_exception_handler(psycopg.OperationalError, _unavailable)
    app.add_exception_handler(Exception, _server_error)


async def _ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.field)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [Problem(field=_location(error["loc"]), message=error["msg"]) for error in exc.errors()]
    detail = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems[:5])
    if len(problems) > 5:
        detail += f"; and {len(problems) - 5} more"
    return error_response(422, detail, problems[0].field if problems else None, problems)


def _location(loc: tuple) -> str | None:
    """``("body", "attrs", "river")`` → ``attrs.river``; the part of the request is left out, as in ledger errors."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    return ".".join(str(p) for p in parts) or None


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _integrity_error(request: Request, exc: pg.IntegrityError) -> JSONResponse:
    diag = exc.diag
    key = _KEY.search(diag.message_detail or "")
    field = diag.column_name or (key.group(1) if key else None)
    constraint = diag.constraint_name
    if isinstance(exc, pg.UniqueViolation | pg.ExclusionViolation):
        detail = f"{field or constraint} is already in use: {diag.message_detail or diag.message_primary}"
        return error_response(409, f"{detail} ({constraint})", field)
    if isinstance(exc, pg.ForeignKeyViolation):
        return error_response(409, f"{diag.message_detail or diag.message_primary} ({constraint})", field)
    return error_response(422, f"{diag.message_primary} ({constraint or field})", field)


async def _data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
    return error_response(422, f"a value cannot be stored: {exc.diag.message_primary or exc}")


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable for %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "the database is unavailable or busy; try again", headers={"Retry-After": "5"})


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette re-raises the exception after this answer, so the server logs it with its traceback."""
    return error_response(500, "the server failed on this request; the cause is logged")
