"""What the benchmarks share: scratch databases on the configured server, free ports."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg


def scratch_database(url: str) -> str:
    """A new empty database on ``url``'s server; drop it with ``drop_database``."""
    name = f"ganzhi_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def drop_database(url: str, scratch: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"drop database if exists {urlsplit(scratch).path.lstrip('/')} with (force)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_token(url: str, login: str, roles: list[str], department: str | None = None) -> dict[str, str]:
    """Authorization headers of a new service account with these roles, for benchmarks against the API."""
    from registry import accounts
    from registry.changes import Actor

    with psycopg.connect(url) as conn:
        accounts.add_account(conn, login=login, name=login, department=department, roles=roles, kind="service",
                             password=None, actor=Actor("bench"))
        secret = accounts.issue_token(conn, login, "bench", None, Actor("bench"))[1]
    return {"Authorization": f"Bearer {secret}"}
