"""The ledger API over real HTTP."""

from __future__ import annotations

from registry import codes
from tests.factories import ANDA, BEILIN, HAILUN, RIVER_ATTRS

AIR = {"name": "中兴大街空气微站", "kind": "air_sensor", "lon": BEILIN[0], "lat": BEILIN[1]}


def _create(http, body: dict, **headers) -> str:
    response = http.post("/api/v1/terminals", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["code"]


def test_create_read_update_delete(http):
    code = _create(http, AIR, **{"X-Actor": "clerk-li"})
    got = http.get(f"/api/v1/terminals/{code}").json()
    assert (got["division"], got["department"], got["kind"]) == ("231202", "sthjj", "air_sensor")

    patched = http.patch(f"/api/v1/terminals/{code}", json={"status": "maintenance", "vendor": "先河环保"})
    assert patched.status_code == 200
    assert (patched.json()["status"], patched.json()["vendor"]) == ("maintenance", "先河环保")

    changes = http.get("/api/v1/changes", params={"object_code": code}).json()["data"]
    assert [c["action"] for c in changes] == ["update", "create"]
    assert changes[1]["actor"] == "test-admin"  # the authenticated account; a forged X-Actor is ignored

    assert http.delete(f"/api/v1/terminals/{code}").status_code == 204
    missing = http.get(f"/api/v1/terminals/{code}")
    assert missing.status_code == 404
    assert "not in the ledger" in missing.json()["detail"]


def test_bad_input_gets_a_clear_4xx(http):
    outside = http.post("/api/v1/terminals", json={**AIR, "lon": 126.63, "lat": 45.75})
    assert outside.status_code == 422
    assert "outside Suihua" in outside.json()["detail"]
    wrong_field = http.post("/api/v1/terminals", json={**AIR, "colour": "red"})
    assert wrong_field.status_code == 422
    bad_code = http.get("/api/v1/terminals/23120221000017C")
    assert bad_code.status_code == 404
    code = _create(http, AIR)
    duplicate = http.post("/api/v1/terminals", json={**AIR, "code": code})
    assert duplicate.status_code == 409
    assert http.get("/api/v1/terminals", params={"bbox": "1,2,3"}).status_code == 422
    assert http.get("/api/v1/terminals", params={"kind": "toaster"}).status_code == 422


def test_search_filters(http):
    station = _create(http, {"name": "呼兰河05号水质自动站", "kind": "water_quality_station", "lon": 126.94,
                             "lat": 46.53, "attrs": RIVER_ATTRS})
    anda = _create(http, {**AIR, "name": "安达空气站", "lon": ANDA[0], "lat": ANDA[1], "address": "安达市铁西区"})
    gas = _create(http, {"name": "海伦调压站", "kind": "gas_pressure_sensor", "lon": HAILUN[0], "lat": HAILUN[1],
                         "attrs": {"pressure_class": "low", "set_point_kpa": 3}})

    def codes_for(**params) -> set[str]:
        response = http.get("/api/v1/terminals", params=params)
        assert response.status_code == 200, response.text
        return {t["code"] for t in response.json()["data"]}

    assert codes_for(division="231200") == {station, anda, gas}  # the city: whole subtree
    assert codes_for(division="231281") == {anda}
    assert codes_for(department="住建局") == {gas}
    assert codes_for(kind="水质自动监测站") == {station}
    assert codes_for(bbox="125,46,126,47") == {anda}
    assert codes_for(q="铁西") == {anda}
    assert codes_for(q=anda[:10]) == {anda}
    assert codes_for(status="active") == {station, anda, gas}
    assert codes_for(readable_by="swj") == set()
    grant = http.post("/api/v1/grants", json={"steward": "sthjj", "grantee": "swj", "kind": "air_sensor"})
    assert grant.status_code == 201
    assert codes_for(readable_by="swj") == {anda}


def test_paging_visits_every_terminal_once(http):
    made = {_create(http, {**AIR, "name": f"空气站{i}", "lon": BEILIN[0] + i * 0.001}) for i in range(7)}
    seen, after = [], None
    while True:
        params = {"limit": 3, "count": "true", **({"after": after} if after else {})}
        page = http.get("/api/v1/terminals", params=params).json()
        assert page["count"] == 7
        seen += [t["code"] for t in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(made)


def test_geojson_output(http):
    code = _create(http, AIR)
    response = http.get("/api/v1/terminals", params={"format": "geojson"})
    assert response.headers["content-type"].startswith("application/geo+json")
    feature = response.json()["features"][0]
    assert feature["id"] == code
    assert feature["geometry"] == {"type": "Point", "coordinates": [BEILIN[0], BEILIN[1]]}


def test_poles_carry_several_departments(http):
    pole = http.post("/api/v1/poles", json={"name": "中兴大街01号杆", "department": "城管局", "lon": BEILIN[0],
                                            "lat": BEILIN[1]})
    assert pole.status_code == 201
    pole_code = pole.json()["code"]
    assert codes.parse(pole_code).kind == "smart_pole"
    _create(http, {"name": "杆上空气站", "kind": "air_sensor", "pole": pole_code})
    _create(http, {"name": "杆上甲烷", "kind": "methane_detector", "pole": pole_code})
    hosted = http.get(f"/api/v1/poles/{pole_code}/terminals").json()["data"]
    assert {t["department"] for t in hosted} == {"sthjj", "zjj"}
    assert http.get(f"/api/v1/poles/{pole_code}").json()["terminal_count"] == 2
    refused = http.delete(f"/api/v1/poles/{pole_code}")
    assert refused.status_code == 409
    assert "hosts 2 terminal" in refused.json()["detail"]


def test_reference_lists(http):
    listed = http.get("/api/v1/divisions").json()
    assert listed["next"] is None  # the whole list in one page
    divisions = listed["data"]
    assert len(divisions) == 11
    assert {d["code"] for d in divisions if d["parent"] == "231200"} >= {"231202", "231283"}
    feature = http.get("/api/v1/divisions/231202").json()
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert feature["properties"]["name"] == "北林区"
    assert {d["code"] for d in http.get("/api/v1/departments").json()["data"]} >= {"sthjj", "zjj", "swj"}
    kinds = {k["key"]: k for k in http.get("/api/v1/kinds").json()["data"]}
    assert kinds["water_quality_station"]["class_code"] == "21"
    assert any(m["key"] == "w21003" for m in http.get("/api/v1/metrics").json()["data"])


def test_townships_can_be_added_and_are_used_for_location(http):
    square = {"type": "Polygon", "coordinates": [[[126.95, 46.62], [127.01, 46.62], [127.01, 46.66],
                                                  [126.95, 46.66], [126.95, 46.62]]]}
    added = http.post("/api/v1/divisions", json={"code": "231202100", "name": "示例镇", "level": "township",
                                                  "parent": "231202", "boundary": square})
    assert added.status_code == 201, added.text
    code = _create(http, AIR)
    assert http.get(f"/api/v1/terminals/{code}").json()["division"] == "231202100"
    in_county = {t["code"] for t in http.get("/api/v1/terminals", params={"division": "231202"}).json()["data"]}
    assert code in in_county  # the county filter includes its townships
    wrong_parent = http.post("/api/v1/divisions", json={"code": "231283100", "name": "错镇", "level": "township",
                                                         "parent": "231202"})
    assert wrong_parent.status_code == 422
