"""The fleet to simulate, read from the ledger: one publisher per smart pole (its gateway speaks
for every sensor it carries) and one per terminal that stands alone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import psycopg

from registry import queries


@dataclass(frozen=True)
class SimTerminal:
    code: str
    kind: str
    metrics: tuple[str, ...]
    attrs: dict
    interval_s: int


@dataclass(frozen=True)
class Publisher:
    code: str
    terminals: tuple[SimTerminal, ...]
    is_pole: bool

    @property
    def interval_s(self) -> int:
        return min(t.interval_s for t in self.terminals)


def load_fleet(conn: psycopg.Connection, limit: int | None = None) -> list[Publisher]:
    """Every pole and terminal that reports readings (cameras send frames, not telemetry)."""
    by_pole: dict[str, list[SimTerminal]] = defaultdict(list)
    alone: list[Publisher] = []
    for t in queries.search_terminals(conn, queries.Search(), limit=10_000_000):
        if t.status.value == "retired" or not t.metrics or t.protocol.value != "mqtt":
            continue
        sim = SimTerminal(t.code, t.kind, tuple(t.metrics), t.attrs, t.report_interval_s)
        if t.pole:
            by_pole[t.pole].append(sim)
        else:
            alone.append(Publisher(t.code, (sim,), is_pole=False))
    fleet = [Publisher(code, tuple(ts), is_pole=True) for code, ts in sorted(by_pole.items())] + alone
    return fleet[:limit] if limit else fleet
