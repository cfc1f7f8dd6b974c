"""A flat line judged against the terminal's neighbours on its river (``analytics.neighbours``), through the real
rule worker and store: stuck when the river moved and it did not, calm when the whole river is flat."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from analytics import evaluate, queries
from registry import service
from registry.changes import Actor
from tests.analytics.test_worker import NOW, Worker, _write
from tests.factories import pole_in, river_station, terminal_in

GAS = {"pressure_class": "medium_a", "set_point_kpa": 300.0}
HOURS = 13
"""Longer than the water level's flat-line window (12 h), shorter than twice it."""


def _gauge(conn, name: str, km: float, river: str = "呼兰河") -> str:
    item = terminal_in(name, "water_level_gauge", (126.90 + km / 10_000, 46.53),
                       attrs={"river": river, "chainage_km": km})
    return service.create_terminal(conn, item, Actor("t"))


def _level(db_url: str, code: str, start: float, rise_per_h: float) -> None:
    """A reading every 10 minutes over the last ``HOURS`` hours (quantised to the gauge's centimetre)."""
    _write(db_url, code, "water_level",
           [(m, round(start + rise_per_h * (m + HOURS * 60) / 60, 2), None) for m in range(-HOURS * 60, 1, 10)])


def _stuck(db_url: str) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("select t.code, a.detail from alert a join terminal t on t.id = a.terminal_id "
                                 "where a.rule like 'device:stuck:%'").fetchall())


@pytest.fixture
def worker(db_url):
    running = Worker(db_url)
    yield running
    running.close()


def test_a_gauge_flat_while_the_river_rises_is_stuck_and_the_alert_says_why(conn, db_url, worker):
    stuck, upstream, downstream = (_gauge(conn, f"呼兰河{n}号水位站", km) for n, km in ((1, 160), (2, 140), (3, 185)))
    conn.commit()
    _level(db_url, stuck, 2.31, 0.0)
    _level(db_url, upstream, 2.10, 0.02)
    _level(db_url, downstream, 1.80, 0.015)
    worker.step()
    found = _stuck(db_url)
    assert list(found) == [stuck]
    assert "while 2 of its neighbours on 呼兰河 moved" in found[stuck]


def test_a_calm_river_is_not_a_row_of_stuck_gauges(conn, db_url, worker):
    gauges = [_gauge(conn, f"呼兰河{n}号水位站", km) for n, km in ((1, 160), (2, 140), (3, 185))]
    conn.commit()
    for n, code in enumerate(gauges):
        _level(db_url, code, 2.0 + n / 10, 0.0)
    worker.step()
    assert _stuck(db_url) == {}


def test_a_calm_river_s_neighbours_are_not_asked_for_their_faults(conn, db_url, worker, monkeypatch):
    """Only a neighbour that moved can have moved by a fault of its own: the flat line of a calm river, asked about
    its neighbours again and again while it lasts, costs no look at their alerts; a river that moves does."""
    asked = []
    doubts_of = queries.doubts_of
    monkeypatch.setattr(queries, "doubts_of", lambda conn, ids, *rest: asked.append(ids) or doubts_of(conn, ids, *rest))
    gauges = [_gauge(conn, f"呼兰河{n}号水位站", km) for n, km in ((1, 160), (2, 140))]
    conn.commit()
    _level(db_url, gauges[0], 2.0, 0.0)
    _level(db_url, gauges[1], 2.1, 0.0)
    worker.step()
    assert _stuck(db_url) == {} and asked == []
    moving = _gauge(conn, "呼兰河3号水位站", 185)
    conn.commit()
    _level(db_url, moving, 1.8, 0.02)
    stuck = _gauge(conn, "呼兰河4号水位站", 170)
    conn.commit()
    _level(db_url, stuck, 2.31, 0.0)
    worker.step()
    assert stuck in _stuck(db_url) and asked and all(ids == [_terminal_id(conn, moving)] for ids in asked)


