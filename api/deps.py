"""What routes declare they need: a connection, the settings. Who is calling comes from ``api.auth``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request

from core.settings import Settings


def _conn(request: Request) -> Iterator[psycopg.Connection]:
    """A connection in autocommit: what a route writes in ``with conn.transaction()`` is committed when the block
    ends, before the response is sent; reads (identifying the caller, checking rights) hold no transaction open."""
    with request.app.state.pool.connection() as conn:
        conn.autocommit = True
        yield conn


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[psycopg.Connection, Depends(_conn)]
SettingsDep = Annotated[Settings, Depends(_settings)]
