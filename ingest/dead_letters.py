"""Dead letters: what was refused, with the reason, kept bounded.

Every field is made storable before it is written (no NUL in text, reasons and topics cut short),
a payload is kept up to ``MAX_PAYLOAD`` bytes with its full size and SHA-256, an HJ 212 frame
never keeps its PW, and a ``Limiter`` caps how many dead letters one source (a publisher code, a
peer address) can make: past its budget they are counted, not stored, and the next one stored
from that source says how many were suppressed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

import psycopg

from devices import hj212

MAX_PAYLOAD = 64 * 1024
MAX_TEXT = 2000
BURST = 60
"""Dead letters a source may make at once ..."""
REFILL_S = 10.0
"""... and then one per this many seconds."""
MAX_SOURCES = 100_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    publisher: str | None
    payload: bytes
    reason: str
    stored: int = 0
    suppressed: int = 0
    """Dead letters from the same source left out (over its budget) since the last one stored."""
    size: int | None = None
    """The full size when ``payload`` is only the start of what came (default: its length)."""
    digest: bytes | None = None
    """SHA-256 of everything that came (default: of ``payload``)."""
    kind: str = "other"
    """A short, fixed category of ``reason`` (topic, payload, unknown_publisher, ...): the label of the dead
    letters metric, whose values must stay few."""


def redact_hj212(frame: bytes) -> bytes:
    """An HJ 212 frame (or bytes that hold frames) without its password: whatever the decoder would read as
    the PW becomes ``***``."""
    return hj212.redact_pw(frame)


def write_dead_letters(conn: psycopg.Connection, letters: list[DeadLetter]) -> None:
    sql = ("copy dead_letter (topic, publisher, payload, payload_size, payload_sha256, reason, stored, suppressed)"
           " from stdin")
    with conn.cursor() as cur, cur.copy(sql) as cp:
        for letter in letters:
            payload = letter.payload
            cp.write_row((_text(letter.topic), letter.publisher and _text(letter.publisher), payload[:MAX_PAYLOAD],
                          len(payload) if letter.size is None else letter.size,
                          letter.digest or hashlib.sha256(payload).digest(), _text(letter.reason), letter.stored,
                          letter.suppressed))


def _text(value: str) -> str:
    """Text PostgreSQL takes: no NUL, lone surrogates replaced, at most ``MAX_TEXT`` characters."""
    cleaned = value[:MAX_TEXT].replace("\x00", "\\0")
    return cleaned.encode("utf-8", "replace").decode("utf-8")


class Limiter:
    """A token bucket per source: ``BURST`` dead letters at once, then one per ``REFILL_S`` seconds."""

    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S) -> None:
        self._burst = burst
        self._refill_s = refill_s
        self._buckets: dict[str, tuple[float, float, int]] = {}
        """Source → (tokens, when last counted, suppressed since the last one admitted)."""
        self.suppressed = 0

    def admit(self, source: str, letter: DeadLetter) -> DeadLetter | None:
        """The letter to store (carrying the count of those suppressed before it), or None when over budget."""
        now = time.monotonic()
        tokens, at, held_back = self._buckets.pop(source, (float(self._burst), now, 0))
        tokens = min(float(self._burst), tokens + (now - at) / self._refill_s)
        if tokens < 1.0:
            self._keep(source, (tokens, now, held_back + 1))
            self.suppressed += 1
            return None
        self._keep(source, (tokens - 1.0, now, 0))
        return replace(letter, suppressed=held_back) if held_back else letter

    def _keep(self, source: str, bucket: tuple[float, float, int]) -> None:
        self._buckets[source] = bucket  # re-inserted: the dict stays in order of last use
        if len(self._buckets) > MAX_SOURCES:
            del self._buckets[next(iter(self._buckets))]