def _terminal_id(conn, code: str) -> int:
    return conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]


def test_only_neighbours_on_the_same_river_and_near_it_count(conn, db_url, worker):
    stuck = _gauge(conn, "呼兰河1号水位站", 160)
    calm = _gauge(conn, "呼兰河2号水位站", 150)
    far = _gauge(conn, "呼兰河9号水位站", 300)
    other_river = _gauge(conn, "通肯河1号水位站", 160, river="通肯河")
    conn.commit()
    _level(db_url, stuck, 2.31, 0.0)
    _level(db_url, calm, 2.0, 0.0)
    _level(db_url, far, 1.5, 0.03)
    _level(db_url, other_river, 1.2, 0.03)
    worker.step()
    assert _stuck(db_url) == {}  # its only neighbour was flat too: it waits twice the window


def test_a_station_whose_every_channel_froze_is_stuck_when_the_next_station_moved(conn, db_url, worker):
    frozen = service.create_terminal(conn, river_station("呼兰河05号水质自动站"), Actor("t"))
    moving = river_station("呼兰河06号水质自动站", at=(126.95, 46.55))
    moving.attrs["chainage_km"] = 175.0
    neighbour = service.create_terminal(conn, moving, Actor("t"))
    conn.commit()
    every_half_hour = range(-HOURS * 60, 1, 30)
    _write(db_url, frozen, "w01010", [(m, 8.4, None) for m in every_half_hour])
    _write(db_url, frozen, "w01009", [(m, 7.6, None) for m in every_half_hour])
    _write(db_url, neighbour, "w01010", [(m, round(8.0 + m / 300, 1), None) for m in every_half_hour])
    worker.step()
    found = _stuck(db_url)
    assert set(found) == {frozen}
    assert "neighbours on 呼兰河 moved" in found[frozen]


def test_sensors_of_one_metric_on_one_pole_are_neighbours(conn, db_url, worker):
    pole = service.create_pole(conn, pole_in("中兴大街07号杆"), Actor("t"))
    sensors = (terminal_in(f"中兴大街燃气压力{n}", "gas_pressure_sensor", None, pole=pole, attrs=GAS) for n in (1, 2))
    frozen, lively = (service.create_terminal(conn, sensor, Actor("t")) for sensor in sensors)
    conn.commit()
    minutes = range(-4 * 60, 1, 2)  # longer than gas pressure's 3 h flat-line window
    _write(db_url, frozen, "gas_pressure", [(m, 300.0, None) for m in minutes])
    _write(db_url, lively, "gas_pressure", [(m, round(300 + (m % 7) / 10, 2), None) for m in minutes])
    worker.step()
    found = _stuck(db_url)
    assert list(found) == [frozen]
    assert f"while 1 of its neighbours on pole {pole} moved" in found[frozen]


def test_a_backtest_compares_with_the_neighbours_as_the_workers_do(conn, db_url):
    stuck, upstream = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 140)
    conn.commit()
    _level(db_url, stuck, 2.31, 0.0)
    _level(db_url, upstream, 2.10, 0.02)
    with psycopg.connect(db_url) as c:
        info = queries.terminal_by_code(c, stuck)
        found = evaluate.backtest(c, info, NOW - dt.timedelta(hours=HOURS + 1), NOW + dt.timedelta(minutes=1),
                                  prefix="device:stuck:")
    assert [(rule.key, "neighbours on 呼兰河 moved" in episode.detail) for rule, episode in found] == [
        ("device:stuck:water_level", True)]


