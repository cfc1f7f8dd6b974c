"""Judging a run of readings at once (``run``, ``SpikeScreen.passing``) reaches what judging them one by one does:
the same episodes, and the same memory after."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from analytics.engine import Point
from analytics.rules import TerminalInfo, rules_for

T0 = dt.datetime(2026, 11, 20, 4, 0, tzinfo=dt.UTC)


def _terminal(interval_s: int) -> TerminalInfo:
    return TerminalInfo(1, "x", "air_sensor", "cgj", "231202", None, 126.9, 46.5, interval_s,
                        ("w01001", "w01010", "w21003"), {})


def _series(seed: int, interval_s: int, n: int) -> list[Point]:
    """A noisy level with spikes, steps, a creep and gaps: every kind of verdict the device rules give."""
    rnd, level, points, at = random.Random(seed), 7.0, [], T0
    for i in range(n):
        at += dt.timedelta(seconds=interval_s * (rnd.choice((1, 1, 1, 1, 5)) if i % 50 == 0 else 1))
        if rnd.random() < 0.0002 * interval_s:
            level += rnd.choice((-1, 1)) * rnd.uniform(1, 4)  # a step
        if n // 3 <= i < 2 * n // 3:
            level += interval_s / 3600  # a creep of 1 a hour
        value = level + rnd.gauss(0, 0.05)
        if rnd.random() < 0.02:
            value += rnd.choice((-1, 1)) * rnd.uniform(2, 8)  # a spike
        points.append(Point(at, round(value, 2)))
    return points


def _one_by_one(judge):
    """The judge without its run: the tracker judges each reading by itself."""
    return lambda point: judge(point)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("interval_s", [1, 60])
def test_runs_judge_as_readings_one_by_one(seed, interval_s):
    t = _terminal(interval_s)
    points = _series(seed, interval_s, 3000 if interval_s > 1 else 12000)
    rules = [r for r in rules_for(t) if r.streamable and r.metric == "w01001"]
    assert {r.key.split(":")[1] for r in rules} == {"jump", "drift"}
    for rule in rules:
        runs, single = rule.make_judge({}), rule.make_judge({})
        tracked, alone = rule.make_tracker(), rule.make_tracker()
        found, expected = [], []
        # fed in batches of changing size, as the stream does, episodes open across them
        rnd, at = random.Random(seed), 0
        while at < len(points):
            size = rnd.choice((1, 2, 7, 40, 300))
            found += tracked.feed_all(points[at:at + size], runs)
            expected += alone.feed_all(points[at:at + size], _one_by_one(single))
            at += size
        assert found == expected, rule.key
        assert tracked.snapshot() == alone.snapshot(), rule.key
        assert runs.snapshot() == single.snapshot(), rule.key
        assert found or tracked.current, f"{rule.key}: the series must make episodes to compare"
