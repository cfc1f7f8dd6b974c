"""A throttle on online password guessing at the HJ 212 gateway.

A PW is six digits in practice, so an attacker answered at full speed finds one in minutes. Wrong PWs
are counted per (MN, peer address): after ``FREE`` of them that address is locked for that MN for a
delay that doubles with every further failure, up to ``MAX_LOCK_S``. A guesser therefore locks only
itself: the real logger, reporting from another address (4G and DHCP change it), is still judged.
Wrong PWs and unknown MNs are also counted per address, with more leeway (``FREE_PER_ADDRESS``: many
loggers may share one address behind a carrier's NAT), which slows down an address trying many MNs;
and an MN that ``MN_ADDRESSES`` different addresses got wrong (a guesser with many addresses) is locked
to every address but those that logged in to it with the right PW (trusted for ``TRUST_S``).
The gateway closes connections from a locked address and frames for a locked (MN, address) without
looking at their PW. Counts are forgotten after ``FORGET_S`` without a failure.

The state is per process: with several gateway processes on one port (``ganzhi up`` runs two, the
kernel spreading connections over them) a guesser gets up to that many times the guesses.
"""

from __future__ import annotations

import time

FREE = 3
"""Wrong PWs one address may make for one MN before it is locked for it."""
FREE_PER_ADDRESS = 20
"""Wrong PWs and unknown MNs one address may make (all MNs together) before it is locked."""
MN_ADDRESSES = 8
"""Addresses that got one MN's PW wrong before the MN is locked to all but its trusted addresses."""
BASE_LOCK_S = 1.0
MAX_LOCK_S = 600.0
FORGET_S = 3600.0
TRUST_S = 86_400.0
MAX_KEYS = 100_000


class PasswordGuard:
    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float, float]] = {}
        """``host:``address, ``pair:``MN@address or ``mn:``MN → (failures, locked until, last failure), by
        monotonic time; ``mn:`` counts the addresses that failed, not the failures."""
        self._trusted: dict[tuple[str, str], float] = {}
        """(MN, address) → until when that peer is trusted for that MN."""

    def host_locked(self, host: str) -> float:
        """Seconds the address stays locked (0 when it is not)."""
        return self._remaining(f"host:{host}")

    def locked(self, host: str, mn: str) -> float:
        """Seconds before a frame from ``host`` for ``mn`` may be judged (0: judge it now)."""
        wait = max(self._remaining(f"host:{host}"), self._remaining(f"pair:{mn}@{host}"))
        if self._trusted.get((mn, host), 0.0) > time.monotonic():
            return wait
        return max(wait, self._remaining(f"mn:{mn}"))

    def failed(self, host: str, mn: str | None) -> None:
        self._count(f"host:{host}", FREE_PER_ADDRESS)
        if mn is not None and self._count(f"pair:{mn}@{host}", FREE) == 1:  # a new address for this MN
            self._count(f"mn:{mn}", MN_ADDRESSES)

    def succeeded(self, host: str, mn: str) -> None:
        self._failures.pop(f"pair:{mn}@{host}", None)
        self._trusted.pop((mn, host), None)  # re-inserted: the dict stays in order of last login, oldest first
        self._trusted[(mn, host)] = time.monotonic() + TRUST_S
        _bound(self._trusted)

    def _remaining(self, key: str) -> float:
        entry = self._failures.get(key)
        return max(0.0, entry[1] - time.monotonic()) if entry else 0.0

    def _count(self, key: str, free: int) -> int:
        """Count one failure; returns the failures counted under ``key`` (since they were last forgotten)."""
        now = time.monotonic()
        failures, _, last = self._failures.pop(key, (0, 0.0, now))
        if now - last > FORGET_S:
            failures = 0
        failures += 1
        lock = min(MAX_LOCK_S, BASE_LOCK_S * 2 ** min(failures - free - 1, 20)) if failures > free else 0.0
        self._failures[key] = (failures, now + lock, now)
        _bound(self._failures)
        return failures


def _bound(entries: dict) -> None:
    """Keep at most ``MAX_KEYS``, dropping the least recently set (an attacker can make up any number of MNs;
    every entry is popped before it is set again, so the dict's order is that of last use)."""
    while len(entries) > MAX_KEYS:
        del entries[next(iter(entries))]
