"""What routes declare they need: a connection, the settings. Who is calling comes from ``api.auth``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request

from core.settings import Settings


def _conn(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.pool.connection() as conn:
        yield conn


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[psycopg.Connection, Depends(_conn)]
SettingsDep = Annotated[Settings, Depends(_settings)]
