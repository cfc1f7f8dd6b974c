"""Telling a database that is away from one that is busy for a moment and from one that refuses what it was
given.

Three answers to a failed statement, by SQLSTATE:

- an outage (``is_outage``): the connection is lost or the database cannot take anything now (shutting down,
  out of memory or disk, too many connections, read-only): reconnect and retry the whole later;
- transient (``is_transient``): the statement met something that passes (a lock held by another session, a
  deadlock, a serialization failure, a cancel or ``statement_timeout``, an I/O error, a resource limit): retry
  it; such a state is a refusal only if it keeps failing one part of a batch while others are written (a
  trigger that cancels one device's rows);
- otherwise a refusal of what it was given (a value, a constraint): find the parts refused, keep the rest.
"""

from __future__ import annotations

import psycopg

_AWAY_STATES = frozenset({"25006", "53100", "53200", "53300", "57P01", "57P02", "57P03", "57P04", "57P05"})
"""Read-only transaction (a standby, ``default_transaction_read_only``); disk full, out of memory, too many
connections; admin, crash and idle shutdown, starting up, database gone: the whole database is away or cannot
take anything, so no part would be written."""
_TRANSIENT_CLASSES = ("40", "53", "58")
"""Transaction rollback (deadlock, serialization), insufficient resources, system error (I/O)."""
_TRANSIENT_STATES = frozenset({"55P03", "57014"})
"""Lock not available (``lock_timeout``, NOWAIT); query cancelled (``statement_timeout``, a cancel)."""


class DatabaseBusy(psycopg.OperationalError):
    """Every part of a batch failed with a transient state and the store's tables cannot be locked for writing
    either: the database is busy for everyone (an outage: retry the whole later, refuse nothing)."""


def is_outage(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    """Whether ``exc`` says the database is away (retry the whole batch later) rather than busy for a moment or
    refusing this batch. Only a lost connection (closed, SQLSTATE class 08, a client-side error without
    SQLSTATE), ``_AWAY_STATES`` and ``DatabaseBusy`` are outages."""
    if conn is None or conn.closed or conn.broken or isinstance(exc, DatabaseBusy):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in _AWAY_STATES


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a state that passes (see the module's docstring): retry before calling it a refusal."""
    state = getattr(exc, "sqlstate", None)
    return state is not None and (state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES)
