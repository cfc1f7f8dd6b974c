"""``device_state``: each publisher's last contact, each terminal's last reading, connection changes. Written by
``ingest.latest.LatestBehind``: connection changes and publishers without readings with their batch, the
terminals with readings behind them like their newest values (folded from the readings after a crash)."""

from __future__ import annotations

import psycopg

from ingest.arrays import array, number, quoted

FOLD = """
    insert into device_state as s (code, last_seen_at, last_reading_at)
    select t.code, max(r.received_at), max(r.ts)
      from reading r join terminal t on t.id = r.terminal_id
     where r.received_at >= %(since)s
     group by t.code
     order by t.code
    on conflict (code) do update set
        last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at),
        last_reading_at = greatest(s.last_reading_at, excluded.last_reading_at)
"""
"""A dead worker's held terminals, from the readings received since its debt: last contact is taken as the
reading's receipt (its message arrived a batch earlier at most)."""

State = dict[str, tuple[int | None, int | None]]
"""Device code → (when a message from it last arrived, the time of its newest reading), epoch ms."""


def merged(into: State, state: State) -> State:
    for code, (seen, reading) in state.items():
        held_seen, held_reading = into.get(code, (None, None))
        into[code] = (_later(held_seen, seen), _later(held_reading, reading))
    return into


def upsert(conn: psycopg.Connection, state: State, connections: dict[str, tuple[str, int]]) -> None:
    """One statement (rows locked in code order): later times win, a connection change wins if newer."""
    codes = sorted(set(state) | set(connections))
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
            "seen": array(number(state.get(c, (None, None))[0]) for c in codes),
            "reading": array(number(state.get(c, (None, None))[1]) for c in codes),
            "connection": array(quoted(connections.get(c, (None, None))[0]) for c in codes),
            "connection_ms": array(number(connections.get(c, (None, None))[1]) for c in codes),
        },
    )


def _later(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
