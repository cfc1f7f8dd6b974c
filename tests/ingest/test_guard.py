"""The HJ 212 PW guard's bounded state."""

from __future__ import annotations

from ingest import guard
from ingest.guard import PasswordGuard


def test_a_trusted_address_that_logs_in_again_is_evicted_last(monkeypatch):
    """The trusted addresses are bounded, the least recently trusted dropped first: a logger that logs in again
    is the newest, even if it was first trusted before the others (a re-set key did not move)."""
    monkeypatch.setattr(guard, "MAX_KEYS", 3)
    monkeypatch.setattr(guard, "MN_ADDRESSES", 0)  # one guessing address locks the MN
    g = PasswordGuard()
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        g.succeeded(host, "MN1")
    g.succeeded("10.0.0.1", "MN1")  # the real logger again
    g.succeeded("10.0.0.4", "MN1")  # one more: the least recently trusted (10.0.0.2) goes
    for _ in range(guard.FREE + 1):
        g.failed("10.9.9.9", "MN1")  # a guesser locks the MN to all but its trusted addresses
    assert g.locked("10.0.0.1", "MN1") == 0
    assert g.locked("10.0.0.2", "MN1") > 0
