"""Checking decoded readings against the ledger and the metric catalogue.

A message is judged reading by reading: the readings that fit are stored, each one that
does not is named in the message's dead letter with its reason. A payload that is not
valid telemetry at all is dead-lettered whole before it gets here.
"""

from __future__ import annotations

import time

import msgspec

from devices import METRICS, Reading, metric
from ingest.directory import Directory

MAX_FUTURE_MS = 5 * 60 * 1000
"""Readings stamped further ahead than this are refused: the device clock is wrong."""
_LIMITS = {m.key: (m.low, m.high) for m in METRICS}
_AGGREGATES = {"avg", "min", "max", "rtd"}
_PERIODS = {"min", "hour", "day", "rt"}


def _aggregate_limits(name: str, base: str) -> tuple[float, float] | None:
    """Limits of an HJ 212 value ``factor:kind:period``: those of the factor; a cumulative (cou) only ≥ 0."""
    parts = name.split(":")
    if len(parts) != 3 or parts[2] not in _PERIODS or base not in _LIMITS:
        return None
    if parts[1] == "cou":
        return 0.0, float("inf")
    return _LIMITS[base] if parts[1] in _AGGREGATES else None


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """A reading to store (a C struct: made for every reading, it costs a fraction of a dataclass)."""

    terminal_id: int
    code: str
    metric: str
    ts_ms: int
    value: float
    flag: str | None


def check(directory: Directory, publisher: str, readings: list[Reading], retention_days: int,
          now_ms: int | None = None) -> tuple[list[Accepted], list[str]]:
    """The readings to store, and a reason for each one refused."""
    now_ms = now_ms or int(time.time() * 1000)
    latest_ms, oldest_ms = now_ms + MAX_FUTURE_MS, now_ms - retention_days * 86_400_000
    terminals = directory.terminals
    accepted: list[Accepted] = []
    problems: list[str] = []
    for index, reading in enumerate(readings):
        code = reading.code or publisher
        entry = terminals.get(code)
        base = reading.metric.partition(":")[0]  # w01001:avg:hour, an HJ 212 aggregate, is checked as w01001
        limits = _LIMITS.get(base) if base == reading.metric else _aggregate_limits(reading.metric, base)
        # The common case in one test; anything else is worked out in detail by _problem.
        if (entry is not None and limits is not None and (code == publisher or entry.pole == publisher)
                and entry.status != "retired" and base in entry.metrics
                and limits[0] <= reading.value <= limits[1] and oldest_ms <= reading.ts_ms <= latest_ms):
            accepted.append(Accepted(entry.id, code, reading.metric, reading.ts_ms, reading.value, reading.flag))
        else:
            reason = _problem(directory, publisher, code, reading, now_ms, oldest_ms)
            problems.append(f"readings[{index}] ({code} {reading.metric}): {reason}")
    return accepted, problems


def _problem(directory: Directory, publisher: str, code: str, reading: Reading, now_ms: int, oldest_ms: int) -> str:
    entry = directory.terminals.get(code)
    if code != publisher and (entry is None or entry.pole != publisher):
        return f"publisher {publisher} may not report for {code} (not a terminal on its pole)"
    if entry is None:
        return "unknown terminal" if publisher not in directory.poles else \
            "a pole has no readings of its own; name the terminal"
    if entry.status == "retired":
        return "terminal is retired"
    base = reading.metric.partition(":")[0]
    spec = metric(base)
    limits = _aggregate_limits(reading.metric, base) if base != reading.metric else _LIMITS.get(base)
    if spec is None or limits is None:
        return "unknown metric"
    if base not in entry.metrics:
        return "terminal does not report this metric (see its metrics in the ledger)"
    if not limits[0] <= reading.value <= limits[1]:
        return f"value {reading.value:g} outside the physical range {limits[0]:g}…{limits[1]:g} {spec.unit}".rstrip()
    if reading.ts_ms > now_ms + MAX_FUTURE_MS:
        return f"observation time is {(reading.ts_ms - now_ms) / 1000:.0f} s in the future (device clock?)"
    return "observation time is older than the retention period"
