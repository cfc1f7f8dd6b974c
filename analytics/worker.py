"""The rule worker: reads what arrived since its watermark, re-evaluates the terminals it touched.

Workers split the terminals by ``terminal id % shards``; each keeps its watermark (arrival time of
the readings it has evaluated) in the database, so a restarted worker goes on where it stopped.
The watermark is re-read with a margin, because a batch can commit after a later one: evaluating a
terminal twice is harmless, missing one is not.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time

import psycopg

from analytics import queries
from analytics.evaluate import AlertSink, evaluate_terminal, sweep_silence
from core.runtime import Service

log = logging.getLogger(__name__)

MARGIN = dt.timedelta(seconds=10)
SWEEP_EVERY_S = 60.0


class AnalyticsWorker:
    def __init__(self, database_url: str, sink: AlertSink, shard: int = 0, shards: int = 1,
                 poll_s: float = 0.5) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
        self.url, self.sink, self.shard, self.shards, self.poll_s = database_url, sink, shard, shards, poll_s
        self.counters: collections.Counter[str] = collections.Counter()
        self._seen: dict[int, tuple[dt.datetime, int]] = {}
        """What each terminal had in the margin window when last evaluated: unchanged means nothing new."""
        self._last_sweep = 0.0

    def run(self, service: Service) -> None:
        """Poll until the service stops. A lost database connection is made again by the runtime (the outage
        logged once each way); the watermark in the database says where to go on."""
        self.counters = service.counters
        service.set_detail(shard=self.shard, shards=self.shards)
        while (conn := service.connect(self.url)) is not None:
            try:
                self._poll_until_stopped(conn, service)
                return
            except psycopg.OperationalError as exc:
                log.error("rule shard %d lost the database: %s; reconnecting", self.shard, str(exc).strip())
                self.counters["reconnects"] += 1
            finally:
                conn.close()

    def _poll_until_stopped(self, conn: psycopg.Connection, service: Service) -> None:
        while not service.stop.is_set():
            self.poll(conn)
            if time.monotonic() - self._last_sweep > SWEEP_EVERY_S:
                with conn.transaction():
                    sweep_silence(conn, self.sink, self.shard, self.shards)
                self._last_sweep = time.monotonic()
            service.wait(self.poll_s)

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
        self.counters["polls"] += 1
        self.counters["terminals evaluated"] += evaluated
        return evaluated
