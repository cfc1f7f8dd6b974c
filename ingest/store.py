"""Keeping the readings store: daily partitions made ahead and dropped past retention.

On plain PostgreSQL the platform does this itself (``maintain`` runs at start and
hourly under ``ganzhi up``); with TimescaleDB it sets a retention policy once and the
extension's jobs do the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from core import partitions

log = logging.getLogger(__name__)

TABLE = "reading"


@dataclass(frozen=True)
class Maintenance:
    mode: str
    created: list[str]
    dropped: list[str]


def maintain(
    conn: psycopg.Connection, retention_days: int, premake_days: int, today: dt.date | None = None
) -> Maintenance:
    """Make partitions from yesterday to ``premake_days`` ahead and drop those past retention."""
    today = today or dt.datetime.now(dt.UTC).date()
    with conn.transaction():
        if partitions.timescaledb_installed(conn):
            conn.execute(
                "select add_retention_policy(%s, make_interval(days => %s), if_not_exists => true)",
                (TABLE, retention_days),
            )
            return Maintenance("timescaledb", [], [])
        created = partitions.ensure_daily_partitions(
            conn, TABLE, partitions.days_between(today - dt.timedelta(days=1), today + dt.timedelta(days=premake_days))
        )
        dropped = partitions.drop_partitions_before(conn, TABLE, today - dt.timedelta(days=retention_days))
    if created or dropped:
        log.info("readings partitions: created %d, dropped %d", len(created), len(dropped))
    return Maintenance("partitions", created, dropped)


def ensure_partitions_for(conn: psycopg.Connection, timestamps: Iterable[dt.datetime]) -> list[str]:
    """Partitions for late or backfilled readings, created inside the caller's transaction."""
    if partitions.timescaledb_installed(conn):
        return []
    days = {ts.astimezone(dt.UTC).date() for ts in timestamps}
    return partitions.ensure_daily_partitions(conn, TABLE, days)
