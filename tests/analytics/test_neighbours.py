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


def test_a_silent_neighbour_s_backlog_arriving_later_does_not_end_the_stuck_alert(conn, db_url, worker):
    """The line was called stuck while the neighbour was silent; the neighbour's backlog, flat, arrives later. The
    gauge is as stuck as it was: its alert stays open (it neither resolves nor is raised a second time)."""
    stuck, neighbour = _gauge(conn, "呼兰河1号水位站", 160), _gauge(conn, "呼兰河2号水位站", 150)
    conn.commit()
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-HOURS * 60, -60 + 1, 10)])
    worker.step()
    assert stuck in _stuck(db_url)
    _write(db_url, neighbour, "water_level", [(m, 2.0, None) for m in range(-HOURS * 60, 1, 10)])
    _write(db_url, stuck, "water_level", [(m, 2.31, None) for m in range(-50, 1, 10)])
    worker.step()
    with psycopg.connect(db_url) as c:
        rows = c.execute("select status from alert where rule = 'device:stuck:water_level'").fetchall()
    assert rows == [("open",)]


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