def test_a_neighbour_that_starts_moving_later_is_seen_while_the_gauge_is_streamed(conn, db_url, worker):
    """A single-sensor gauge's stuck rule is judged reading by reading, its judge kept between batches: the
    neighbours it asked at twelve hours (flat then) are asked again as the line goes on."""
    stuck, upstream = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 140)
    conn.commit()
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-14 * 60, -60 + 1, 10)])
    _write(db_url, upstream, "water_level", [(m, 2.0, None) for m in range(-14 * 60, -60 + 1, 10)])
    worker.step()
    assert _stuck(db_url) == {}  # thirteen hours flat, the river calm
    _write(db_url, upstream, "water_level", [(m, round(2.0 + (m + 60) / 300, 2), None) for m in range(-50, 1, 5)])
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-50, 1, 10)])
    worker.step()
    assert "while 1 of its neighbours on 呼兰河 moved" in _stuck(db_url).get(stuck, "")


def test_a_neighbour_that_spiked_once_is_no_river_that_moved(conn, db_url, worker):
    """A neighbour that reported flat through the line but for one spike is a calm river: the flat gauge waits
    twice the window, as beside flat ones."""
    beside_spike, spiking = _gauge(conn, "通肯河1号水位站", 60, "通肯河"), _gauge(conn, "通肯河2号水位站", 70, "通肯河")
    conn.commit()
    _level(db_url, beside_spike, 1.31, 0.0)
    _write(db_url, spiking, "water_level", [(m, 5.0 if m == -300 else 1.5, None) for m in range(-HOURS * 60, 1, 10)])
    worker.step()
    assert _stuck(db_url) == {}


def test_a_gauge_whose_neighbours_are_silent_is_stuck_after_one_window(conn, db_url, worker):
    """A neighbour in the ledger that did not report through the line (offline, or not deployed yet) shows nothing
    of the river: the gauge has nothing to compare against, as one with no neighbour at all, and a level flat to the
    centimetre for longer than a live river ever is (12 h) is stuck. Its alert says the neighbours were silent."""
    stuck = _gauge(conn, "呼兰河1号水位站", 160)
    late = _gauge(conn, "呼兰河2号水位站", 150)  # reports only the last hour: not heard through the line
    _gauge(conn, "呼兰河3号水位站", 170)  # in the ledger, never reporting
    conn.commit()
    _level(db_url, stuck, 2.31, 0.0)
    _write(db_url, late, "water_level", [(m, 2.0, None) for m in range(-60, 1, 10)])
    worker.step()
    assert "while its neighbours on 呼兰河 were silent" in _stuck(db_url).get(stuck, "")


def _stuck_history(db_url: str) -> tuple[list[str], list[str]]:
    """The water-level stuck alerts' statuses, and their events in order."""
    with psycopg.connect(db_url) as c:
        rows = c.execute("select status from alert where rule = 'device:stuck:water_level' order by id").fetchall()
        events = c.execute("select e.action from alert_event e join alert a on a.id = e.alert_id "
                           "where a.rule = 'device:stuck:water_level' order by e.id").fetchall()
    return [r[0] for r in rows], [e[0] for e in events]


def _called_then_backlog(conn, db_url: str, worker: Worker) -> tuple[str, str]:
    """A gauge called stuck while its neighbour was silent; then the neighbour's backlog, flat, is stored."""
    stuck, neighbour = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 150)
    conn.commit()
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-HOURS * 60, -60 + 1, 10)])
    worker.step()
    assert "while its neighbours on 呼兰河 were silent" in _stuck(db_url).get(stuck, "")
    _write(db_url, neighbour, "water_level", [(m, 2.0, None) for m in range(-HOURS * 60, 1, 10)])
    return stuck, neighbour


def test_a_silent_neighbour_s_backlog_arriving_later_does_not_end_the_stuck_alert(conn, db_url, worker):
    """The line was called stuck while the neighbour was silent; the neighbour's backlog, flat, arrives later, and a
    reading of the gauge that comes late makes its rule re-read its window (a fresh judge): the gauge is as stuck as
    it was, its alert stays open (neither retracted nor resolved nor raised a second time)."""
    stuck, _ = _called_then_backlog(conn, db_url, worker)
    with psycopg.connect(db_url) as c:
        terminal_id = queries.terminal_by_code(c, stuck).id
    before = worker.rules.memory[terminal_id].rules["device:stuck:water_level"].evaluated_at
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in (-65, *range(-50, 1, 10))])  # -65: late
    worker.step()
    assert worker.rules.memory[terminal_id].rules["device:stuck:water_level"].evaluated_at > before  # re-read
    assert _stuck_history(db_url) == (["open"], ["open"])
    assert "were silent" in _stuck(db_url)[stuck]


