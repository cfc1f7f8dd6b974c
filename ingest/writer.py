"""Writing one batch: readings by COPY and an idempotent merge, the newest values, device
state and dead letters, all in one transaction. The caller acknowledges the batch's
messages only after ``write`` returns (the commit is done).

A batch is made of parts (one per message or frame). When the database refuses the batch
(a value it cannot take), ``write_parts`` bisects it to find the parts it refuses and stores
all the others: one bad message never takes others with it. A failure that passes (a lock, a
deadlock, a timeout: ``core.pgerrors``) is retried, and refuses nothing when it is everyone's."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from core.pgerrors import DatabaseBusy, is_outage, is_transient
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
RETRY_DELAYS_S = (0.05, 0.2, 0.5)
"""Pauses before a write that failed with a transient state is tried again."""
_PROBE = "lock table only reading, latest_reading, device_state, dead_letter in row exclusive mode"
"""Only the tables themselves (a lock on ``reading`` is held on the table first), not its partitions: ~400 more
locks, and the services' role need not have rights on each."""
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
        """Commit the parts together. An outage (``is_outage``: the database is away) goes to the caller, who
        retries the whole. A transient failure (``is_transient``: a lock, a deadlock, a statement timeout) is
        retried ``RETRY_DELAYS_S``; if it persists and the store's tables cannot be locked for writing either, the
        database is busy for everyone: ``DatabaseBusy`` (an outage) goes to the caller and nothing is refused.
        Otherwise the batch is bisected to the parts the database refuses and the rest is committed; a part that
        failed with a transient state is retried once the others are written and refused only if it still
        fails (it is that part's own trouble, like a trigger refusing one device)."""
        written = Written()
        outcome = self._attempt(conn, parts, RETRY_DELAYS_S)
        if not isinstance(outcome, Exception):
            written.stored = outcome
            return written
        if is_transient(outcome):
            self._probe(conn, outcome)
        if len(parts) == 1:
            written.refused[0] = _refusal(outcome)
            return written
        log.warning("the database refused a batch of %d parts (%s); finding the bad ones", len(parts),
                    type(outcome).__name__)
        held: dict[int, Exception] = {}
        wrote = self._split(conn, parts, 0, written, held)
        if held:
            self._retry_held(conn, parts, written, held, wrote)
        return written

    def _split(self, conn: psycopg.Connection, parts: Sequence[Batch], offset: int, written: Written,
               held: dict[int, Exception]) -> bool:
        """Write each half or split it further; returns whether any part was written. A single part failing with
        a transient state is ``held`` (retried later), with another state refused."""
        wrote = False
        half = len(parts) // 2
        for start, piece in ((0, parts[:half]), (half, parts[half:])):
            outcome = self._attempt(conn, piece, ())
            if not isinstance(outcome, Exception):
                written.stored += outcome
                wrote = True
            elif len(piece) > 1:
                wrote = self._split(conn, piece, offset + start, written, held) or wrote
            elif is_transient(outcome):
                held[offset + start] = outcome
            else:
                written.refused[offset + start] = _refusal(outcome)
        return wrote

    def _retry_held(self, conn: psycopg.Connection, parts: Sequence[Batch], written: Written,
                    held: dict[int, Exception], wrote: bool) -> None:
        """The parts that failed with a transient state, retried (all of them per round, ``RETRY_DELAYS_S``
        apart) now that the others are written; refused if they still fail. If none was written, the store is
        probed first (``DatabaseBusy`` if it is busy for everyone)."""
        if not wrote:
            self._probe(conn, next(iter(held.values())))
        for delay in RETRY_DELAYS_S:
            time.sleep(delay)
            for index in list(held):
                outcome = self._attempt(conn, [parts[index]], ())
                if not isinstance(outcome, Exception):
                    written.stored += outcome
                    del held[index]
                else:
                    held[index] = outcome
            if not held:
                return
        for index, exc in held.items():
            written.refused[index] = _refusal(exc)

    def _attempt(self, conn: psycopg.Connection, parts: Sequence[Batch], delays: Sequence[float]) -> int | Exception:
        """Write the parts (retried after each of ``delays`` while the failure is transient); returns the
        readings stored or what the database (or the driver) answered. An outage is raised."""
        outcome = self._try(conn, parts)
        for delay in delays:
            if not (isinstance(outcome, Exception) and is_transient(outcome)):
                break
            time.sleep(delay)
            outcome = self._try(conn, parts)
        return outcome

    def _try(self, conn: psycopg.Connection, parts: Sequence[Batch]) -> int | Exception:
        try:
            return self.write(conn, Batch.merged(parts))
        except Exception as exc:  # whatever the database (or the driver) refuses is isolated, not fatal
            self.forget()  # partitions made in the rolled-back transaction are gone again
            _raise_outage(exc, conn)
            return exc

    @staticmethod
    def _probe(conn: psycopg.Connection, cause: Exception) -> None:
        """Raise ``DatabaseBusy`` if the store's tables cannot be locked as a write locks them (another session
        holds a lock that blocks writers, past ``statement_timeout`` or ``lock_timeout``): the transient failure
        ``cause`` is then everyone's, not one part's."""
        try:
            with conn.transaction():
                conn.execute(_PROBE)
        except Exception as exc:
            _raise_outage(exc, conn)
            if is_transient(exc):
                raise DatabaseBusy(f"the store cannot be written now: {type(cause).__name__}: "
                                   f"{str(cause).strip()[:200]}") from cause
            log.warning("the store's locks could not be probed (%s: %s); the batch is split", type(exc).__name__,
                        str(exc).strip()[:200])

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


def _refusal(exc: Exception) -> str:
    return f"the database refused it: {type(exc).__name__}: {str(exc).strip()[:300]}"


def _raise_outage(exc: Exception, conn: psycopg.Connection) -> None:
    if is_outage(exc, conn):
        if isinstance(exc, psycopg.OperationalError):
            raise exc
        raise psycopg.OperationalError("the connection was lost while writing") from exc


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
