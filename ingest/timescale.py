"""The TimescaleDB path: the extension where the server offers it, and ``timescale.sql`` applied to it.

The reading table has one definition (migration 0002, plain PostgreSQL). Everything TimescaleDB-only is in
``timescale.sql``, applied only where the extension is installed, so the plain path never depends on it and
the Timescale path cannot define the table differently.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

from core import partitions

log = logging.getLogger(__name__)

SQL_FILE = Path(__file__).with_name("timescale.sql")
REFRESH_WINDOW_DAYS = 30
"""How far back the continuous aggregates' refresh reaches (timescale.sql); retention must exceed it."""


class RetentionTooShort(ValueError):
    """The raw retention would let a continuous-aggregate refresh empty buckets whose chunks were dropped."""


def enable(conn: psycopg.Connection) -> bool:
    """Install the extension when the server offers it; True when it is installed."""
    if partitions.timescaledb_installed(conn):
        return True
    offered = conn.execute("select exists (select 1 from pg_available_extensions where name = 'timescaledb')")
    if not offered.fetchone()[0]:
        return False
    try:
        with conn.transaction():
            conn.execute("create extension if not exists timescaledb")
    except psycopg.Error as exc:  # offered but not preloaded (shared_preload_libraries): stay on plain partitions
        log.warning("timescaledb is available but cannot be loaded (%s); using native partitions",
                    str(exc).strip())
        return False
    log.info("timescaledb installed")
    return True


def apply(conn: psycopg.Connection, retention_days: int) -> None:
    """Apply ``timescale.sql`` (idempotent) and the raw retention policy."""
    if retention_days <= REFRESH_WINDOW_DAYS:
        raise RetentionTooShort(f"GANZHI_RETENTION_DAYS is {retention_days}: with TimescaleDB it must be more than "
                                f"{REFRESH_WINDOW_DAYS} (the continuous aggregates' refresh window)")
    with conn.transaction():
        conn.execute(SQL_FILE.read_text(encoding="utf-8"))
        conn.execute("select add_retention_policy('reading', make_interval(days => %s), if_not_exists => true)",
                     (retention_days,))
