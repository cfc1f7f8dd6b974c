"""`ganzhi bench chaos` at a small scale (issue 10 §6): faults under simulated traffic, counted from both ends."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core.settings import Settings
from ganzhi.chaos import UP, Platform, _redelivered, acked_readings, alerts_per_event, window
from simulators.faults import Fault
from simulators.truth import Truth

T0 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _event(terminal: str, start_s: float) -> Truth:
    return Truth(Fault.pollution, terminal, None, _at(start_s), _at(start_s + 30))


def test_a_rule_opening_more_alerts_than_its_terminal_had_events_counts_twice():
    events = [_event("A", 0), _event("B", 0), _event("C", 0), _event("C", 60), _event("E", 0)]
    opened = [("A", "ammonia", _at(5)), ("A", "ammonia", _at(20)),  # one event, opened again: twice
              ("A", "cod", _at(6)),  # another rule on the same event: not twice
              ("B", "ammonia", _at(200)),  # late (a rule worker catching up): alerted all the same
              ("C", "ammonia", _at(5)), ("C", "ammonia", _at(65)),  # two events, two alerts
              ("D", "ammonia", _at(5))]  # a terminal without an event: neither
    assert alerts_per_event(events, opened) == (4, 1)


def test_redelivered_readings_count_a_restarted_process_from_zero():
    before = {1: (100.0, 40.0), 2: (100.0, 7.0)}
    after = {1: (100.0, 55.0), 2: (160.0, 12.0), 3: (100.0, 0.0)}  # port 2's process was replaced
    assert _redelivered(before, after) == 15 + 12


def test_the_acked_readings_are_named_by_terminal_metric_and_time(tmp_path):
    acked = tmp_path / "acked.jsonl"
    messages = [("P1", {"ts": 5, "readings": [{"code": "T1", "metric": "a", "value": 1},
                                               {"code": "T2", "metric": "a", "value": 2}]}),  # a pole's
                ("D1", {"ts": 6, "readings": [{"metric": "b", "value": 3}]})]  # a lone device's
    lines = [json.dumps({"publisher": p, "payload": json.dumps(body)}) for p, body in messages]
    lines.append(json.dumps({"publisher": "D2", "payload": '{"ts": 7, "readings": [{"metric": "b", "value": 12'}))
    acked.write_text("\n".join(lines) + "\n")
    assert acked_readings(acked) == {("T1", "a", 5), ("T2", "a", 5), ("D1", "b", 6)}


@pytest.mark.slow
def test_killed_ingest_worker_and_up_lose_nothing_open_no_alert_twice_and_come_back():
    platform = Platform(Settings())
    try:
        platform.start()
        results = [window(platform, fault, speed=10, window_s=20, seed=seed)
                   for seed, fault in enumerate(("ingest worker", UP), start=1)]
    finally:
        platform.stop()
    for figures in results:
        assert figures.published > 1_000, figures  # the simulators' own count of what the broker acknowledged
        assert (figures.lost, figures.twice) == (0, 0), figures
        # Back at all (within RECOVERY_TIMEOUT_S); the 10 s goal is what `ganzhi bench chaos` reports and exits on:
        # on a shared 2-core box a Python process can take longer than that just to start.
        assert figures.recovery_s is not None, figures
