"""Database connections: one pool per process, opened by its owner (API lifespan, worker main)."""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

# How every long-lived connection (a LISTEN, a worker's writer, the API's pool) is opened. A firewall or NAT between
# the service and the database forgets a flow that stays idle; TCP keepalives every 30 s keep it, and a link that
# died without a word (no FIN, no RST) becomes an error instead of a wait for notifications that never come: with a
# user timeout set, Linux gives up 60 s after the peer last answered (a keepalive or data). These override the same
# options in DATABASE_URL.
LINK = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
        "keepalives_count": 3, "tcp_user_timeout": 60_000}


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A plain connection for commands (migrate, import, export)."""
    return psycopg.connect(url, autocommit=autocommit)


def new_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> ConnectionPool:
    """A pool created closed: the owner opens it in its lifespan and closes it on exit."""
    return ConnectionPool(url, min_size=min_size, max_size=max_size, open=False, name="ganzhi", kwargs=LINK)


def wait_for_database(url: str, timeout_s: float = 30.0) -> None:
    """Retry until the server accepts connections, logging the first failure and the recovery."""
    deadline = time.monotonic() + timeout_s
    failed = False
    while True:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("select 1")
            if failed:
                log.info("database reachable again")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            if not failed:
                log.warning("database not reachable yet (%s); retrying", str(exc).strip())
                failed = True
            time.sleep(0.5)
