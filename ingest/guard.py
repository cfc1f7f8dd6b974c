"""A throttle on online password guessing at the HJ 212 gateway.

A PW is six digits in practice, so an attacker answered at full speed finds one in minutes.
Wrong PWs (and unknown MNs) are counted per peer address and per MN; after ``FREE`` of
them the address or the MN is locked for a delay that doubles with every further failure, up
to ``MAX_LOCK_S``, and the gateway closes connections from a locked address and frames for a
locked MN without looking at their PW. A peer that logged in to an MN with the right PW stays
trusted for that MN, so a logger keeps reporting while someone elsewhere guesses its PW.
Counts are forgotten after ``FORGET_S`` without a failure.
"""

from __future__ import annotations

import time

FREE = 3
BASE_LOCK_S = 1.0
MAX_LOCK_S = 600.0
FORGET_S = 3600.0
TRUST_S = 86_400.0
MAX_KEYS = 100_000


class PasswordGuard:
    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float, float]] = {}
        """``host:``address or ``mn:``MN → (failures, locked until, last failure), by monotonic time."""
        self._trusted: dict[tuple[str, str], float] = {}
        """(MN, address) → until when that peer is trusted for that MN."""

    def host_locked(self, host: str) -> float:
        """Seconds the address stays locked (0 when it is not)."""
        return self._remaining(f"host:{host}")

    def locked(self, host: str, mn: str) -> float:
        """Seconds before a frame from ``host`` for ``mn`` may be judged (0: judge it now)."""
        host_wait = self._remaining(f"host:{host}")
        if self._trusted.get((mn, host), 0.0) > time.monotonic():
            return host_wait
        return max(host_wait, self._remaining(f"mn:{mn}"))

    def failed(self, host: str, mn: str | None) -> None:
        self._count(f"host:{host}")
        if mn is not None:
            self._count(f"mn:{mn}")

    def succeeded(self, host: str, mn: str) -> None:
        self._trusted[(mn, host)] = time.monotonic() + TRUST_S
        _bound(self._trusted)

    def _remaining(self, key: str) -> float:
        entry = self._failures.get(key)
        return max(0.0, entry[1] - time.monotonic()) if entry else 0.0

    def _count(self, key: str) -> None:
        now = time.monotonic()
        failures, _, last = self._failures.pop(key, (0, 0.0, now))
        if now - last > FORGET_S:
            failures = 0
        failures += 1
        lock = min(MAX_LOCK_S, BASE_LOCK_S * 2 ** min(failures - FREE - 1, 20)) if failures > FREE else 0.0
        self._failures[key] = (failures, now + lock, now)
        _bound(self._failures)


def _bound(entries: dict) -> None:
    """Keep at most ``MAX_KEYS``, dropping the oldest (an attacker can make up any number of MNs)."""
    while len(entries) > MAX_KEYS:
        del entries[next(iter(entries))]
