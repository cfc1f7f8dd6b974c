"""Keeping the readings store: daily partitions made ahead and dropped past retention, and dead
letters deleted past theirs.

On plain PostgreSQL the platform does this itself (``maintain`` runs at start and
hourly under ``ganzhi up`` or ``ganzhi maintain``); with TimescaleDB it applies
``timescale.sql`` (hypertable, compression, continuous aggregates) and a retention
policy, and the extension's jobs do the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from core import partitions
from ingest import timescale

log = logging.getLogger(__name__)

TABLE = "reading"
PARTITION_MAKER = "ensure_reading_partition"
"""The SQL function (migration 0090, SECURITY DEFINER) that adds a day's partition as the table's owner."""


@dataclass(frozen=True)
class Maintenance:
    mode: str
    created: list[str]
    dropped: list[str]
    dead_letters_deleted: int = 0


def maintain(
    conn: psycopg.Connection, retention_days: int, premake_days: int, today: dt.date | None = None,
    dead_letter_days: int = 30,
) -> Maintenance:
    """Make partitions from yesterday to ``premake_days`` ahead and drop those past retention; delete dead
    letters older than ``dead_letter_days``."""
    today = today or dt.datetime.now(dt.UTC).date()
    with conn.transaction():
        expired = conn.execute(
            "delete from dead_letter where received_at < %(today)s::date - make_interval(days => %(days)s)",
            {"today": today, "days": dead_letter_days},
        ).rowcount
        if expired:
            log.info("dead letters: deleted %d older than %d days", expired, dead_letter_days)
        if timescale.enable(conn):
            timescale.apply(conn, retention_days)
            return Maintenance("timescaledb", [], [], expired)
        created = partitions.ensure_daily_partitions(
            conn, TABLE, partitions.days_between(today - dt.timedelta(days=1), today + dt.timedelta(days=premake_days))
        )
        dropped = partitions.drop_partitions_before(conn, TABLE, today - dt.timedelta(days=retention_days))
    if created or dropped:
        log.info("readings partitions: created %d, dropped %d", len(created), len(dropped))
    return Maintenance("partitions", created, dropped, expired)


def ensure_partitions_for(conn: psycopg.Connection, timestamps: Iterable[dt.datetime]) -> list[str]:
    """Partitions for late or backfilled readings, created inside the caller's transaction by the owner's function
    (the ingest workers run as the application role, which does not own ``reading``)."""
    if partitions.timescaledb_installed(conn):
        return []
    days = {ts.astimezone(dt.UTC).date() for ts in timestamps}
    return partitions.ensure_daily_partitions(conn, TABLE, days, maker=PARTITION_MAKER)
