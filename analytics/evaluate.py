"""Evaluating a terminal's rules over a window of its stored readings; what the episodes become is the
alert sink's business (``alerts.service``, wired in by the composition package)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import psycopg

from analytics import queries
from analytics.engine import Episode
from analytics.rules import Rule, TerminalInfo, rules_for


class AlertSink(Protocol):
    def reconcile(self, conn: psycopg.Connection, t: TerminalInfo, rule: Rule, window_start: dt.datetime,
                  found: list[Episode], stored: list[dict] | None = None) -> None: ...

    def stored_alerts(self, conn: psycopg.Connection, terminal_id: int, since: dt.datetime) -> dict[str, list]: ...

    def open_nodata(self, conn: psycopg.Connection, shard: int, shards: int) -> list[tuple]: ...

    def resolve_by_rule(self, conn: psycopg.Connection, alert_id: int, comment: str) -> None: ...

LOOKBACK = dt.timedelta(hours=26)
"""How far before the earliest new reading a window starts: longer than any rule's duration, and a full night
for the night-flow rule."""


def evaluate_terminal(conn: psycopg.Connection, sink: AlertSink, terminal_id: int, earliest: dt.datetime) -> int:
    """Re-evaluate every rule of a terminal over the window the new readings touch; returns episodes found."""
    info = queries.terminal_info(conn, terminal_id)
    if info is None:
        return 0
    start = earliest - LOOKBACK
    rules = rules_for(info)
    data = queries.series(conn, terminal_id, sorted({m for r in rules for m in (r.metric, *r.context)}), start)
    stored = sink.stored_alerts(conn, terminal_id, start)
    count = 0
    for rule in rules:
        found = rule.evaluate(data)
        if found or rule.key in stored:  # nothing found and nothing stored: nothing to reconcile
            sink.reconcile(conn, info, rule, start, found, stored.get(rule.key, []))
        count += len(found)
    return count


def backtest(conn: psycopg.Connection, info: TerminalInfo, start: dt.datetime, end: dt.datetime,
             prefix: str = "") -> list[tuple[Rule, Episode]]:
    """The episodes the rules would have found in [start, end), without touching any alert."""
    rules = [r for r in rules_for(info) if r.key.startswith(prefix)]
    data = queries.series(conn, info.id, sorted({m for r in rules for m in (r.metric, *r.context)}), start, end)
    return [(rule, episode) for rule in rules for episode in rule.evaluate(data)]


def sweep_silence(conn: psycopg.Connection, sink: AlertSink, shard: int, shards: int) -> None:
    """No data: open an alert for each metric silent for three expected intervals; resolve it when data returns."""
    silent = {(tid, metric): last for tid, metric, last in queries.silent_metrics(conn, shard, shards)}
    for alert_id, tid, metric in sink.open_nodata(conn, shard, shards):
        if (tid, metric) not in silent:
            sink.resolve_by_rule(conn, alert_id, "data arrives again")
    infos: dict[int, TerminalInfo | None] = {}
    for (tid, metric), last in silent.items():
        info = infos[tid] if tid in infos else infos.setdefault(tid, queries.terminal_info(conn, tid))
        if info is None:
            continue
        rule = Rule(f"device:nodata:{metric}", "device", "steward", metric, lambda s: None)
        since = last + dt.timedelta(seconds=3 * info.report_interval_s)
        episode = Episode(since, since, None, "warning", f"no {metric} since {last.isoformat()} "
                          f"(expected every {info.report_interval_s} s)", 0.0, 0.0)
        sink.reconcile(conn, info, rule, since, [episode])
