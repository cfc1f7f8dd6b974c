"""The ground truth a live fleet records: long enough for a running demo, and cut where a restarted simulator
planned anew; and `ganzhi up` records it by default."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from core.settings import Settings
from simulators import truth
from simulators.faults import Fault, plan

T0 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def test_up_records_the_simulators_ground_truth_in_its_data_directory(tmp_path: Path):
    from ganzhi import up

    commands = dict(up._worker_commands(Settings(var_dir=tmp_path), simulate=True))
    args = commands["device simulator"]
    assert args[args.index("--truth") + 1] == str((tmp_path / up.TRUTH_FILE).resolve())
    assert not any("--truth" in a for _, a in up._worker_commands(Settings(var_dir=tmp_path), simulate=False))


def test_a_live_fleets_repeating_event_is_recorded_past_the_first_day():
    """`up` runs for days at speed 10: the truth of the first 24 simulated hours (2.4 h of demo) was all there was."""
    injection = plan(Fault.pollution, "T1", "methane_detector", ("methane_lel",), 24.0, 1, repeat=True)
    windows = truth.observed(injection, T0, 10, truth.RECORDED_H)
    assert windows[-1].start > T0 + dt.timedelta(hours=24)  # observation time: a day of demo is 240 simulated hours
    assert len(windows) >= truth.RECORDED_H / 24 - 1


def test_a_restarted_simulators_old_plan_is_cut_where_the_new_run_began(tmp_path: Path, monkeypatch):
    path = tmp_path / "truth.jsonl"
    first = truth.Truth(Fault.pollution, "T1", None, T0 + dt.timedelta(minutes=10), T0 + dt.timedelta(minutes=50))
    later = truth.Truth(Fault.pollution, "T1", None, T0 + dt.timedelta(hours=5), T0 + dt.timedelta(hours=6))
    monkeypatch.setattr(truth, "RUN", f"1@{T0.isoformat()}")
    truth.record(path, [first, later])
    restart = T0 + dt.timedelta(minutes=30)
    monkeypatch.setattr(truth, "RUN", f"2@{restart.isoformat()}")
    again = truth.Truth(Fault.spike, "T2", "methane_lel", restart + dt.timedelta(minutes=5),
                        restart + dt.timedelta(minutes=20))
    truth.record(path, [again])
    assert [json.loads(line)["run"] for line in path.read_text().splitlines()] == [f"1@{T0.isoformat()}"] * 2 + \
        [f"2@{restart.isoformat()}"]

    happened = truth.as_of(truth.load(path), until=T0 + dt.timedelta(hours=8))
    assert [(t.terminal, t.start, t.end) for t in happened] == [
        ("T1", first.start, restart),  # cut where the restarted simulator began; the 5 h one never happened
        ("T2", again.start, again.end),
    ]
    assert [t.end for t in truth.as_of(truth.load(path), until=restart + dt.timedelta(minutes=10))] == \
        [restart, restart + dt.timedelta(minutes=10)]
