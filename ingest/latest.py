"""The newest value of each (terminal, metric), and each terminal's ``device_state``, written behind the readings.

``latest_reading`` holds one row per key, rewritten whenever a newer reading arrives. Written with every batch,
a key that reports several times a second is rewritten several times a second: at 8,000 messages/s from
1,000 ten-metric terminals that was one row update per reading, PostgreSQL's largest cost per message. A
worker's ``LatestBehind`` instead keeps the newest reading of each key its batches committed, and the last
contact and last reading of each terminal that sent readings (``device_state``: one row per terminal per batch
before), and writes them once per interval ``every_s``, whatever the rate. The held terminals are cut into
``SLICES`` slices, each due at its own phase of the interval and written in the transaction of the batch then
being committed (or on its own when no batch comes): each batch writes about a tenth of the held keys, not all
of them once a second on one batch (≈ 100 ms under load, docs/capacity.md). Connection changes and publishers
that sent no readings (pole gateways, status messages) are written with their batch.

Freshness: while its worker runs, ``latest_reading`` and ``device_state`` lag the committed readings by at most
``every_s`` plus two batches' write times (a slice is due at most ``every_s`` after its first held key, and is
written by the next batch or idle flush). The readings themselves are committed (and acknowledged) as before.
Each run of a worker (``run``) keeps one ``latest_debt`` row while it holds anything, saying since when the
readings it holds were received (the oldest held slice's); it is written in the transactions that hold a slice
or write one, and deleted, by that run only, when nothing is held. A worker that dies holding keys leaves its
row; ``repair`` folds every reading received since then into ``latest_reading`` and its terminals'
``device_state``: the next run of its client id does it before its first batch, and any worker, at its next
repair (every ``STALE_S``), for a row older than ``STALE_S`` (a running worker's row is never older than
``every_s`` unless the database is away). Folding is monotone (a stored newer value wins), so doing it twice or
alongside the owner is harmless. Not folded: the last contact of a publisher without readings (written at once).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg

from ingest import device_state
from ingest.arrays import array, quoted
from ingest.device_state import State
from ingest.validate import Accepted

log = logging.getLogger(__name__)

STALE_S = 60.0
"""A debt this old belongs to a worker that is gone (or cut off from the database): any worker repairs it."""
SLICES = 10
"""The held keys are written in this many slices, each due at its own phase of the interval: written all at once,
the 10,000 keys of 1,000 ten-metric terminals were one statement of ≈ 40 ms (docs/capacity.md) on one batch."""

_UPSERT = """
    insert into latest_reading as l (terminal_id, metric, ts, value, flag)
    select u.terminal_id, u.metric, to_timestamp(u.ts_ms / 1000.0), u.value, u.flag
      from unnest(%(id)s::bigint[], %(metric)s::text[], %(ts)s::bigint[], %(value)s::float8[], %(flag)s::text[])
           as u(terminal_id, metric, ts_ms, value, flag)
     where exists (select 1 from terminal t where t.id = u.terminal_id)  -- deleted since the worker looked
     order by u.terminal_id, u.metric
    on conflict (terminal_id, metric) do update
       set ts = excluded.ts, value = excluded.value, flag = excluded.flag
     where excluded.ts >= l.ts
"""
_FOLD = """
    insert into latest_reading as l (terminal_id, metric, ts, value, flag)
    select distinct on (r.terminal_id, r.metric) r.terminal_id, r.metric, r.ts, r.value, r.flag
      from reading r
     where r.received_at >= %(since)s and exists (select 1 from terminal t where t.id = r.terminal_id)
     order by r.terminal_id, r.metric, r.ts desc
    on conflict (terminal_id, metric) do update
       set ts = excluded.ts, value = excluded.value, flag = excluded.flag
     where excluded.ts >= l.ts
