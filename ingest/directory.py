"""The ledger as ingestion sees it: which codes may say what, cached entry by entry.

Nothing is loaded whole (plan for 10^6 terminals): a code is looked up when a message first names
it, the codes of one batch in one indexed query, and kept. A code the ledger does not have is
remembered as unknown for ``NEGATIVE_TTL_S`` only. Changes reach the cache at once: triggers on
terminal and pole send ``{"table", "op", "id", "code"}`` on the channel ``ganzhi_ledger`` at
commit, and a listener thread marks that entry unchecked (it is looked up again when it next speaks),
so a terminal registered a moment ago is accepted and a retired one refused with its next message.
If the listening connection is lost, notifications may have been missed: every entry is marked unchecked.
An entry is replaced or dropped only by its new lookup, never between a batch's lookup and its judging
(dropped there, a known terminal's messages were dead-lettered as not in the ledger).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from core import db
from core.runtime import Outage, wait_unless

log = logging.getLogger(__name__)

CHANNEL = "ganzhi_ledger"
NEGATIVE_TTL_S = 5.0
MAX_UNKNOWN = 100_000
"""Codes remembered as unknown at most (a device may name any code in its readings)."""

_TERMINALS = """
    select t.id, t.code, t.status, t.metrics, p.code, t.mn, t.pw
      from terminal t left join pole p on p.id = t.pole_id
