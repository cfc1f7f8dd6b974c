"""Poles and terminals through the service layer, against real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest

from registry import audit, codes, queries, service, sharing
from registry.changes import Actor
from registry.errors import Conflict, Invalid, NotFound
from registry.models import GrantIn, PolePatch, TerminalPatch
from tests.factories import ANDA, BEILIN, HAILUN, HARBIN, pole_in, river_station, terminal_in

ACTOR = Actor("tester")


def test_terminal_gets_a_code_in_its_county_and_the_kind_defaults(conn):
    code = service.create_terminal(conn, terminal_in(at=ANDA), ACTOR)
    terminal = queries.get_terminal(conn, code)
    parsed = codes.parse(code)
    assert (parsed.division, parsed.class_code, parsed.serial) == ("231281", "24", "000001")
    assert terminal.division == "231281"
    assert terminal.department == "sthjj"
    assert terminal.metrics == ["a34004", "a34002", "a01001", "a01002"]
    assert terminal.report_interval_s == 300


def test_codes_are_issued_in_sequence_per_county_and_class(conn):
    first = service.create_terminal(conn, terminal_in("a", at=BEILIN), ACTOR)
    second = service.create_terminal(conn, terminal_in("b", at=BEILIN), ACTOR)
    other_county = service.create_terminal(conn, terminal_in("c", at=HAILUN), ACTOR)
    assert codes.parse(first).serial == "000001"
    assert codes.parse(second).serial == "000002"
    assert codes.parse(other_county).serial == "000001"


def test_concurrent_code_issue_never_repeats(db_url, conn):
    issued: list[str] = []
    lock = threading.Lock()

    def issue() -> None:
        with psycopg.connect(db_url) as own:
            got = service.issue_codes(own, "231202", "methane_detector", 50, ACTOR)
            own.commit()
        with lock:
            issued.extend(got)

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(issued) == len(set(issued)) == 200
    assert sorted(codes.parse(c).serial for c in issued) == [f"{n:06d}" for n in range(1, 201)]


def test_terminal_on_a_pole_takes_its_location_and_moves_with_it(conn):
    pole = service.create_pole(conn, pole_in(), ACTOR)
    air = service.create_terminal(conn, terminal_in(at=None, pole=pole), ACTOR)
    gas = service.create_terminal(conn, terminal_in("阀井甲烷", "methane_detector", at=None, pole=pole), ACTOR)
    assert queries.get_terminal(conn, air).lon == BEILIN[0]
    service.update_pole(conn, pole, PolePatch(lon=126.99, lat=46.645), ACTOR)
    assert (queries.get_terminal(conn, gas).lon, queries.get_terminal(conn, gas).lat) == (126.99, 46.645)
    hosted = queries.search_terminals(conn, queries.Search(pole=pole), 10)
    assert {t.department for t in hosted} == {"sthjj", "zjj"}  # one pole, several departments


def test_terminal_far_from_its_pole_is_refused(conn):
    pole = service.create_pole(conn, pole_in(), ACTOR)
    with pytest.raises(Invalid, match=r"m from its pole"):
        service.create_terminal(conn, terminal_in(at=(126.99, 46.65), pole=pole), ACTOR)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (terminal_in(at=HARBIN), "outside Suihua"),
        (terminal_in(at=(46.64, 126.98)), "longitude and latitude look swapped"),
        (terminal_in(at=None), "needs a location"),
        (terminal_in(kind="lawnmower"), "terminal kind 'lawnmower' is unknown"),
        (terminal_in(department="公安局"), "department '公安局' is unknown"),
        (terminal_in(metrics=["a34004", "ozone"]), "unknown metric"),
        (terminal_in(pole="231202100000999"), "check character"),
        (terminal_in(code=codes.make("231202", "31", 5).value),
         r"class 31 \(gas_pressure_sensor\) but the kind here is air_sensor"),
        (terminal_in("站", "water_quality_station"), "attrs for a water_quality_station"),
        (terminal_in("调压站", "gas_pressure_sensor",
                     attrs={"pressure_class": "medium_b", "set_point_kpa": 300}), "outside the medium_b class"),
    ],
)
def test_bad_terminals_are_refused_with_a_reason(conn, item, message):
    with pytest.raises(Invalid, match=message):
        service.create_terminal(conn, item, ACTOR)
    assert queries.count_terminals(conn, queries.Search()) == 0


def test_division_is_derived_and_kept_up_to_date(conn):
    code = service.create_terminal(conn, river_station(), ACTOR)
    assert queries.get_terminal(conn, code).division == "231202"
    service.update_terminal(conn, code, TerminalPatch(lon=HAILUN[0], lat=HAILUN[1]), ACTOR)
    moved = queries.get_terminal(conn, code)
    assert moved.division == "231283"
    assert codes.parse(code).division == "231202"  # the code never changes


def test_every_change_is_logged_with_before_and_after(conn):
    code = service.create_terminal(conn, river_station(), ACTOR)
    service.update_terminal(conn, code, TerminalPatch(status="maintenance"), Actor("巡检员张三"))
    service.update_terminal(conn, code, TerminalPatch(status="maintenance"), ACTOR)  # no-op: no row
    service.delete_terminal(conn, code, ACTOR)
    log = audit.entries(conn, object_type="terminal", object_code=code, batch_id=None, before_id=None,
                               limit=10)
    assert [c.action for c in log] == ["delete", "update", "create"]
    update = log[1]
    assert update.actor == "巡检员张三"
    assert update.summary == f"update terminal {code}: status"
    assert (update.before["status"], update.after["status"]) == ("active", "maintenance")
    assert log[0].after is None and log[0].before["code"] == code
    assert log[2].before is None and log[2].after["attrs"]["target_class"] == "III"


def test_pole_with_terminals_cannot_be_deleted(conn):
    pole = service.create_pole(conn, pole_in(), ACTOR)
    service.create_terminal(conn, terminal_in(at=None, pole=pole), ACTOR)
    with pytest.raises(Conflict, match="hosts 1 terminal"):
        service.delete_pole(conn, pole, ACTOR)
    with pytest.raises(NotFound):
        service.delete_pole(conn, codes.make("231202", "10", 999).value, ACTOR)


def test_creating_an_existing_code_is_a_conflict(conn):
    code = service.create_terminal(conn, terminal_in(), ACTOR)
    with pytest.raises(Conflict, match="already exists"):
        service.create_terminal(conn, terminal_in(code=code), ACTOR)


def test_sharing_grants_decide_what_a_department_reads(conn):
    water = service.create_terminal(conn, river_station(), ACTOR)            # sthjj
    gas = service.create_terminal(conn, terminal_in("调压站", "gas_pressure_sensor", attrs={
        "pressure_class": "medium_b", "set_point_kpa": 150}), ACTOR)           # zjj
    readable = lambda dept: {t.code for t in queries.search_terminals(conn, queries.Search(readable_by=dept), 100)}  # noqa: E731
    assert readable("swj") == set()
    grant = sharing.grant(conn, GrantIn(steward="生态环境局", grantee="swj", kind="水质自动监测站"), ACTOR)
    assert readable("swj") == {water}
    assert readable("zjj") == {gas}
    with pytest.raises(Conflict, match="already shares"):
        sharing.grant(conn, GrantIn(steward="sthjj", grantee="swj", kind="water_quality_station"), ACTOR)
    sharing.revoke(conn, grant.id, ACTOR)
    assert readable("swj") == set()
    with pytest.raises(Invalid, match="own terminals"):
        sharing.grant(conn, GrantIn(steward="sthjj", grantee="sthjj"), ACTOR)