def test_a_restarted_worker_keeps_a_called_line_called(conn, db_url, worker):
    """The same, the worker restarted before the gauge's next readings: it replays the gauge's lookback with the
    neighbour's backlog stored, and goes on from the stored alert, not from asking the neighbours again."""
    stuck, _ = _called_then_backlog(conn, db_url, worker)
    worker.close()
    restarted = Worker(db_url)
    try:
        _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-50, 1, 10)])
        restarted.step()
    finally:
        restarted.close()
    assert _stuck_history(db_url) == (["open"], ["open"])


def test_a_neighbour_moving_by_its_own_spikes_is_no_river_that_moved(conn, db_url, worker):
    """The neighbour is flat but for a spike every two hours (its own spike alert on): its moves are its fault's, not
    the river's, and its flat readings are a calm river. The gauge waits twice the window."""
    stuck, spiking = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 150)
    conn.commit()
    _write(db_url, spiking, "water_level",
           [(m, 200.0 if m % 120 == 0 and -HOURS * 60 < m < 0 else 2.0, None) for m in range(-HOURS * 60, 1, 10)])
    worker.step()
    assert "device:jump:water_level" in _rules_of(db_url, spiking)
    _level(db_url, stuck, 2.31, 0.0)
    worker.step()
    assert stuck not in _stuck(db_url)


def test_sensors_flat_together_on_one_pole_do_not_vouch_for_each_other(conn, db_url, worker):
    """Two gas pressure sensors on one pole, both flat for longer than gas pressure's 3 h window: a gateway that
    freezes the pole freezes both, so the one beside it is no evidence of a calm network. Both are called after one
    window."""
    pole = service.create_pole(conn, pole_in("中兴大街07号杆"), Actor("t"))
    sensors = (terminal_in(f"中兴大街燃气压力{n}", "gas_pressure_sensor", None, pole=pole, attrs=GAS) for n in (1, 2))
    codes = [service.create_terminal(conn, sensor, Actor("t")) for sensor in sensors]
    conn.commit()
    for n, code in enumerate(codes):
        _write(db_url, code, "gas_pressure", [(m, 300.0 + n, None) for m in range(-4 * 60, 1, 2)])
    worker.step()
    found = _stuck(db_url)
    assert set(found) == set(codes)
    assert all("were silent or on its own pole" in detail for detail in found.values())


def test_a_neighbour_heard_only_after_the_reading_judged_is_silent_for_it(conn, db_url, worker):
    """The gauge was flat from 20 h to 7 h ago; the neighbour reported, flat, only from 7 h ago on. Judged now, the
    gauge's readings of 8 to 7 h ago are judged as they were live: its neighbour silent, it is stuck. (Its
    neighbour's later readings made it look heard through the line.)"""
    stuck, late = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 150)
    conn.commit()
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-20 * 60, -7 * 60 + 1, 10)])
    _write(db_url, late, "water_level", [(m, 2.0, None) for m in range(-7 * 60, 1, 10)])
    worker.step()
    assert "while its neighbours on 呼兰河 were silent" in _stuck(db_url).get(stuck, "")


def test_a_neighbour_heard_twice_in_the_line_was_not_heard_through_it(conn, db_url, worker):
    """A gauge reporting every ten minutes was heard 12 h and 5 h ago, and not in between: seven hours apart is not
    seven hours heard. The gauge beside it is called after one window, its neighbour silent."""
    stuck, patchy = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 150)
    conn.commit()
    _level(db_url, stuck, 2.31, 0.0)
    _write(db_url, patchy, "water_level", [(-12 * 60, 2.0, None), (-5 * 60, 2.0, None)])
    worker.step()
    assert "while its neighbours on 呼兰河 were silent" in _stuck(db_url).get(stuck, "")


