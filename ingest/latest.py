"""The newest value of each (terminal, metric), written behind the readings.

``latest_reading`` holds one row per key, rewritten whenever a newer reading arrives. Written with every batch,
a key that reports several times a second is rewritten several times a second: at 8,000 messages/s from
1,000 ten-metric terminals that was one row update per reading, PostgreSQL's largest cost per message. A
worker's ``LatestBehind`` instead keeps the newest reading of each key its batches committed and writes them
when the oldest has waited ``every_s``, in the transaction of the batch that is then being committed (or on
its own when no batch comes): each key at most once per interval, whatever the rate.

Freshness: while its worker runs, ``latest_reading`` lags the committed readings by at most ``every_s`` plus
two batches' write times (a key held by a batch not yet due is written by the next). The readings themselves
are committed (and acknowledged) as before. A worker that dies holding keys not written leaves its
``latest_debt_run`` row, keyed by its run (written with the first batch it held back, deleted by that run
only: an old process of the same client id flushing after a session takeover must not take the new run's);
``repair`` folds every reading received since then into ``latest_reading``: the next worker to start does it
for its client id's other runs, and any worker, at its next repair (every ``STALE_S``), for a row older than
``STALE_S`` (a running worker's row is never older than ``every_s`` unless the database is away). Folding is
monotone (a stored newer value wins), so doing it twice or alongside the owner is harmless. A repair may take
the row of a run still running (the old process of a takeover, a worker cut off from the database): every
batch that holds keys writes its run's row again (with the first ``since``) if it is gone, and locks it, so a
repair waits for that batch and folds its readings too.

``latest_debt`` (worker, since) is the previous release's table, still written by its workers while an upgrade
runs (docs/deploy.md §8): repair folds and deletes its rows too, a client id's own at start, anyone's once
stale.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable

import psycopg

from core.pgerrors import is_outage, is_transient
from ingest.validate import Accepted

log = logging.getLogger(__name__)

STALE_S = 60.0
"""A debt this old belongs to a worker that is gone (or cut off from the database): any worker repairs it."""

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

_OWE = """
    insert into latest_debt_run as d (worker, run, since)
    values (%(worker)s, %(run)s, coalesce(%(since)s::timestamptz, now()))
    on conflict (worker, run) do update set since = least(d.since, excluded.since)
    returning since
"""
_DEBTS = """
    select worker, run, since from latest_debt_run
     where not (worker = %(me)s and run = %(run)s)
       and ((%(own)s and worker = %(me)s) or since < now() - make_interval(secs => %(stale)s))
    union all
    select worker, null, since from latest_debt  -- the previous release's, written while an upgrade runs
     where (%(own)s and worker = %(me)s) or since < now() - make_interval(secs => %(stale)s)
    order by since
