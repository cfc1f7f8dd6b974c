"""The maintenance service: the readings' rollups every minute, partitions and dead letters every hour.

One per deployment is enough; a second is harmless (the rollup watermark and the partition changes are
locked). Under ``ganzhi up`` it runs as one of the workers; in a container deployment as its own service.
"""

from __future__ import annotations

import logging
import time

import psycopg

from core.runtime import Service
from core.settings import Settings
from ingest import rollups, store

log = logging.getLogger(__name__)

PARTITIONS_EVERY_S = 3600.0


def run(service: Service, settings: Settings, every_s: float) -> None:
    """Until the service stops; a lost database is reconnected (logged once each way)."""
    while (conn := service.connect(autocommit=True)) is not None:
        try:
            _loop(service, conn, settings, every_s)
            return
        except psycopg.OperationalError as exc:
            log.error("maintenance lost the database: %s; reconnecting", str(exc).strip())
            service.counters["reconnects"] += 1
        finally:
            conn.close()


def _loop(service: Service, conn: psycopg.Connection, settings: Settings, every_s: float) -> None:
    partitions_due = 0.0
    while not service.stop.is_set():
        if time.monotonic() >= partitions_due:
            done = store.maintain(conn, settings.retention_days, settings.partition_premake_days,
                                  dead_letter_days=settings.dead_letter_retention_days)
            service.counters["partitions_dropped"] += len(done.dropped)
            service.set_detail(store=done.mode)
            partitions_due = time.monotonic() + PARTITIONS_EVERY_S
        runs = rollups.catch_up(conn, stopping=service.stop.is_set)
        service.counters["rollup_runs"] += runs
        if (fresh := rollups.fresh_from(conn)) is not None:
            service.set_detail(rollups_to=fresh.isoformat())
        service.wait(every_s)