def _rules_of(db_url: str, code: str) -> set[str]:
    with psycopg.connect(db_url) as c:
        return {r for (r,) in c.execute("select a.rule from alert a join terminal t on t.id = a.terminal_id "
                                        "where t.code = %s", (code,))}


def _station(conn, name: str, km: float) -> str:
    item = river_station(name, at=(126.90 + km / 10_000, 46.53))
    item.attrs["chainage_km"] = km
    return service.create_terminal(conn, item, Actor("t"))


def test_a_ramp_seen_up_and_down_the_river_pages_the_bureau_through_the_worker(conn, db_url, worker):
    """Three stations on 呼兰河, ammonia rising 0.25 mg/L an hour over class III's 1.0 at all of them (a spill ramping
    up): each station's own crossing would be held as its analyser's drift for 12 h; the stations beside it rose
    alike, so each pages the environment bureau now. A fourth station, on its own reach, ramps alone: held."""
    ramped = [_station(conn, f"呼兰河{n:02d}号水质自动站", km) for n, km in ((5, 150), (6, 162), (7, 175))]
    alone = _station(conn, "呼兰河20号水质自动站", 400)
    conn.commit()
    for code in [*ramped, alone]:
        _write(db_url, code, "w21003", [(m, round(0.5 + max(0, m + 360) / 240, 3), None) for m in range(-600, 1, 30)])
    worker.step()
    with psycopg.connect(db_url) as c:
        paged = dict(c.execute("select t.code, a.detail from alert a join terminal t on t.id = a.terminal_id "
                               "where a.rule = 'gb3838:w21003'").fetchall())
    assert set(paged) == set(ramped)
    assert all("of its neighbours on 呼兰河 rose alike" in detail for detail in paged.values())


def test_analysers_on_one_pole_ramping_together_are_no_river_that_rose(conn, db_url, worker):
    """Two stations' ammonia analysers on one pole (one housing, one sampling line), ramping alike: their fouling is
    common, not the river's. Each stays held as its analyser's drift; the bureau is not paged."""
    pole = service.create_pole(conn, pole_in("呼兰河05号监测杆", at=(126.915, 46.53)), Actor("t"))
    codes = [service.create_terminal(conn, river_station(f"呼兰河{n:02d}号水质自动站", at=(126.915, 46.53), pole=pole),
                                     Actor("t")) for n in (5, 6)]
    conn.commit()
    for code in codes:
        _write(db_url, code, "w21003", [(m, round(0.5 + max(0, m + 360) / 240, 3), None) for m in range(-600, 1, 30)])
    worker.step()
    rules_raised = set().union(*(_rules_of(db_url, code) for code in codes))
    assert "device:drift:w21003" in rules_raised and "gb3838:w21003" not in rules_raised


def test_a_calm_river_judged_as_its_readings_come_is_not_a_row_of_stuck_gauges(conn, db_url, worker):
    """Two gauges on a calm river, reporting every ten minutes five minutes apart, judged hour by hour as the
    readings arrive, the neighbour's hour a moment after the gauge's: when the gauge's line reaches twelve hours, the
    neighbour has been heard flat for less than that. It was heard (the river is calm): the gauge waits twice the
    window, not called stuck."""
    stuck, neighbour = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 150)
    conn.commit()
    for hour in range(-HOURS, 0):
        _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(hour * 60, hour * 60 + 60, 10)])
        worker.step()
        _write(db_url, neighbour, "water_level", [(m, 2.0, None) for m in range(hour * 60 + 5, hour * 60 + 60, 10)])
    assert _stuck(db_url) == {}
