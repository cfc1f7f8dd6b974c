"""The alert API as an integrator uses it: filters by terminal, pole and metric, structured fields stored on the
alert, one paging style, documented schemas."""

from __future__ import annotations

import os

import httpx
import psycopg

from registry import service
from registry.changes import Actor
from tests.analytics.test_worker import Worker, _write
from tests.conftest import TLS, account_token
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


def _drift_alert(http: httpx.Client, db_url: str, rule: str = "device:drift:w01019") -> int:
    """An open alert of 生态环境局's river station, which it lets 城管局 (cgj) read by a sharing grant."""
    code = http.post("/api/v1/terminals", json=river_station(department="sthjj").model_dump(mode="json")).json()["code"]
    with psycopg.connect(db_url) as c:
        c.execute("insert into sharing_grant (steward_code, grantee_code, granted_by) values ('sthjj', 'cgj', 't') "
                  "on conflict do nothing")
        return c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, %s, 'device', 'warning', 'steward', department_code, division_code, now(), 'creeping'
              from terminal where code = %s returning id
            """, (rule, code)).fetchone()[0]


def _as(api_url: str, db_url: str, login: str, roles: list[str], department: str | None) -> httpx.Client:
    token = account_token(db_url, f"{login}-{os.getpid()}-{os.urandom(3).hex()}", roles, department)
    return httpx.Client(verify=TLS, base_url=api_url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def test_only_the_analysers_steward_gives_a_verdict_on_its_drift_alert(http, api_url, db_url):
    """Vouching "sensor_ok" pages the bureau at once, confirmed: it is the steward's word on its own analyser. A
    department reading the terminal by a grant, or the platform admin, sees the alert but may not give it (403); a
    verdict on any other alert is refused (422); the steward's operator gives it, and the audit log keeps it."""
    alert = _drift_alert(http, db_url)
    sensor_ok = {"verdict": "sensor_ok"}
    with _as(api_url, db_url, "grantee", ["operator"], "cgj") as grantee, \
            _as(api_url, db_url, "steward-op", ["operator"], "sthjj") as steward:
        assert grantee.get(f"/api/v1/alerts/{alert}").status_code == 200
        assert grantee.post(f"/api/v1/alerts/{alert}/acknowledge", json=sensor_ok).status_code == 403
        assert http.post(f"/api/v1/alerts/{alert}/acknowledge", json=sensor_ok).status_code == 403
        other = _drift_alert(http, db_url, "gb3838:w01019")
        assert steward.post(f"/api/v1/alerts/{other}/acknowledge", json=sensor_ok).status_code == 422
        done = steward.post(f"/api/v1/alerts/{alert}/acknowledge", json=sensor_ok)
        assert done.status_code == 200 and done.json()["status"] == "acknowledged"
    with psycopg.connect(db_url) as c:
        assert c.execute("select verdict from alert where id = %s", (alert,)).fetchone() == ("sensor_ok",)
        assert c.execute("select after from change where object_type = 'alert' and object_code = %s order by id desc "
                         "limit 1", (str(alert),)).fetchone() == ({"verdict": "sensor_ok"},)
