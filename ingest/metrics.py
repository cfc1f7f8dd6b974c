"""The metrics both ingest paths (MQTT workers, HJ 212 gateways) count, under their own prefix."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from core.metrics import SIZE_BUCKETS, Metrics
from ingest.dead_letters import DeadLetter

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
"""Seconds from a reading's own time to its commit: from a live message to a logger's backfill."""


class IngestMetrics:
    """Counters, batch sizes and delays of one ingest process; ``prefix`` is ``ingest`` or ``hj212``."""

    def __init__(self, metrics: Metrics, prefix: str, unit: str, messages: str = "messages") -> None:
        p = prefix
        self.messages = metrics.counter(f"{p}_{messages}", f"{unit} handled (stored, dead-lettered or answered)")
        self.readings_stored = metrics.counter(f"{p}_readings_stored", "readings newly stored")
        self.readings_repeated = metrics.counter(f"{p}_readings_repeated",
                                                 "readings that came again (a redelivery) and were stored before")
        self.dead_letters = metrics.counter(f"{p}_dead_letters", "dead letters stored, by the kind of reason",
                                            ["reason"])
        self.suppressed = metrics.counter(f"{p}_dead_letters_suppressed",
                                          "dead letters counted, not stored: their source was over its budget")
        self.unexpected = metrics.counter(f"{p}_messages_unexpected_error",
                                          f"{unit} that failed in an unexpected way (dead-lettered)")
        self.batches = metrics.counter(f"{p}_batches", "transactions committed")
        self.batch_size = metrics.histogram(f"{p}_batch_size", f"{unit} per committed batch", SIZE_BUCKETS)
        self.commit_seconds = metrics.histogram(f"{p}_commit_seconds", "judging and writing one batch, to its commit")
        self.wait_seconds = metrics.histogram(f"{p}_receive_to_commit_seconds",
                                              "from receiving a batch's first message to its commit")
        self.lag_seconds = metrics.histogram(f"{p}_lag_seconds",
                                             "from a message's reading time (ts) to its commit", LAG_BUCKETS)
        self._suppressed_seen = 0

    def dead_lettered(self, letters: Iterable[DeadLetter]) -> None:
        for kind, count in Tally(letter.kind for letter in letters).items():
            self.dead_letters.labels(kind).inc(count)

    def suppressed_now(self, total: int) -> None:
        """The limiter keeps a running total; the counter takes what it added since."""
        if total > self._suppressed_seen:
            self.suppressed.inc(total - self._suppressed_seen)
            self._suppressed_seen = total
