"""Readings judged against the ledger, one by one."""

from __future__ import annotations

from devices import Reading
from ingest.directory import Directory, TerminalEntry
from ingest.validate import check

NOW = 1_795_737_600_000
AIR = "23120224000001D"
GAS = "23120232000001X"
POLE = "231202100000014"
OLD = "23120224000002B"


def _directory() -> Directory:
    directory = Directory("postgresql://unused")
    directory.terminals = {
        AIR: TerminalEntry(1, AIR, "active", frozenset({"a34004", "a34002"}), POLE),
        GAS: TerminalEntry(2, GAS, "active", frozenset({"methane_lel"}), POLE),
        OLD: TerminalEntry(3, OLD, "retired", frozenset({"a34004"}), None),
    }
    directory.poles = {POLE}
    return directory


def _reading(metric: str = "a34004", value: float = 35.0, code: str | None = None, ts: int = NOW) -> Reading:
    return Reading(code=code, metric=metric, ts_ms=ts, value=value)


def test_a_terminal_and_its_pole_gateway_are_accepted():
    directory = _directory()
    accepted, problems = check(directory, AIR, [_reading()], 400, NOW)
    assert problems == [] and [(a.terminal_id, a.metric) for a in accepted] == [(1, "a34004")]
    accepted, problems = check(directory, POLE, [_reading(code=AIR), _reading("methane_lel", 3, GAS)], 400, NOW)
    assert problems == [] and [a.code for a in accepted] == [AIR, GAS]


def test_each_bad_reading_is_named_and_the_good_ones_kept():
    readings = [
        _reading(),                                         # fine
        _reading("ozone"),                                  # unknown metric
        _reading("methane_lel", 3),                         # AIR does not report it
        _reading(value=99_999),                             # outside the physical range
        _reading(ts=NOW + 10 * 60_000),                     # future
        _reading(ts=NOW - 401 * 86_400_000),                # older than retention
        _reading(code=GAS, metric="methane_lel", value=1),  # a terminal may not speak for another
    ]
    accepted, problems = check(_directory(), AIR, readings, 400, NOW)
    assert len(accepted) == 1
    assert [p.split(": ", 1)[1] for p in problems] == [
        "unknown metric",
        "terminal does not report this metric (see its metrics in the ledger)",
        "value 99999 outside the physical range 0…2000 µg/m³",
        "observation time is 600 s in the future (device clock?)",
        "observation time is older than the retention period",
        f"publisher {AIR} may not report for {GAS} (not a terminal on its pole)",
    ]


def test_unknown_retired_and_pole_own_readings():
    directory = _directory()
    assert check(directory, "23120224000009Z", [_reading()], 400, NOW)[1][0].endswith("unknown terminal")
    assert check(directory, OLD, [_reading()], 400, NOW)[1][0].endswith("terminal is retired")
    assert "name the terminal" in check(directory, POLE, [_reading()], 400, NOW)[1][0]
    assert "may not report" in check(directory, POLE, [_reading(code=OLD)], 400, NOW)[1][0]
