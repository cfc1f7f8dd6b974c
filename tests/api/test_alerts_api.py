"""The alert API as an integrator uses it: filters by terminal, pole and metric, structured fields stored on the
alert, one paging style, documented schemas."""

from __future__ import annotations

import psycopg

from registry import service
from registry.changes import Actor
from tests.analytics.test_worker import Worker, _write
from tests.factories import pole_in, river_station, terminal_in


def _fleet(conn, db_url: str) -> dict[str, str]:
    """A river station over its target class, and two methane detectors on one pole leaking; alerts raised."""
    pole = service.create_pole(conn, pole_in(), Actor("t"))
    codes = {
        "river": service.create_terminal(conn, river_station(), Actor("t")),
        "gas": service.create_terminal(conn, terminal_in("甲烷", "methane_detector", at=None, pole=pole), Actor("t")),
        "gas2": service.create_terminal(conn, terminal_in("甲烷2", "methane_detector", at=None, pole=pole), Actor("t")),
        "pole": pole,
    }
    conn.commit()
    worker = Worker(db_url)
    _write(db_url, codes["river"], "w21003", [(-90, 1.6, None), (-60, 1.7, None)])
    for key in ("gas", "gas2"):
        # 60 after 30 counts once the next reading shows it stayed (a lone jump is a spike: the steward's)
        _write(db_url, codes[key], "methane_lel", [(-5, 30.0, None), (-4, 60.0, None), (-3, 61.0, None)])
    worker.step()
    worker.close()
    return codes


def test_alerts_carry_structured_fields_stored_on_the_alert(conn, db_url, http):
    codes = _fleet(conn, db_url)
    river = http.get("/api/v1/alerts", params={"terminal": codes["river"]}).json()["data"]
    assert len(river) == 1
    assert {k: river[0][k] for k in ("metric", "unit", "value", "limit", "direction", "standard", "grade")} == {
        "metric": "w21003", "unit": "mg/L", "value": 1.7, "limit": 1.0, "direction": "above",
        "standard": "GB 3838-2002", "grade": "V"}  # NH3-N 1.7 mg/L meets class V only; class III allows 1.0
    gas = http.get("/api/v1/alerts", params={"terminal": codes["gas"]}).json()["data"][0]
    assert (gas["metric"], gas["unit"], gas["limit"], gas["grade"], gas["direction"]) == (
        "methane_lel", "%LEL", 50.0, "level 2", "above")
    with psycopg.connect(db_url) as c:  # stored, not rebuilt by the API
        assert c.execute("select metric, limit_value from alert where rule = 'gb3838:w21003'").fetchone() == (
            "w21003", 1.0)
    detail = http.get(f"/api/v1/alerts/{river[0]['id']}").json()
    assert detail["metric"] == "w21003" and [r["value"] for r in detail["readings"]] == [1.6, 1.7]


def test_alerts_and_incidents_filter_by_terminal_pole_and_metric(conn, db_url, http):
    codes = _fleet(conn, db_url)
    on_pole = http.get("/api/v1/alerts", params={"pole": codes["pole"]}).json()["data"]
    assert {a["terminal"] for a in on_pole} == {codes["gas"], codes["gas2"]}
    assert {a["pole"] for a in on_pole} == {codes["pole"]}
    by_metric = http.get("/api/v1/alerts", params={"metric": "w21003"}).json()["data"]
    assert [a["terminal"] for a in by_metric] == [codes["river"]]
    assert http.get("/api/v1/alerts", params={"metric": "w21011"}).json() == {"data": [], "next": None,
                                                                              "count": None}
    incidents = http.get("/api/v1/incidents", params={"pole": codes["pole"]}).json()["data"]
    assert len(incidents) == 1 and incidents[0]["key"] == f"pole:{codes['pole']}" and incidents[0]["alerts"] == 2
    river = http.get("/api/v1/incidents", params={"terminal": codes["river"]}).json()["data"]
    assert [i["key"] for i in river] == [f"river:呼兰河:{codes['river']}"]
    assert len(http.get("/api/v1/incidents", params={"metric": "methane_lel"}).json()["data"]) == 1


def test_alerts_page_with_data_and_next(conn, db_url, http):
    _fleet(conn, db_url)
    seen, after = [], None
    while True:
        page = http.get("/api/v1/alerts", params={"limit": 1, **({"after": after} if after else {})}).json()
        seen += [a["id"] for a in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
    assert http.get("/api/v1/alerts", params={"after": "x"}).status_code == 422


def test_alert_responses_have_documented_schemas(http):
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, method in (("/api/v1/alerts", "get"), ("/api/v1/alerts/{alert_id}", "get"),
                         ("/api/v1/alerts/{alert_id}/{action}", "post"), ("/api/v1/incidents", "get")):
        body = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        name = body["$ref"].rsplit("/", 1)[-1]
        fields = schemas[name]["properties"]
        if "data" in fields:  # a page: {data, next}
            assert set(fields) >= {"data", "next"}
            name = fields["data"]["items"]["$ref"].rsplit("/", 1)[-1]
            fields = schemas[name]["properties"]
        assert all(field.get("type") != "object" or "properties" in field for field in fields.values()), name
        assert {"metric", "unit", "value", "limit", "direction", "standard", "grade"} <= set(fields) or \
            name == "Incident"
