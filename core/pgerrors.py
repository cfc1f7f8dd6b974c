"""Telling a database that is away from one that refuses what it was given."""

from __future__ import annotations

import psycopg

_AWAY_STATES = frozenset({"53100", "53200", "53300", "57P01", "57P02", "57P03", "57P04", "57P05"})
"""Disk full, out of memory, too many connections; admin, crash and idle shutdown, starting up, database gone:
the whole database is away or cannot take anything, so no part would be written."""


def is_outage(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    """Whether ``exc`` says the database is away (retry the whole batch later) rather than refusing this batch
    (find the parts it refuses). Only a lost connection (closed, SQLSTATE class 08, a client-side error without
    SQLSTATE) or ``_AWAY_STATES`` are outages: ``OperationalError`` also covers a cancelled statement, a limit
    exceeded, a configuration limit, which one message can cause."""
    if conn is None or conn.closed or conn.broken:
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _AWAY_STATES
