"""What routes declare they need: a connection, the actor, the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import unquote

import psycopg
from fastapi import Depends, Header, Request

from core.settings import Settings
from registry.changes import Actor


def _conn(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.pool.connection() as conn:
        yield conn


def _actor(x_actor: Annotated[str | None, Header(
        description="who makes the change, for the change log; percent-encoded UTF-8 for non-ASCII names")] = None,
           ) -> Actor:
    name = unquote(x_actor).strip() if x_actor else ""
    return Actor(name[:100] if name else "api")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[psycopg.Connection, Depends(_conn)]
ActorDep = Annotated[Actor, Depends(_actor)]
SettingsDep = Annotated[Settings, Depends(_settings)]