"""

Newest = dict[tuple[int, str], Accepted]
_Part = tuple[Newest, State]
"""A slice's share of a batch: its newest values and its terminals' device states."""


def newest(readings: Iterable[Accepted], into: Newest | None = None) -> Newest:
    """The newest reading of each (terminal, metric) (of a tie, the later one), added to ``into``."""
    keys: Newest = {} if into is None else into
    for r in readings:
        key = (r.terminal_id, r.metric)
        held = keys.get(key)
        if held is None or r.ts_ms >= held.ts_ms:
            keys[key] = r
    return keys


def write(conn: psycopg.Connection, readings: Iterable[Accepted]) -> None:
    """The newest of ``readings`` for each key into ``latest_reading``, where newer than the stored one."""
    upsert(conn, newest(readings).values())


def upsert(conn: psycopg.Connection, rows: Iterable[Accepted]) -> None:
    """Keep each row (one per key) in ``latest_reading`` if newer than the stored one. Rows are locked in key
    order, whatever order they come in: two workers of a shared subscription upsert the same keys, and locking
    them in different orders deadlocks. The columns go as array literals made with ``join`` (psycopg dumps a
    list element by element in Python, which cost more than the rest of the write)."""
    rows = list(rows)
    if not rows:
        return
    conn.execute(_UPSERT, {
        "id": array(str(r.terminal_id) for r in rows), "metric": array(quoted(r.metric) for r in rows),
        "ts": array(str(r.ts_ms) for r in rows), "value": array(repr(r.value) for r in rows),
        "flag": array(quoted(r.flag) for r in rows)})


@dataclass
class _Slice:
    """The held keys of some terminals (``terminal_id % SLICES``), written together at the slice's deadline."""

    held: Newest = field(default_factory=dict)
    state: State = field(default_factory=dict)
    """``device_state`` of its terminals that sent readings."""
    due_at: float = 0.0
    """When its keys must be written (monotonic): the first of its deadlines after it was first held."""
    since: dt.datetime | None = None
    """The database time of the transaction that first held its keys: its readings were received after it."""


