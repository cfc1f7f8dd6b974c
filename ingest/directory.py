"""The ledger as ingestion sees it: which codes may say what, held in memory.

Loaded whole (100,000 terminals take about a second) and reloaded when a message names
a code it does not know (at most every few seconds, so a terminal registered a moment ago
is accepted) and at least every minute (so retirements take effect).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

MIN_RELOAD_S = 5.0
MAX_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class TerminalEntry:
    id: int
    code: str
    status: str
    metrics: frozenset[str]
    pole: str | None


class Directory:
    def __init__(self, url: str) -> None:
        self._url = url
        self.terminals: dict[str, TerminalEntry] = {}
        self.poles: dict[str, frozenset[str]] = {}
        """Pole code → codes of the terminals it carries."""
        self.loggers: dict[str, tuple[str, str | None]] = {}
        """HJ 212 MN → (terminal code, PW)."""
        self._loaded_at = 0.0

    def refresh(self, *, force: bool = False) -> bool:
        """Reload when stale, or when forced and the last load is not too recent; True when reloaded."""
        age = time.monotonic() - self._loaded_at
        if age < (MIN_RELOAD_S if force else MAX_AGE_S):
            return False
        try:
            with psycopg.connect(self._url, connect_timeout=5) as conn:
                self._load(conn)
        except psycopg.OperationalError as exc:
            if not self.terminals:
                raise  # nothing to judge with yet
            log.warning("could not reload the ledger (%s); judging with the copy from %.0f s ago",
                        str(exc).strip(), age)
            self._loaded_at = time.monotonic() - MAX_AGE_S + MIN_RELOAD_S  # try again in a few seconds
            return False
        return True

    def _load(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(
            "select t.id, t.code, t.status, t.metrics, p.code, t.mn, t.pw"
            "  from terminal t left join pole p on p.id = t.pole_id"
        ).fetchall()
        terminals = {code: TerminalEntry(tid, code, status, frozenset(metrics), pole)
                     for tid, code, status, metrics, pole, _, _ in rows}
        self.loggers = {mn: (code, pw) for _, code, _, _, _, mn, pw in rows if mn}
        poles: dict[str, set[str]] = {code: set() for (code,) in conn.execute("select code from pole")}
        for entry in terminals.values():
            if entry.pole:
                poles.setdefault(entry.pole, set()).add(entry.code)
        self.terminals = terminals
        self.poles = {code: frozenset(hosted) for code, hosted in poles.items()}
        self._loaded_at = time.monotonic()
        log.info("directory loaded: %d terminals, %d poles", len(terminals), len(poles))

    def knows(self, code: str) -> bool:
        return code in self.terminals or code in self.poles
