"""Writing one batch: readings by COPY and an idempotent merge, the newest values, device
state and dead letters, all in one transaction. The caller acknowledges the batch's
messages only after ``write`` returns (the commit is done)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import psycopg

from ingest import store
from ingest.validate import Accepted

_NULL = "\\N"
_STAGE = """
    create temp table if not exists reading_stage (
        terminal_id bigint, metric text, ts_ms bigint, value float8, flag text
    ) on commit delete rows
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    publisher: str | None
    payload: bytes
    reason: str
    stored: int = 0


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


class Writer:
    """Owns the staging table and the partition days it has made sure of, per connection."""

    def __init__(self) -> None:
        self._days: set[dt.date] = set()

    def write(self, conn: psycopg.Connection, batch: Batch) -> int:
        """Commit the batch; returns how many readings were new (the rest were already stored)."""
        with conn.transaction():
            stored = self._readings(conn, batch.readings) if batch.readings else 0
            _device_state(conn, batch)
            if batch.dead_letters:
                _dead_letters(conn, batch.dead_letters)
        return stored

    def forget(self) -> None:
        """After a reconnect: partitions may have been dropped meanwhile."""
        self._days.clear()

    def _readings(self, conn: psycopg.Connection, readings: list[Accepted]) -> int:
        days = {dt.datetime.fromtimestamp(r.ts_ms / 1000, dt.UTC).date() for r in readings} - self._days
        if days:
            store.ensure_partitions_for(conn, [dt.datetime.combine(d, dt.time(), dt.UTC) for d in days])
            self._days |= days
        conn.execute(_STAGE)
        text = "".join(f"{r.terminal_id}\t{r.metric}\t{r.ts_ms}\t{r.value!r}\t{r.flag or _NULL}\n" for r in readings)
        with conn.cursor() as cur, cur.copy("copy reading_stage from stdin") as copy:
            copy.write(text)
        stored = conn.execute(
            """
            insert into reading (terminal_id, metric, ts, value, flag, received_at)
            select terminal_id, metric, to_timestamp(ts_ms / 1000.0), value, flag, clock_timestamp()
              from reading_stage
            on conflict do nothing
            """
        ).rowcount
        conn.execute(
            """
            insert into latest_reading as l (terminal_id, metric, ts, value, flag)
            select distinct on (s.terminal_id, s.metric) s.terminal_id, s.metric, to_timestamp(s.ts_ms / 1000.0),
                   s.value, s.flag
              from reading_stage s
             where exists (select 1 from terminal t where t.id = s.terminal_id)  -- deleted since the worker looked
             order by s.terminal_id, s.metric, s.ts_ms desc
            on conflict (terminal_id, metric) do update
               set ts = excluded.ts, value = excluded.value, flag = excluded.flag
             where excluded.ts >= l.ts
            """
        )
        return stored


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
        {
            "code": codes,
            "seen": [batch.seen_ms.get(c) for c in codes],
            "reading": [newest.get(c) for c in codes],
            "connection": [batch.connections.get(c, (None, None))[0] for c in codes],
            "connection_ms": [batch.connections.get(c, (None, None))[1] for c in codes],
        },
    )


def _dead_letters(conn: psycopg.Connection, letters: list[DeadLetter]) -> None:
    sql = "copy dead_letter (topic, publisher, payload, reason, stored) from stdin"
    with conn.cursor() as cur, cur.copy(sql) as cp:
        for letter in letters:
            cp.write_row((letter.topic, letter.publisher, letter.payload, letter.reason, letter.stored))