class LatestBehind:
    """One worker's keys committed but not yet in ``latest_reading`` (see the module's docstring)."""

    def __init__(self, owner: str, every_s: float, slices: int = SLICES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.owner = owner
        self.run = uuid.uuid4().hex
        """This run of the worker: its ``latest_debt`` row, the only one it deletes, is (owner, run)."""
        self.every_s = every_s
        self._slices = [_Slice() for _ in range(slices)]
        self._clock = clock
        self._phase = clock()
        self._debt: dt.datetime | None = None
        """The ``since`` of this run's committed ``latest_debt`` row (None: it has none)."""

    @property
    def held(self) -> int:
        return sum(len(s.held) for s in self._slices)

    def within(self, conn: psycopg.Connection, readings: list[Accepted], seen_ms: dict[str, int],
               connections: dict[str, tuple[str, int]]) -> Callable[[], None]:
        """Inside a batch's transaction: write the due slices' held keys and device states with the batch's of
        those slices, and at once the connection changes and the publishers without readings; hold the batch's
        others, and keep this run's debt row saying since when the held ones were received. Returns what to do
        once that transaction has committed."""
        parts = self._split(readings, seen_ms, connections)
        now = {n: parts.pop(n) for n in list(parts) if self.every_s <= 0 or self._due(self._slices[n])}
        due = [n for n, s in enumerate(self._slices) if s.held and (self.every_s <= 0 or self._due(s))]
        held_codes = {code for _, state in parts.values() for code in state}
        at_once: State = {code: (seen, None) for code, seen in seen_ms.items() if code not in held_codes}
        if connections:
            device_state.merged(at_once, {r.code: (None, r.ts_ms) for r in readings if r.code in connections})
        for _, state in now.values():
            device_state.merged(at_once, state)
        return self._step(conn, due, now, parts, at_once, connections)

    def flush(self, conn: psycopg.Connection, *, only_due: bool = False) -> None:
        """Write the held keys now (``only_due``: the due slices'), in a transaction of their own."""
        due = [n for n, s in enumerate(self._slices) if s.held and (not only_due or self._due(s))]
        if not due:
            return
        with conn.transaction():
            committed = self._step(conn, due, {}, {}, {}, {})
        committed()

    def _step(self, conn: psycopg.Connection, due: list[int], now: dict[int, _Part], hold: dict[int, _Part],
              at_once: State, connections: dict[str, tuple[str, int]]) -> Callable[[], None]:
        """Write the held keys and states of the slices ``due`` with the batch's keys ``now`` and its states
        ``at_once``, and settle the debt of what is held after: the slices not due and the batch's ``hold``."""
        self._write(conn, due, {key: r for keys, _ in now.values() for key, r in keys.items()}, at_once, connections)
        kept = [s.since for n, s in enumerate(self._slices) if s.held and n not in due]
        newly = [n for n in hold if not self._slices[n].held]
        started = None
        if not kept and not newly:
            debt = None
            if self._debt is not None:
                conn.execute("delete from latest_debt where worker = %(worker)s and run = %(run)s",
                             {"worker": self.owner, "run": self.run})
        elif newly or due or self._debt is None:
            debt, started = conn.execute(
                """
                insert into latest_debt as d (worker, run, since) values (%(worker)s, %(run)s,
                                                                           least(now(), %(oldest)s))
                on conflict (worker, run) do update set since = excluded.since
                returning since, now()
                """, {"worker": self.owner, "run": self.run, "oldest": min(kept) if kept else None}).fetchone()
        else:
            debt = self._debt

        def committed() -> None:
            for n in due:
                self._slices[n] = _Slice()
            for n, (keys, state) in hold.items():
                held = self._slices[n]
                if not held.held:
                    held.since, held.due_at = started, self._deadline(n)
                newest(keys.values(), held.held)
                device_state.merged(held.state, state)
            self._debt = debt
        return committed

    def _write(self, conn: psycopg.Connection, due: list[int], batch: Newest, at_once: State,
               connections: dict[str, tuple[str, int]]) -> None:
        """The held keys and states of ``due`` with the batch's, one statement per table (one lock order) inside a
        savepoint. The held ones' batches are committed: if the database refuses the statements, the held ones are
        given up (logged: their readings are stored, the newest values wait for the next ones) and the batch's
        own are written alone (refused with their batch, if they are the bad ones), so a held value never fails
        the batches after it."""
        keys: Newest = {}
        state: State = {}
        for n in due:
            keys.update(self._slices[n].held)
            device_state.merged(state, self._slices[n].state)
        if not (keys or batch or state or at_once or connections):
            return
        try:
            with conn.transaction():
                upsert(conn, newest(batch.values(), keys).values())
                device_state.upsert(conn, device_state.merged(state, at_once), connections)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.warning("latest values refused (%s: %s); %d held ones given up", type(exc).__name__,
                        str(exc).strip()[:200], len(keys))
            upsert(conn, batch.values())
            device_state.upsert(conn, at_once, connections)

    def _split(self, readings: list[Accepted], seen_ms: dict[str, int],
               connections: dict[str, tuple[str, int]]) -> dict[int, _Part]:
        """The batch's newest value of each key (of a tie, the later one) and the device state of each terminal
        that sent readings (but those whose connection changed: written at once), by slice of their terminal. One
        pass: it runs for every reading."""
        slices = len(self._slices)
        parts: dict[int, _Part] = {}
        for r in readings:
            part = parts.get(r.terminal_id % slices)
            if part is None:
                part = parts[r.terminal_id % slices] = ({}, {})
            keys, state = part
            key = (r.terminal_id, r.metric)
            held = keys.get(key)
            if held is None or r.ts_ms >= held.ts_ms:
                keys[key] = r
            last = state.get(r.code)
            if last is None or r.ts_ms > last[1]:
                state[r.code] = (seen_ms.get(r.code), r.ts_ms)
        for _, state in parts.values():
            for code in connections:
                state.pop(code, None)
        return parts

    def _due(self, held: _Slice) -> bool:
        return bool(held.held) and self._clock() >= held.due_at

    def _deadline(self, n: int) -> float:
        """Slice ``n``'s next deadline: every ``every_s``, each slice at its own phase of the interval (so each
        batch writes about one slice's keys, not every key once a second), at most ``every_s`` from now."""
        if self.every_s <= 0:
            return 0.0
        first = self._phase + n * self.every_s / len(self._slices)
        return first + (math.floor((self._clock() - first) / self.every_s) + 1) * self.every_s

    def repair(self, conn: psycopg.Connection, *, own: bool) -> int:
        """Fold the readings of every stale debt, and with ``own`` of this owner's other runs (its previous run's:
        call it so before the first batch), into ``latest_reading``; returns how many debts were settled. This
        run's own debt is never taken. Only ``OperationalError`` (the database away) is raised: a fold the
        database refuses is logged and its debt left, under its run, for a later repair."""
        debts = conn.execute(
            "select worker, run, since from latest_debt where not (worker = %(me)s and run = %(run)s) "
            "and ((%(own)s and worker = %(me)s) or since < now() - make_interval(secs => %(stale)s)) order by since",
            {"own": own, "me": self.owner, "run": self.run, "stale": STALE_S}).fetchall()
        conn.commit()
        settled = 0
        for worker, run, since in debts:
            try:
                with conn.transaction():
                    folded = conn.execute(_FOLD, {"since": since}).rowcount
                    conn.execute(device_state.FOLD, {"since": since})
                    conn.execute("delete from latest_debt where worker = %(worker)s and run = %(run)s "
                                 "and since = %(since)s", {"worker": worker, "run": run, "since": since})
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                log.error("latest values of %s (run %s) since %s not folded in (%s: %s); retried later", worker,
                          run, since, type(exc).__name__, str(exc).strip()[:200])
                continue
            settled += 1
            log.warning("latest values of %s (run %s) since %s folded in from the readings (%d keys): it stopped "
                        "without writing them", worker, run, since, folded)
        return settled
