"""`ganzhi bench chaos` at a small scale (issue 10 §6): one fault under simulated traffic, counted from both ends."""

from __future__ import annotations

import pytest

from core.settings import Settings
from ganzhi.chaos import Platform, window

pytestmark = pytest.mark.slow


def test_a_killed_ingest_worker_loses_nothing_stores_nothing_twice_and_is_back_in_time():
    platform = Platform(Settings())
    try:
        platform.start()
        figures = window(platform, "ingest worker", speed=10, window_s=20)
    finally:
        platform.stop()
    assert figures.published > 1_000  # the simulators' own count of what the broker acknowledged
    assert (figures.lost, figures.twice) == (0, 0)
    # Back at all (within RECOVERY_TIMEOUT_S); the 10 s goal is what `ganzhi bench chaos` reports and exits on:
    # on a shared 2-core box a Python process can take longer than that just to start.
    assert figures.recovery_s is not None
