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
