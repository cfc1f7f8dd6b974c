"""Writing one batch: readings by COPY and an idempotent merge, the newest values, device
state and dead letters, all in one transaction. The caller acknowledges the batch's
messages only after ``write`` returns (the commit is done).

A batch is made of parts (one per message or frame). When the database refuses the batch
(a value it cannot take), ``write_parts`` bisects it to find the parts it refuses and stores
all the others: one bad message never takes others with it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from core.pgerrors import is_outage
from ingest import store
from ingest.dead_letters import DeadLetter, write_dead_letters
from ingest.latest import LatestBehind, array, quoted
from ingest.validate import Accepted

log = logging.getLogger(__name__)

_NULL = "\\N"
_DAY_MS = 86_400_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
READINGS_CHANNEL = "ganzhi_readings"
"""Notified in the batch's transaction, so delivered when it commits: ``xid|terminal:earliest_ms,...`` (the rule
workers judge these terminals at once; the transaction id tells a worker whether it has read the batch already)."""
_NOTIFY_MAX = 7000  # bytes of one payload (PostgreSQL's limit is 8000)
_COPY_READINGS = "copy reading (terminal_id, metric, ts, value, flag) from stdin"
_STAGE = """
    create temp table if not exists reading_stage (
        terminal_id bigint, metric text, ts timestamptz, value float8, flag text
    ) on commit delete rows
"""


@dataclass
class Batch:
    readings: list[Accepted] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    seen_ms: dict[str, int] = field(default_factory=dict)
    """Publisher code → when a message from it last arrived."""
    connections: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Device code → (online | offline, when), from status messages."""

    def saw(self, code: str, at_ms: int) -> None:
        if at_ms > self.seen_ms.get(code, 0):
            self.seen_ms[code] = at_ms

    def __len__(self) -> int:
        return len(self.readings) + len(self.dead_letters) + len(self.connections)

    @classmethod
    def merged(cls, parts: Sequence[Batch]) -> Batch:
        if len(parts) == 1:
            return parts[0]
        whole = cls()
        for part in parts:
            whole.readings += part.readings
            whole.dead_letters += part.dead_letters
            whole.connections.update(part.connections)  # parts come in arrival order: the last state wins
            for code, at in part.seen_ms.items():
                whole.saw(code, at)
        return whole


@dataclass
class Written:
    stored: int = 0
    """Readings that were new (the others were stored before)."""
    refused: dict[int, str] = field(default_factory=dict)
    """Index of each part the database refused → why; none of it was written."""


