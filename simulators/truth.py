"""Ground truth: every injected fault and event, one JSON object per line (kind, terminal, metric, start,
end as ISO 8601 observation times), so that the alerts a run raised can be scored against what really
happened. A file, not a table: the simulators stand outside the platform they exercise and write nothing
into its database."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
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


def observed(injection: Injection, started: dt.datetime, speed: float, until_h: float) -> list[Truth]:
    """The injection's windows in the first ``until_h`` simulated hours, in observation time, for a run that
    started at ``started`` at ``speed``."""
    def at(hours: float) -> dt.datetime:
        return started + dt.timedelta(hours=hours / speed)

    return [Truth(injection.kind, injection.terminal, injection.metric, at(start), at(end), injection.rate_per_h)
            for start, end in injection.occurrences(until_h)]


def record(path: Path, truths: list[Truth]) -> None:
    with path.open("a", encoding="utf-8") as out:
        for t in truths:
            out.write(json.dumps({"kind": t.kind.value, "terminal": t.terminal, "metric": t.metric,
                                  "start": t.start.isoformat(), "end": t.end.isoformat(),
                                  "rate_per_h": t.rate_per_h}, ensure_ascii=False) + "\n")


def load(path: Path) -> list[Truth]:
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        found.append(Truth(Fault(row["kind"]), row["terminal"], row["metric"],
                           dt.datetime.fromisoformat(row["start"]), dt.datetime.fromisoformat(row["end"]),
                           row.get("rate_per_h")))
    return found
