"""The dashboard's reads over real HTTP: map points with state, towers and the worst active alert; counts per
bureau and county; an alert's incident members and dispatch tasks; the page itself."""

from __future__ import annotations

import psycopg

from registry import service
from registry.changes import Actor
from tests.conftest import account_token
from tests.factories import pole_in, terminal_in


def _alert(url: str, code: str, severity: str, bureau: str = "environment", family: str = "river",
           incident: int | None = None) -> int:
    with psycopg.connect(url) as c:
        return c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail, incident_id)
            select id, 'test:' || %(severity)s, %(family)s, %(severity)s, %(bureau)s, department_code, division_code,
                   now(), 'test', %(incident)s
              from terminal where code = %(code)s returning id
            """, {"code": code, "severity": severity, "bureau": bureau, "family": family,
                  "incident": incident}).fetchone()[0]


def _ledger(url: str) -> dict[str, str]:
    with psycopg.connect(url) as c:
        tower = service.create_pole(c, pole_in("禁烧监控塔测试", department="sthjj", at=(126.5, 46.9)), Actor("t"))
        pole = service.create_pole(c, pole_in("中兴大街测试杆", department="sthjj"), Actor("t"))
        made = {
            "tower": tower, "pole": pole,
            "camera": service.create_terminal(c, terminal_in("塔上可见光", kind="video_camera", department="sthjj",
                                                             at=None, pole=tower), Actor("t")),
            "air": service.create_terminal(c, terminal_in("杆上空气站", department="sthjj", at=None, pole=pole),
                                           Actor("t")),
            "cam2": service.create_terminal(c, terminal_in("杆上摄像机", kind="video_camera", department="sthjj",
                                                           at=None, pole=pole), Actor("t")),
            "gas": service.create_terminal(c, terminal_in("住建测试站", kind="air_sensor",
                                                          department="zjj", at=(127.0, 46.6)), Actor("t")),
        }
        c.execute("insert into device_state (code, last_seen_at, connection) values (%s, now(), 'online')",
                  (made["air"],))
    return made


def test_map_points_carry_state_towers_and_worst_alert(http, db_url):
    made = _ledger(db_url)
    _alert(db_url, made["air"], "warning")
    _alert(db_url, made["air"], "critical")
    points = http.get("/api/v1/dashboard/map").json()
    terminals = {code: i for i, code in enumerate(points["terminals"]["code"])}
    air = terminals[made["air"]]
    assert points["terminals"]["state"][air] == "online"
    assert points["terminals"]["alert"][air] == "critical"
    assert points["terminals"]["pole"][air] == made["pole"]
    assert points["terminals"]["alert"][terminals[made["camera"]]] is None
    assert points["terminals"]["state"][terminals[made["camera"]]] == "never"
    poles = dict(zip(points["poles"]["code"], points["poles"]["tower"], strict=True))
    assert poles == {made["tower"]: True, made["pole"]: False}  # a pole with a camera and a sensor is no tower
    assert dict(zip(points["poles"]["code"], points["poles"]["terminals"], strict=True))[made["pole"]] == 2


def test_map_points_and_counts_follow_the_callers_rights(http, api_url, db_url):
    made = _ledger(db_url)
    _alert(db_url, made["air"], "warning")
    _alert(db_url, made["gas"], "critical", bureau="housing", family="gas")
    housing = {"Authorization": f"Bearer {account_token(db_url, 'dash-api-zjj', ['viewer'], 'zjj')}"}
    points = http.get("/api/v1/dashboard/map", headers=housing).json()
    assert points["terminals"]["code"] == [made["gas"]]
    assert points["poles"]["code"] == []
    counts = http.get("/api/v1/dashboard/counts", headers=housing).json()
    assert {b["bureau"]: b["open"] for b in counts["bureaus"]} == {"environment": 0, "housing": 1, "steward": 0}
    everything = http.get("/api/v1/dashboard/counts").json()
    assert {b["bureau"]: b["open"] for b in everything["bureaus"]} == {"environment": 1, "housing": 1, "steward": 0}
    counties = {c["code"]: c for c in everything["counties"]}
    assert len(counties) == 10 and counties["231202"]["name"] == "北林区"
    assert counties["231202"]["open"] == 2  # both sit in 北林区


def test_alert_context_lists_incident_members_and_tasks(http, db_url):
    made = _ledger(db_url)
    with psycopg.connect(db_url) as c:
        incident = c.execute("insert into incident (key, title, bureau, division_code) values "
                             "('pole:x', '测试杆多项超标', 'environment', '231202') returning id").fetchone()[0]
    first = _alert(db_url, made["air"], "warning", incident=incident)
    second = _alert(db_url, made["cam2"], "critical", incident=incident)
    account_token(db_url, "context-field", ["viewer"], "sthjj", kind="person")
    task = http.post("/api/v1/tasks", json={"subject_type": "incident", "subject_id": incident,
                                            "assignee": "context-field", "due_at": "2031-01-01T08:00:00+08:00"})
    assert task.status_code == 201, task.text
    context = http.get(f"/api/v1/dashboard/alerts/{first}").json()
    assert context["incident"]["title"] == "测试杆多项超标"
    assert [m["id"] for m in context["members"]] == [second, first]
    assert [t["id"] for t in context["tasks"]] == [task.json()["id"]]
    assert http.get("/api/v1/dashboard/alerts/999999").status_code == 404


def test_the_page_is_served_without_login_and_its_data_is_not(api_url):
    import httpx

    page = httpx.get(f"{api_url}/", follow_redirects=True)
    assert page.status_code == 200 and "态势大屏" in page.text
    assert httpx.get(f"{api_url}/dashboard/vendor/leaflet-1.9.4/LICENSE").status_code == 200
    assert httpx.get(f"{api_url}/api/v1/dashboard/map").status_code == 401