class Writer:
    """Owns the staging table and the partition days it has made sure of, per connection, and the newest values
    (``latest``: by default written with every batch; an ingest worker's are written behind, ``ingest.latest``)."""

    def __init__(self, latest: LatestBehind | None = None) -> None:
        self._days: set[dt.date] = set()
        self.latest = latest or LatestBehind("", every_s=0)

    def write(self, conn: psycopg.Connection, batch: Batch) -> int:
        """Commit the batch; returns how many readings were new (the rest were already stored)."""
        with conn.transaction():
            stored = self._readings(conn, batch.readings) if batch.readings else 0
            committed = self.latest.within(conn, batch.readings)
            _device_state(conn, batch)
            if batch.readings:
                notify_readings(conn, batch.readings)
            if batch.dead_letters:
                write_dead_letters(conn, batch.dead_letters)
        committed()
        return stored

    def write_parts(self, conn: psycopg.Connection, parts: Sequence[Batch]) -> Written:
        """Commit the parts together; if the database refuses that, bisect to the parts it refuses and commit
        the rest. An outage (``is_outage``: the database is away) goes to the caller, who retries the whole;
        any other error, ``OperationalError`` or not (a statement cancelled, a limit exceeded), is a refusal."""
        written = Written()
        self._write_or_split(conn, parts, 0, written)
        return written

    def _write_or_split(self, conn: psycopg.Connection, parts: Sequence[Batch], offset: int, written: Written) -> None:
        try:
            written.stored += self.write(conn, Batch.merged(parts))
            return
        except Exception as exc:  # whatever the database (or the driver) refuses is isolated, not fatal
            self.forget()  # partitions made in the rolled-back transaction are gone again
            if is_outage(exc, conn):
                if isinstance(exc, psycopg.OperationalError):
                    raise
                raise psycopg.OperationalError("the connection was lost while writing") from exc
            if len(parts) == 1:
                written.refused[offset] = f"the database refused it: {type(exc).__name__}: {str(exc).strip()[:300]}"
                return
            log.warning("the database refused a batch of %d parts (%s); finding the bad ones", len(parts),
                        type(exc).__name__)
        half = len(parts) // 2
        self._write_or_split(conn, parts[:half], offset, written)
        self._write_or_split(conn, parts[half:], offset + half, written)

    def forget(self) -> None:
        """After a reconnect: partitions may have been dropped meanwhile."""
        self._days.clear()

    def _readings(self, conn: psycopg.Connection, readings: list[Accepted]) -> int:
        self._ensure_partitions(conn, readings)
        text = _copy_text(readings)
        try:
            # Fast path: COPY straight into the store. A reading stored before (a redelivery after a crash) makes
            # the whole COPY fail; then the batch goes through a staging table and an idempotent merge.
            with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_READINGS) as copy:
                copy.write(text)
            stored = len(readings)
        except psycopg.errors.UniqueViolation:
            stored = self._merge(conn, text)
        return stored

    def _ensure_partitions(self, conn: psycopg.Connection, readings: list[Accepted]) -> None:
        days = {r.ts_ms // _DAY_MS for r in readings}
        missing = {dt.date.fromordinal(_EPOCH_ORDINAL + d) for d in days} - self._days
        if missing:
            store.ensure_partitions_for(conn, [dt.datetime.combine(d, dt.time(), dt.UTC) for d in missing])
            self._days |= missing

    @staticmethod
    def _merge(conn: psycopg.Connection, text: str) -> int:
        conn.execute(_STAGE)
        with conn.cursor() as cur, cur.copy("copy reading_stage from stdin") as cp:
            cp.write(text)
        return conn.execute(
            """
            insert into reading (terminal_id, metric, ts, value, flag)
            select terminal_id, metric, ts, value, flag from reading_stage
            on conflict do nothing
            """
        ).rowcount


def _copy_text(readings: list[Accepted]) -> str:
    """COPY text rows; readings of one message share their time, so each distinct time is formatted once."""
    stamps: dict[int, str] = {}
    lines = []
    for r in readings:
        ts = stamps.get(r.ts_ms)
        if ts is None:
            ts = stamps[r.ts_ms] = dt.datetime.fromtimestamp(r.ts_ms / 1000, dt.UTC).isoformat()
        lines.append(f"{r.terminal_id}\t{r.metric}\t{ts}\t{r.value!r}\t{r.flag or _NULL}\n")
    return "".join(lines)


def notify_readings(conn: psycopg.Connection, readings: list[Accepted]) -> None:
    """Hand the batch's terminals to the rule workers when the transaction commits."""
    earliest: dict[int, int] = {}
    for r in readings:
        if r.ts_ms < earliest.get(r.terminal_id, r.ts_ms + 1):
            earliest[r.terminal_id] = r.ts_ms
    xid = conn.execute("select pg_current_xact_id()::text").fetchone()[0]
    items = [f"{t}:{ms}" for t, ms in earliest.items()]
    per = _NOTIFY_MAX // 32  # an item is at most 32 bytes
    for at in range(0, len(items), per):
        conn.execute("select pg_notify(%s, %s)", (READINGS_CHANNEL, f"{xid}|{','.join(items[at:at + per])}"))


def _device_state(conn: psycopg.Connection, batch: Batch) -> None:
    """Last contact of every publisher, last reading of every terminal, connection changes."""
    newest: dict[str, int] = {}
    for reading in batch.readings:
        if reading.ts_ms > newest.get(reading.code, 0):
            newest[reading.code] = reading.ts_ms
    codes = sorted(set(batch.seen_ms) | set(newest) | set(batch.connections))
    if not codes:
        return
    conn.execute(
        """
        insert into device_state as s (code, last_seen_at, last_reading_at, connection, connection_at)
        select code, to_timestamp(seen / 1000.0), to_timestamp(reading / 1000.0), connection,
               to_timestamp(connection_ms / 1000.0)
          from unnest(%(code)s::text[], %(seen)s::bigint[], %(reading)s::bigint[], %(connection)s::text[],
                      %(connection_ms)s::bigint[]) as u(code, seen, reading, connection, connection_ms)
        on conflict (code) do update set
            last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at),
            last_reading_at = greatest(s.last_reading_at, excluded.last_reading_at),
            connection = case when excluded.connection_at >= coalesce(s.connection_at, '-infinity')
                              then coalesce(excluded.connection, s.connection) else s.connection end,
            connection_at = greatest(s.connection_at, excluded.connection_at)
        """,
        {  # array literals made with join: psycopg dumps a list element by element in Python
            "code": array(quoted(c) for c in codes),
            "seen": array(_number(batch.seen_ms.get(c)) for c in codes),
            "reading": array(_number(newest.get(c)) for c in codes),
            "connection": array(quoted(batch.connections.get(c, (None, None))[0]) for c in codes),
            "connection_ms": array(_number(batch.connections.get(c, (None, None))[1]) for c in codes),
        },
    )


def _number(value: int | None) -> str:
    return "NULL" if value is None else str(value)