"""


@dataclass(frozen=True, slots=True)
class TerminalEntry:
    id: int
    code: str
    status: str
    metrics: frozenset[str]
    pole: str | None
    mn: str | None = None
    pw: str | None = None


class Directory:
    def __init__(self, url: str) -> None:
        self._url = url
        self.terminals: dict[str, TerminalEntry] = {}
        self.poles: set[str] = set()
        self.loggers: dict[str, str] = {}
        """HJ 212 MN → terminal code."""
        self._unknown: dict[str, float] = {}
        """Code → until when it counts as unknown."""
        self._unknown_mns: dict[str, float] = {}
        """MN → until when it counts as unknown (forgotten whole on any terminal change: the new MN is not told)."""
        self._ids: dict[tuple[str, int], str] = {}
        """(table, id) → code, to find an entry from a notification."""
        self._checked: dict[str, int] = {}
        """Code → the ``_epoch`` it was looked up in; a code not here (changed since) is looked up again."""
        self._epoch = 0
        """Raised whenever notifications may have been missed: every entry is to be looked up again."""
        self._lock = threading.Lock()
        """Held while the cache changes (the listener thread and the lookups both change it)."""
        self._changes = 0
        """Notifications heard so far: a lookup that overlapped one is done again (it may have read old rows)."""
        self._lookup_lock = threading.Lock()
        self._lookup_conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None

    # -- reading ------------------------------------------------------------------------------------

    def knows(self, code: str) -> bool:
        return code in self.terminals or code in self.poles

    def terminal(self, code: str) -> TerminalEntry | None:
        return self.terminals.get(code)

    def logger(self, mn: str) -> TerminalEntry | None:
        code = self.loggers.get(mn)
        return self.terminals.get(code) if code is not None else None

    # -- looking up ---------------------------------------------------------------------------------

    def ensure(self, codes: Iterable[str]) -> None:
        """Look up, in one query, the codes neither cached nor recently found unknown."""
        now = time.monotonic()
        missing = {c for c in codes if self._checked.get(c) != self._epoch and self._unknown.get(c, 0.0) < now}
        if missing:
            self._fetch(sorted(missing), "code", now)

    def ensure_loggers(self, mns: Iterable[str]) -> None:
        now = time.monotonic()
        missing = {m for m in mns if m not in self.loggers and self._unknown_mns.get(m, 0.0) < now}
        if missing:
            self._fetch(sorted(missing), "mn", now)

    def _fetch(self, keys: list[str], by: str, now: float) -> None:
        with self._lookup_lock:
            for _ in range(3):
                heard = self._changes
                rows, poles = self._query(keys, by)
                with self._lock:
                    if heard == self._changes:
                        self._store(keys, by, now, rows, poles)
                        return

    def _query(self, keys: list[str], by: str) -> tuple[list[tuple], list[tuple]]:
        conn = self._lookup_conn
        if conn is None or conn.closed:
            conn = self._lookup_conn = psycopg.connect(self._url, autocommit=True, **db.LINK)
        if by == "mn":
            return conn.execute(_TERMINALS + " where t.mn = any(%(keys)s)", {"keys": keys}).fetchall(), []
        return (conn.execute(_TERMINALS + " where t.code = any(%(keys)s)", {"keys": keys}).fetchall(),
                conn.execute("select id, code from pole where code = any(%(keys)s)", {"keys": keys}).fetchall())

    def _store(self, keys: list[str], by: str, now: float, rows: list[tuple], poles: list[tuple]) -> None:
        if by == "code":
            for code in keys:  # what the ledger has now replaces what was cached
                self._drop(code)
        for row in rows:
            self._keep(TerminalEntry(row[0], row[1], row[2], frozenset(row[3]), row[4], row[5], row[6]))
        for pole_id, code in poles:
            self._ids[("pole", pole_id)] = code
            self.poles.add(code)
            self._checked[code] = self._epoch
        found = {row[5] if by == "mn" else row[1] for row in rows} | {code for _, code in poles}
        unknown = self._unknown_mns if by == "mn" else self._unknown
        for key in keys:
            if key not in found:
                unknown[key] = now + NEGATIVE_TTL_S
        while len(unknown) > MAX_UNKNOWN:
            del unknown[next(iter(unknown))]

    def _keep(self, entry: TerminalEntry) -> None:
        self.terminals[entry.code] = entry
        self._checked[entry.code] = self._epoch
        self._ids[("terminal", entry.id)] = entry.code
        if entry.mn:
            self.loggers[entry.mn] = entry.code

    # -- hearing of changes -------------------------------------------------------------------------

    def forget(self, table: str, entity_id: int, code: str | None) -> None:
        """A terminal or pole changed: what is cached of it (old and new code) is looked up again when next
        named; until then a batch already looked up is judged by it."""
        with self._lock:
            self._changes += 1
            self._forget(table, entity_id, code)

    def _forget(self, table: str, entity_id: int, code: str | None) -> None:
        codes = {c for c in (self._ids.get((table, entity_id)), code) if c}
        for c in codes:
            self._unknown.pop(c, None)
            self._checked.pop(c, None)
            entry = self.terminals.get(c)
            if entry is not None and entry.mn:  # an MN is looked up by itself: the old one must not lead here
                self.loggers.pop(entry.mn, None)
        if table == "terminal":  # a new or changed MN may have been remembered as unknown
            self._unknown_mns.clear()

    def _drop(self, code: str) -> None:
        self.poles.discard(code)
        entry = self.terminals.pop(code, None)
        if entry is not None:
            self._ids.pop(("terminal", entry.id), None)
            if entry.mn and self.loggers.get(entry.mn) == code:
                del self.loggers[entry.mn]
        self._checked.pop(code, None)

    def clear(self) -> None:
        """Notifications may have been missed: every entry is looked up again when next named (a batch already
        looked up is judged by what it found)."""
        with self._lock:
            self._changes += 1
            self._epoch += 1
            self.loggers.clear()
            self._unknown.clear()
            self._unknown_mns.clear()

    def start(self, timeout_s: float = 10.0, stop: threading.Event | None = None) -> None:
        """Start listening for ledger changes; returns once listening, after ``timeout_s``, or once ``stop`` is set
        (a worker asked to stop while its database is away must not wait out the timeout)."""
        self._listener = threading.Thread(target=self._listen_forever, name="ledger-listener", daemon=True)
        self._listener.start()
        wait_unless(self._listening, stop, timeout_s)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(5)
        if self._lookup_conn is not None:
            self._lookup_conn.close()

    def _listen_forever(self) -> None:
        outage = Outage("ledger notifications", log)
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, **db.LINK) as conn:
                    conn.execute(f"listen {CHANNEL}")
                    self.clear()  # whatever changed while nobody listened is looked up afresh
                    self._listening.set()
                    outage.recovered()
                    self._hear(conn)
            except Exception as exc:  # the listener must not die: it reconnects, and the cache starts afresh
                self._listening.clear()
                outage.failed(exc)
                self._stop.wait(1.0)

    def _hear(self, conn: psycopg.Connection) -> None:
        while not self._stop.is_set():
            for notice in conn.notifies(timeout=1.0):
                try:
                    change = json.loads(notice.payload)
                    if change["table"] in ("terminal", "pole"):  # other tables share the channel
                        self.forget(change["table"], int(change["id"]), change.get("code"))
                except (ValueError, KeyError, TypeError):
                    log.warning("unreadable ledger notification %r", notice.payload[:200])
