"""The Suihua demo ledger: realistic counts, every device in the right division."""

from __future__ import annotations

from collections import Counter

import pytest

from registry import demo, queries
from registry.errors import Conflict
from registry.lookups import Lookups


def test_demo_ledger_counts_and_places(conn):
    poles, terminals = demo.load(conn)
    kinds = Counter(t.kind for t in queries.search_terminals(conn, queries.Search(), 100_000))
    assert poles >= 1_000 + demo.TOWERS
    assert sum(kinds.values()) == terminals
    assert kinds["video_camera"] >= demo.TOWERS
    assert kinds["thermal_camera"] == demo.TOWERS // 3
    assert kinds["sewage_outlet_analyser"] == len(demo.SEATS)
    assert kinds["gas_pressure_sensor"] > 0 and kinds["methane_detector"] > 0
    assert kinds["water_pressure_point"] > 0 and kinds["district_flow_meter"] > 0
    assert kinds["heating_substation_sensor"] > 0 and kinds["indoor_temp_sensor"] > 0

    # Every division is re-derived from the boundaries: nothing outside, nothing misplaced.
    index = Lookups.load(conn).index
    for terminal in queries.search_terminals(conn, queries.Search(), 100_000):
        assert index.locate(terminal.lon, terminal.lat) == terminal.division

    # Smart poles in the towns carry several departments' sensors.
    town_poles = [p for p in queries.search_poles(conn, queries.Search(department="cgj"), 2_000)]
    assert len(town_poles) >= 1_000
    shared = conn.execute(
        "select count(*) from (select pole_id from terminal where pole_id is not null "
        "group by pole_id having count(distinct department_code) >= 2) s"
    ).fetchone()[0]
    assert shared > 500


def test_river_stations_follow_their_river_by_chainage(conn):
    demo.load(conn)
    stations = queries.search_terminals(conn, queries.Search(kind="water_quality_station"), 1_000)
    rivers = {t.attrs["river"] for t in stations}
    assert rivers == {"呼兰河", "通肯河", "肇兰新河", "安肇新河"}
    for river in rivers:
        along = sorted((t for t in stations if t.attrs["river"] == river), key=lambda t: t.attrs["chainage_km"])
        assert len(along) >= 2
        names = [t.name for t in along]
        assert names == sorted(names)  # numbered upstream to downstream


def test_demo_refuses_a_ledger_that_is_not_empty(conn):
    demo.load(conn)
    with pytest.raises(Conflict, match="not empty"):
        demo.load(conn)
