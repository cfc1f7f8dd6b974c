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
from psycopg import sql

from core import partitions
from ingest import timescale

log = logging.getLogger(__name__)

TABLE = "reading"
PARTITION_MAKER = "ensure_reading_partition"
"""The SQL function (migration 0090, SECURITY DEFINER) that adds a day's partition as the table's owner."""
FINITE = "reading_value_finite"
_UNVALIDATED = """
    select n.nspname, c.relname
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_namespace n on n.oid = c.relnamespace
      join pg_constraint k on k.conrelid = c.oid and k.conname = %(name)s
     where i.inhparent = %(table)s::regclass and not k.convalidated
     order by c.relname
"""
_TABLE_UNVALIDATED = """
    select 1 from pg_constraint where conrelid = %(table)s::regclass and conname = %(name)s and not convalidated
"""
_MOVE_NON_FINITE = """
    with moved as (
        delete from {partition} where value in ('Infinity', '-Infinity', 'NaN')
        returning terminal_id, metric, ts, value, flag
    )
    insert into dead_letter (topic, publisher, payload, payload_size, payload_sha256, reason)
    select 'reading', t.code, p.payload, length(p.payload), sha256(p.payload),
           'stored with a value that is not a finite number before migration 0086; moved out of the store'
      from moved m
      left join terminal t on t.id = m.terminal_id
     cross join lateral (select convert_to(json_build_object('metric', m.metric, 'ts', m.ts, 'value', m.value::text,
                                                             'flag', m.flag)::text, 'UTF8') as payload) p
"""


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
    validate_finite(conn)
    return Maintenance("partitions", created, dropped, expired)


def validate_finite(conn: psycopg.Connection, most: int = 24) -> int:
    """Validate ``reading_value_finite`` (migration 0086, NOT VALID) on up to ``most`` partitions (or chunks) not
    validated yet, each in a transaction of its own: its Infinity/NaN rows stored before 0086 move to the dead
    letters (the terminal's code and the row as JSON), then it is validated (a scan under SHARE UPDATE EXCLUSIVE:
    writers go on). The table's own constraint is validated once every partition's is (nothing left to scan). A
    partition whose lock is not had within ``lock_timeout`` is left for the next run; returns how many were
    validated."""
    pending = conn.execute(_UNVALIDATED, {"table": TABLE, "name": FINITE}).fetchall()
    conn.commit()
    done = 0
    for schema, name in pending[:most]:
        partition = sql.Identifier(schema, name)
        try:
            with conn.transaction():
                conn.execute("set local lock_timeout = '5s'")
                moved = conn.execute(sql.SQL(_MOVE_NON_FINITE).format(partition=partition)).rowcount
                conn.execute(sql.SQL("alter table {} validate constraint {}").format(partition, sql.Identifier(FINITE)))
        except psycopg.errors.LockNotAvailable:
            log.warning("reading_value_finite: %s.%s is locked; validated at the next run", schema, name)
            continue
        done += 1
        log.info("reading_value_finite: %s.%s validated (%d non-finite readings moved to the dead letters)", schema,
                 name, moved)
    if len(pending) == done:
        with conn.transaction():
            conn.execute("set local lock_timeout = '5s'")
            if conn.execute(_TABLE_UNVALIDATED, {"table": TABLE, "name": FINITE}).fetchone():
                conn.execute(sql.SQL("alter table {} validate constraint {}").format(sql.Identifier(TABLE),
                                                                                     sql.Identifier(FINITE)))
    return done


def ensure_partitions_for(conn: psycopg.Connection, timestamps: Iterable[dt.datetime]) -> list[str]:
    """Partitions for late or backfilled readings, created inside the caller's transaction by the owner's function
    (the ingest workers run as the application role, which does not own ``reading``)."""
    if partitions.timescaledb_installed(conn):
        return []
    days = {ts.astimezone(dt.UTC).date() for ts in timestamps}
    return partitions.ensure_daily_partitions(conn, TABLE, days, maker=PARTITION_MAKER)
