"""The `ganzhi dispatch-sweep` service: escalates overdue dispatch tasks every minute (on core/runtime)."""

from __future__ import annotations

import logging

import psycopg

from alerts.dispatch import sweep
from core.runtime import Service

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0


def run(service: Service, every_s: float = SWEEP_EVERY_S) -> None:
    """Sweep until the service stops; a lost database is reconnected by the runtime (logged once each way)."""
    m = service.metrics
    escalated_total = m.counter("dispatch_escalated", "overdue dispatch tasks escalated")
    sweeps = m.counter("dispatch_sweeps", "sweeps done")
    reconnects = m.counter("dispatch_reconnects", "database connections lost and made again")
    while (conn := service.connect(autocommit=True)) is not None:
        try:
            while not service.stop.is_set():
                escalated = sweep(conn)
                escalated_total.inc(len(escalated))
                sweeps.inc()
                if escalated:
                    log.info("escalated overdue tasks %s", escalated, extra={"tasks": escalated})
                service.wait(every_s)
            return
        except psycopg.OperationalError as exc:
            log.error("dispatch sweep lost the database: %s; reconnecting", str(exc).strip())
            reconnects.inc()
        finally:
            conn.close()
