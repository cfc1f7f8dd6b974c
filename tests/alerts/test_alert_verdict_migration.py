"""Migration 0080 (the steward's verdict on a drift alert) on a database with alerts acknowledged before it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg

import alerts
from registry import service
from registry.changes import Actor
from tests.factories import river_station

MIGRATION = Path(alerts.__file__).parent / "migrations" / "0080_alert_verdict.sql"


def test_alerts_acknowledged_before_the_upgrade_get_when_from_their_history(conn, db_url):
    code = service.create_terminal(conn, river_station(), Actor("t"))
    conn.commit()
    acknowledged = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    with psycopg.connect(db_url) as c:  # rolled back: the columns dropped, the migration run again
        c.execute("alter table alert drop column verdict, drop column acknowledged_at")
        ids = [c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail, status)
            select id, 'device:drift:w01019', 'device', 'warning', 'steward', department_code, division_code,
                   %s, 'creeping', %s from terminal where code = %s returning id
            """, (acknowledged - dt.timedelta(hours=1), status, code)).fetchone()[0]
            for status in ("acknowledged", "resolved")]
        c.execute("insert into alert_event (alert_id, at, actor, action) values (%s, %s, 'steward', 'acknowledge')",
                  (ids[0], acknowledged))
        c.execute("set constraints all immediate")  # the inserts' deferred checks, before the migration alters
        c.execute(MIGRATION.read_text())
        got = c.execute("select acknowledged_at, verdict from alert where id = any(%s) order by id", (ids,)).fetchall()
        c.rollback()
    assert got == [(acknowledged, None), (None, None)]
