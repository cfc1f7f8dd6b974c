"""Ground truth: every injected fault and event, one JSON object per line (kind, terminal, metric, start,
end as ISO 8601 observation times), so that the alerts a run raised can be scored against what really
happened. A file, not a table: the simulators stand outside the platform they exercise and write nothing
into its database."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from simulators.faults import Fault, Injection


@dataclass(frozen=True)
class Truth:
    kind: Fault
    terminal: str
    metric: str | None
    start: dt.datetime
    end: dt.datetime
    rate_per_h: float | None = None
    """A drift's creep (the metric's unit per hour)."""
    run: str | None = None
    """The simulator process that recorded it (``RUN``): a simulator restarted (say, by `ganzhi up`) plans anew, so
    what an earlier one planned for after the restart never happened (``as_of``)."""


RUN = f"{os.getpid()}@{dt.datetime.now(dt.UTC).isoformat()}"
"""This process's run: its id and when it started."""
RECORDED_H = 24.0 * 30
"""Simulated hours a live fleet's repeating faults and events are recorded for (at `ganzhi up`'s speed 10, three
days of a running demo); alerts later than that are not scored."""


def observed(injection: Injection, started: dt.datetime, speed: float, until_h: float) -> list[Truth]:
    """The injection's windows in the first ``until_h`` simulated hours, in observation time, for a run that
    started at ``started`` at ``speed``."""
    def at(hours: float) -> dt.datetime:
        return started + dt.timedelta(hours=hours / speed)

    return [Truth(injection.kind, injection.terminal, injection.metric, at(start), at(end), injection.rate_per_h)
            for start, end in injection.occurrences(until_h)]


def record(path: Path, truths: list[Truth]) -> None:
    """Appended, tagged with this process's ``RUN``."""
    with path.open("a", encoding="utf-8") as out:
        for t in truths:
            out.write(json.dumps({"kind": t.kind.value, "terminal": t.terminal, "metric": t.metric,
                                  "start": t.start.isoformat(), "end": t.end.isoformat(),
                                  "rate_per_h": t.rate_per_h, "run": RUN}, ensure_ascii=False) + "\n")


def load(path: Path) -> list[Truth]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        found.append(Truth(Fault(row["kind"]), row["terminal"], row["metric"],
                           dt.datetime.fromisoformat(row["start"]), dt.datetime.fromisoformat(row["end"]),
                           row.get("rate_per_h"), row.get("run")))
    return found


def as_of(truths: list[Truth], until: dt.datetime) -> list[Truth]:
    """What had happened by ``until``: windows begun by then, cut there; a run's windows cut where a later run
    (a restarted simulator) began, since the earlier run's plan ended with it."""
    def began(run: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(run.split("@", 1)[1]) if run and "@" in run else None

    starts = sorted({b for t in truths if (b := began(t.run)) is not None})
    kept = []
    for t in truths:
        own = began(t.run)
        cut = min([until] + [b for b in starts if own is not None and b > own])
        if t.start < cut:
            kept.append(replace(t, end=min(t.end, cut)))
    return kept
