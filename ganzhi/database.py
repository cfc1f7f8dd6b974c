"""Bringing a database to the current schema: migrations of every package, then reference data."""

from __future__ import annotations

import logging
from pathlib import Path

import alerts
import analytics
import core
import ingest
import registry
from core import db
from core.migrate import Migration, migrate
from core.settings import Settings
from ingest import store
from registry import reference

log = logging.getLogger(__name__)

MIGRATION_DIRS: list[Path] = [
    Path(core.__file__).with_name("migrations"),
    Path(registry.__file__).with_name("migrations"),
    Path(ingest.__file__).with_name("migrations"),
    Path(analytics.__file__).with_name("migrations"),
    Path(alerts.__file__).with_name("migrations"),
]


def prepare(url: str, settings: Settings) -> list[Migration]:
    """Wait for the server, migrate, seed reference data and make the readings partitions."""
    db.wait_for_database(url)
    with db.connect(url) as conn:
        applied = migrate(conn, MIGRATION_DIRS)
        reference.seed(conn)
        store.maintain(conn, settings.retention_days, settings.partition_premake_days,
                       dead_letter_days=settings.dead_letter_retention_days)
        conn.commit()
    for migration in applied:
        log.info("applied %04d_%s", migration.version, migration.name)
    return applied
