"""Daily range partitions for time-partitioned tables on plain PostgreSQL.

Partitions are named ``{table}_pYYYYMMDD`` and cover one UTC day each. They are made
ahead of time by maintenance and on demand for late data, and dropped whole once past
the retention period. Where the ``timescaledb`` extension is installed, hypertable
chunks and policies do this instead and these functions are not used.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from collections.abc import Iterable

import psycopg
from psycopg import sql

_DAY = dt.timedelta(days=1)


def timescaledb_installed(conn: psycopg.Connection) -> bool:
    """Whether the timescaledb extension is installed in this database."""
    row = conn.execute("select 1 from pg_extension where extname = 'timescaledb'").fetchone()
    return row is not None


def partition_name(table: str, day: dt.date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def existing_partitions(conn: psycopg.Connection, table: str) -> dict[dt.date, str]:
    """The daily partitions of ``table`` by day, read from the catalogue."""
    rows = conn.execute(
        """
        select c.relname
          from pg_inherits i
          join pg_class c on c.oid = i.inhrelid
          join pg_class p on p.oid = i.inhparent
         where p.relname = %s
        """,
        (table,),
    ).fetchall()
    pattern = re.compile(rf"^{re.escape(table)}_p(\d{{8}})$")
    days = {}
    for (name,) in rows:
        match = pattern.match(name)
        if match:
            days[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def ensure_daily_partitions(conn: psycopg.Connection, table: str, days: Iterable[dt.date], *,
                            maker: str | None = None) -> list[str]:
    """Create the missing partitions for ``days``; returns the names created.

    Runs inside the caller's transaction and takes a transaction-level advisory lock
    per table, so concurrent callers never race on the same partition. With ``maker``, each is created by that
    SQL function of the day (run as the table's owner, SECURITY DEFINER): a caller that does not own the table.
    """
    wanted = sorted(set(days))
    if not wanted:
        return []
    conn.execute("select pg_advisory_xact_lock(%s)", (_lock_key(table),))
    have = existing_partitions(conn, table)
    created = []
    for day in wanted:
        if day in have:
            continue
        name = partition_name(table, day)
        if maker is None:
            conn.execute(
                sql.SQL("create table {} partition of {} for values from ({}) to ({})").format(
                    sql.Identifier(name),
                    sql.Identifier(table),
                    sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                    sql.Literal(f"{(day + _DAY).isoformat()} 00:00:00+00"),
                )
            )
        else:
            conn.execute(sql.SQL("select {}(%(day)s)").format(sql.Identifier(maker)), {"day": day})
        created.append(name)
    return created


def drop_partitions_before(conn: psycopg.Connection, table: str, cutoff: dt.date) -> list[str]:
    """Drop every daily partition whose whole day lies before ``cutoff``; returns the names dropped."""
    conn.execute("select pg_advisory_xact_lock(%s)", (_lock_key(table),))
    dropped = []
    for day, name in sorted(existing_partitions(conn, table).items()):
        if day < cutoff:
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from ``first`` to ``last`` inclusive."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _lock_key(table: str) -> int:
    return zlib.crc32(f"partitions:{table}".encode())
