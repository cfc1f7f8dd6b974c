"""The rule worker: reads what arrived since its watermark, re-evaluates the terminals it touched.

Workers split the terminals by ``terminal id % shards``; each keeps its watermark (arrival time of
the readings it has evaluated) in the database, so a restarted worker goes on where it stopped.
The watermark is re-read with a margin, because a batch can commit after a later one: evaluating a
terminal twice is harmless, missing one is not.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

import psycopg

from analytics import queries
from analytics.evaluate import AlertSink, evaluate_terminal, sweep_silence

log = logging.getLogger(__name__)

MARGIN = dt.timedelta(seconds=10)
SWEEP_EVERY_S = 60.0


@dataclass
class AnalyticsCounters:
    polls: int = 0
    terminals: int = 0
    started: float = field(default_factory=time.monotonic)


class AnalyticsWorker:
    def __init__(self, database_url: str, sink: AlertSink, shard: int = 0, shards: int = 1,
                 poll_s: float = 0.5) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        self.url, self.sink, self.shard, self.shards, self.poll_s = database_url, sink, shard, shards, poll_s
        self.counters = AnalyticsCounters()
        self._seen: dict[int, tuple[dt.datetime, int]] = {}
        """What each terminal had in the margin window when last evaluated: unchanged means nothing new."""

    def run(self, stop: threading.Event) -> None:
        conn = None
        last_sweep = 0.0
        while not stop.is_set():
            try:
                conn = conn if conn is not None and not conn.closed else psycopg.connect(self.url)
                self.poll(conn)
                if time.monotonic() - last_sweep > SWEEP_EVERY_S:
                    with conn.transaction():
                        sweep_silence(conn, self.sink, self.shard, self.shards)
                    last_sweep = time.monotonic()
            except psycopg.OperationalError as exc:
                log.warning("analytics shard %d: database unavailable (%s); retrying", self.shard, str(exc).strip())
                conn = None
            stop.wait(self.poll_s)
        if conn is not None:
            conn.close()

    def poll(self, conn: psycopg.Connection) -> int:
        """Evaluate every terminal of this shard with readings that arrived since the watermark."""
        mark = queries.watermark(conn, self.shard, self.shards)
        if mark is None:
            mark = conn.execute("select now() - interval '1 hour'").fetchone()[0]
        conn.commit()
        touched = queries.touched(conn, mark - MARGIN, self.shard, self.shards)
        conn.commit()
        newest = mark
        evaluated = 0
        for terminal_id, earliest, arrived, count in touched:
            newest = max(newest, arrived)
            seen = self._seen.get(terminal_id)
            # Nothing newer and no more rows than last time: the window only slid. A batch that committed late
            # adds rows without a newer arrival time, which the count catches.
            if seen is not None and arrived <= seen[0] and count <= seen[1]:
                continue
            with conn.transaction():
                evaluate_terminal(conn, self.sink, terminal_id, earliest)
            self._seen[terminal_id] = (arrived, count)
            evaluated += 1
        self._seen = {t: seen for t, seen in self._seen.items() if seen[0] >= newest - 2 * MARGIN}
        with conn.transaction():
            queries.save_watermark(conn, self.shard, self.shards, newest)
        self.counters.polls += 1
        self.counters.terminals += evaluated
        return evaluated
