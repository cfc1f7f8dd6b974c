"""A rule's stream state without a database: what a batch makes each rule do."""

from __future__ import annotations

import datetime as dt

from analytics.evaluate import FEED, WINDOW, RuleStream
from analytics.rules import TerminalInfo, rules_for

STATION = TerminalInfo(1, "23120221000001R", "water_quality_station", "sthjj", "231202", None, 126.9, 46.5, 1800,
                       ("w21003", "w01009", "w01001"), {"river": "呼兰河", "chainage_km": 162, "target_class": "III"})
T0 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def test_a_fresh_window_rule_is_evaluated_at_once_even_on_a_box_booted_a_minute_ago():
    # time.monotonic() counts from boot on Linux: a window rule never evaluated must not wait for its ``every``
    # to pass since 0, or its state is persisted with no judged_to (a NOT NULL column) and its chunk fails.
    stuck = next(r for r in rules_for(STATION) if r.key.startswith("device:stuck:") and not r.streamable)
    assert stuck.every_s > 60
    assert RuleStream.fresh(stuck).step(T0, now=60.0) is WINDOW


def test_a_streamable_rule_is_fed_what_is_newer_than_it_judged():
    rule = next(r for r in rules_for(STATION) if r.key == "gb3838:w21003")
    stream = RuleStream.fresh(rule, judged_to=T0)
    assert stream.step(T0 + dt.timedelta(minutes=30), now=60.0) is FEED
    assert stream.step(T0, now=60.0) is WINDOW  # late: at or before what it judged


def test_the_least_recently_judged_terminals_go_first_never_judged_ones_first_of_all():
    from analytics.worker import CHUNK_MIN, RuleWorker

    worker = RuleWorker("postgresql://unused", None, "rules-test")
    busy = list(range(1, 3 * CHUNK_MIN + 1))  # judged a moment ago, in this order
    worker.judged_at = {t: 100.0 + t for t in busy}
    worker.pending = {t: T0 for t in busy}
    worker.pending[999] = T0 + dt.timedelta(minutes=5)  # spoke last, after a quiet spell: never judged here
    worker._cost = 1.0  # a slow box: the smallest chunk
    assert list(worker.next_chunk()) == [999, *busy[:CHUNK_MIN - 1]]
    assert list(worker.next_chunk()) == busy[CHUNK_MIN - 1:2 * CHUNK_MIN - 1]
    assert len(worker.pending) == len(busy) - 2 * CHUNK_MIN + 1
