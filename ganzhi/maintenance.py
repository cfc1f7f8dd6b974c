"""The maintenance service: the readings' rollups every minute; partitions, dead letters and the hourly rollups'
retention every hour.

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


class _Counted:
    """The maintenance service's counters, on its /metrics and in its heartbeat row."""

    def __init__(self, service: Service) -> None:
        self.reconnects = service.metrics.counter("maintenance_reconnects", "database connections lost and made again")
        self.partitions_dropped = service.metrics.counter("maintenance_partitions_dropped",
                                                          "readings partitions dropped by retention")
        self.rollup_runs = service.metrics.counter("maintenance_rollup_runs", "rollup runs that folded in readings")
        self.hourly_expired = service.metrics.counter("maintenance_hourly_rollups_expired",
                                                      "hourly rollup rows deleted by their retention")


def run(service: Service, settings: Settings, every_s: float) -> None:
    """Until the service stops; a lost database is reconnected (logged once each way)."""
    counted = _Counted(service)
    while (conn := service.connect(autocommit=True)) is not None:
        try:
            _loop(service, counted, conn, settings, every_s)
            return
        except psycopg.OperationalError as exc:
            log.error("maintenance lost the database: %s; reconnecting", str(exc).strip())
            counted.reconnects.inc()
        finally:
            conn.close()


def _loop(service: Service, counted: _Counted, conn: psycopg.Connection, settings: Settings,
          every_s: float) -> None:
    partitions_due = 0.0
    while not service.stop.is_set():
        if time.monotonic() >= partitions_due:
            done = store.maintain(conn, settings.retention_days, settings.partition_premake_days,
                                  dead_letter_days=settings.dead_letter_retention_days)
            counted.partitions_dropped.inc(len(done.dropped))
            counted.hourly_expired.inc(rollups.expire_hourly(conn, settings.hourly_rollup_retention_days))
            service.set_detail(store=done.mode)
            partitions_due = time.monotonic() + PARTITIONS_EVERY_S
        runs = rollups.catch_up(conn, stopping=service.stop.is_set)
        counted.rollup_runs.inc(runs)
        if (fresh := rollups.fresh_from(conn)) is not None:
            service.set_detail(rollups_to=fresh.isoformat())
        service.wait(every_s)