"""

Newest = dict[tuple[int, str], Accepted]


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


class LatestBehind:
    """One worker's keys committed but not yet in ``latest_reading`` (see the module's docstring)."""

    def __init__(self, owner: str, every_s: float) -> None:
        self.owner = owner
        self.run = uuid.uuid4().hex
        """This run of the worker: its ``latest_debt_run`` row, the only one it deletes, is (owner, run)."""
        self.every_s = every_s
        self._held: Newest = {}
        self._held_since: float | None = None
        """When the oldest held key was committed (monotonic)."""
        self._owed_since: dt.datetime | None = None
        """Since when this run's ``latest_debt_run`` row (committed) says it owes; None: it owes nothing."""

    @property
    def held(self) -> int:
        return len(self._held)

    def due(self) -> bool:
        return self._held_since is not None and time.monotonic() - self._held_since >= self.every_s

    def within(self, conn: psycopg.Connection, readings: list[Accepted]) -> Callable[[], None]:
        """Inside a batch's transaction: write the held keys with the batch's if due, else hold the batch's (and
        record the debt). Returns what to do once that transaction has committed."""
        batch = newest(readings)
        if self.every_s <= 0 and not self._held:
            upsert(conn, batch.values())
            return self._written
        if self.due():
            if self._write_held(conn, batch):
                self._settle(conn)
                return self._written
            return self._retry_later
        if not batch:
            return lambda: None
        since = conn.execute(_OWE, {"worker": self.owner, "run": self.run, "since": self._owed_since}).fetchone()[0]
        return lambda: self._hold(batch, since)

    def flush(self, conn: psycopg.Connection) -> None:
        """Write the held keys now, in a transaction of their own."""
        if not self._held:
            return
        with conn.transaction():
            done = self._write_held(conn, {})
            if done:
                self._settle(conn)
        (self._written if done else self._retry_later)()

    def _write_held(self, conn: psycopg.Connection, batch: Newest) -> bool:
        """The held keys with the batch's, in one statement (one lock order) inside a savepoint; returns whether
        the held keys were written. The held keys' batches are committed: if the statement fails, the batch's own
        keys are written alone (refused with their batch, if they are the bad ones), so a held value never fails
        the batches after it. A transient failure (a lock, a timeout) keeps the held keys and the debt for
        another try (``every_s`` later); a refusal gives them up (logged: their readings are stored, the newest
        values wait for the next ones)."""
        try:
            with conn.transaction():
                upsert(conn, newest(batch.values(), dict(self._held)).values())
            return True
        except psycopg.Error as exc:
            if is_outage(exc, conn):
                raise
            transient = is_transient(exc)
            log.warning("latest values %s (%s: %s); %d held ones %s", "not written now" if transient else "refused",
                        type(exc).__name__, str(exc).strip()[:200], len(self._held),
                        "kept for another try" if transient else "given up")
            upsert(conn, batch.values())
            return not transient

    def _retry_later(self) -> None:
        """The held keys stay held (their debt too) and are due again ``every_s`` from now."""
        self._held_since = time.monotonic()

    def _settle(self, conn: psycopg.Connection) -> None:
        if self._owed_since is not None:
            conn.execute("delete from latest_debt_run where worker = %(worker)s and run = %(run)s",
                         {"worker": self.owner, "run": self.run})

    def _written(self) -> None:
        self._held, self._held_since, self._owed_since = {}, None, None

    def _hold(self, batch: Newest, since: dt.datetime) -> None:
        newest(batch.values(), self._held)
        self._owed_since = since
        if self._held_since is None:
            self._held_since = time.monotonic()

    def repair(self, conn: psycopg.Connection, *, own: bool) -> int:
        """Fold the readings of every stale debt, and with ``own`` of this owner's other runs (its previous run's:
        call it so before the first batch), into ``latest_reading``; returns how many debts were settled. This
        run's own debt is never taken. Only an outage (the database away) or a transient failure of the debts'
        query (retry) is raised: a fold that fails is logged and its debt left, under its run, for a later repair,
        and so are all debts if their query is refused."""
        try:
            debts = conn.execute(_DEBTS, {"own": own, "me": self.owner, "run": self.run,
                                          "stale": STALE_S}).fetchall()
            conn.commit()
        except psycopg.Error as exc:
            if is_outage(exc, conn) or is_transient(exc):
                raise
            conn.rollback()
            log.error("latest debts could not be read (%s: %s); repaired later", type(exc).__name__,
                      str(exc).strip()[:200])
            return 0
        settled = 0
        for worker, run, since in debts:
            try:
                with conn.transaction():
                    if not _take_debt(conn, worker, run, since):
                        continue  # settled meanwhile by its run or another repair
                    folded = conn.execute(_FOLD, {"since": since}).rowcount
            except psycopg.Error as exc:
                if is_outage(exc, conn):
                    raise
                log.error("latest values of %s (run %s) since %s not folded in (%s: %s); retried later", worker,
                          run, since, type(exc).__name__, str(exc).strip()[:200])
                continue
            settled += 1
            log.warning("latest values of %s (run %s) since %s folded in from the readings (%d keys): it stopped "
                        "without writing them", worker, run, since, folded)
        return settled


def _take_debt(conn: psycopg.Connection, worker: str, run: str | None, since: dt.datetime) -> bool:
    """Delete the debt before folding it: a batch of its run still running waits for this row's lock, so the fold
    (a later statement) sees its readings, and it writes the row again if it holds keys. ``run`` None: a row of
    ``latest_debt`` (the previous release's)."""
    if run is None:
        return conn.execute("delete from latest_debt where worker = %(worker)s and since = %(since)s",
                            {"worker": worker, "since": since}).rowcount > 0
    return conn.execute("delete from latest_debt_run where worker = %(worker)s and run = %(run)s "
                        "and since = %(since)s", {"worker": worker, "run": run, "since": since}).rowcount > 0


def array(elements: Iterable[str]) -> str:
    """An array literal of elements already in its syntax (numbers, NULL, quoted text)."""
    return "{" + ",".join(elements) + "}"


def quoted(text: str | None) -> str:
    """A text element of an array literal (None: NULL)."""
    if text is None:
        return "NULL"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
