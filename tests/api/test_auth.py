"""Authentication, departments' views, CSRF and the audit log, over real HTTP."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from registry import accounts
from registry.changes import Actor
from tests.conftest import TLS, account_token
from tests.factories import BEILIN, river_station

HOUSING = "zjj"  # 住建局


@pytest.fixture(scope="module")
def housing_viewer(db_url: str) -> str:
    return account_token(db_url, "auth-zjj-viewer", ["viewer"], HOUSING)


def _as(api_url: str, token: str) -> httpx.Client:
    return httpx.Client(verify=TLS, base_url=api_url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def _river_alert(db_url: str, code: str) -> int:
    with psycopg.connect(db_url) as c:
        return c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'gb3838:w01009', 'river', 'warning', 'environment', department_code, division_code, now(),
                   'dissolved oxygen below class III'
              from terminal where code = %s returning id
            """, (code,)).fetchone()[0]


def test_no_or_bad_credentials_are_401_and_health_and_openapi_are_open(api_url: str, http):
    assert httpx.get(f"{api_url}/api/v1/terminals").status_code == 401
    bad = httpx.get(f"{api_url}/api/v1/terminals", headers={"Authorization": "Bearer gzt_forged"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
    assert httpx.post(f"{api_url}/api/v1/terminals", json={}).status_code == 401
    assert httpx.get(f"{api_url}/openapi.json", timeout=60).status_code == 200  # built on first call: slow under load
    assert httpx.get(f"{api_url}/docs", timeout=60).status_code == 200


def test_housing_bureau_reads_river_alerts_and_environmental_terminals_only_when_granted(
        api_url: str, http, db_url: str, housing_viewer: str):
    station = http.post("/api/v1/terminals", json=river_station(department="sthjj").model_dump(mode="json"))
    river = station.json()["code"]
    air = http.post("/api/v1/terminals", json={"name": "空气站", "kind": "air_sensor", "department": "sthjj",
                                               "lon": BEILIN[0], "lat": BEILIN[1]}).json()["code"]
    alert = _river_alert(db_url, river)
    with _as(api_url, housing_viewer) as zjj:
        assert zjj.get(f"/api/v1/terminals/{river}").status_code == 404  # no existence leak
        assert zjj.get(f"/api/v1/alerts/{alert}").status_code == 404
        assert zjj.get(f"/api/v1/terminals/{river}/readings").status_code == 404
        assert zjj.get("/api/v1/alerts", params={"family": "river"}).json()["data"] == []
        assert zjj.get("/api/v1/terminals", params={"count": "true"}).json()["count"] == 0
        assert zjj.get("/api/v1/terminal-states/summary").json()["data"] == []

        grant = http.post("/api/v1/grants", json={"steward": "sthjj", "grantee": HOUSING,
                                                   "kind": "water_quality_station"})
        assert grant.status_code == 201
        assert zjj.get(f"/api/v1/terminals/{river}").status_code == 200
        assert zjj.get(f"/api/v1/alerts/{alert}").status_code == 200
        page = zjj.get("/api/v1/terminals", params={"count": "true"}).json()
        assert [t["code"] for t in page["data"]] == [river] and page["count"] == 1  # exactly the granted ones
        assert zjj.get(f"/api/v1/terminals/{air}").status_code == 404
        exported = zjj.get("/api/v1/ledger/export", params={"format": "geojson"}).json()
        assert [f["properties"]["code"] for f in exported["features"]] == [river]

        http.delete(f"/api/v1/grants/{grant.json()['id']}")
        assert zjj.get(f"/api/v1/terminals/{river}").status_code == 404


def test_an_operator_cannot_issue_device_credentials_and_a_steward_only_its_own(api_url: str, http, db_url: str):
    operator = account_token(db_url, "auth-sthjj-operator", ["operator"], "sthjj")
    steward = account_token(db_url, "auth-zjj-steward", ["steward_admin"], HOUSING)
    air = http.post("/api/v1/terminals", json={"name": "空气站", "kind": "air_sensor", "department": "sthjj",
                                               "lon": BEILIN[0], "lat": BEILIN[1]}).json()["code"]
    with _as(api_url, operator) as client:
        assert client.post(f"/api/v1/credentials/{air}").status_code == 403
    with _as(api_url, steward) as client:
        assert client.post(f"/api/v1/credentials/{air}").status_code == 404  # not even in its view
        gas = client.post("/api/v1/terminals", json={"name": "燃气", "kind": "methane_detector", "lon": BEILIN[0],
                                                     "lat": BEILIN[1]})
        assert gas.status_code == 201  # its own department by default
        assert client.post(f"/api/v1/credentials/{gas.json()['code']}").status_code == 201
        moved = client.patch(f"/api/v1/terminals/{gas.json()['code']}", json={"department": "sthjj"})
        assert moved.status_code == 403  # cannot hand its terminal to another department


def test_a_forged_x_actor_changes_nothing_in_the_audit_log(http):
    code = http.post("/api/v1/terminals", json={"name": "空气站", "kind": "air_sensor", "lon": BEILIN[0],
                                                "lat": BEILIN[1]}, headers={"X-Actor": "mayor"}).json()["code"]
    entries = http.get("/api/v1/audit", params={"object_code": code}).json()["data"]
    assert [(e["actor"], e["action"]) for e in entries] == [("test-admin", "create")]
    assert http.get("/api/v1/audit", params={"actor": "mayor"}).json()["data"] == []


def test_a_session_needs_its_csrf_token_to_change_anything(api_url: str, http, db_url: str):
    password = accounts.new_password()
    with psycopg.connect(db_url) as c:
        accounts.add_account(c, login="auth-browser", name="李伟", department="sthjj", roles=["steward_admin"],
                             kind="person", password=password, actor=Actor("tests"))
    with httpx.Client(verify=TLS, base_url=api_url, timeout=30) as browser:
        assert browser.post("/api/v1/auth/login", json={"login": "auth-browser", "password": "wrong"}).status_code \
            == 401
        login = browser.post("/api/v1/auth/login", json={"login": "auth-browser", "password": password})
        assert login.status_code == 200 and "samesite=strict" in login.headers["set-cookie"].lower()
        assert "httponly" in login.headers["set-cookie"].lower()
        csrf = login.json()["csrf_token"]
        assert browser.get("/api/v1/auth/me").json()["login"] == "auth-browser"
        # A cross-site form POST carries the cookie (at worst) but cannot set the header.
        forged = browser.post("/api/v1/poles", data={"name": "x", "department": "sthjj"},
                              headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert browser.post("/api/v1/terminals", json={"name": "空气站", "kind": "air_sensor", "lon": BEILIN[0],
                                                       "lat": BEILIN[1]}).status_code == 403
        made = browser.post("/api/v1/terminals", json={"name": "空气站", "kind": "air_sensor", "lon": BEILIN[0],
                                                       "lat": BEILIN[1]}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201
        assert browser.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get("/api/v1/auth/me").status_code == 401
    actions = [e["action"] for e in http.get("/api/v1/audit", params={"actor": "auth-browser"}).json()["data"]]
    assert actions == ["logout", "create", "login", "login_failed"]


def test_revoked_tokens_and_disabled_accounts_stop_at_once(api_url: str, http):
    made = http.post("/api/v1/users", json={"login": "auth-system", "name": "住建局燃气监管系统",
                                            "department": HOUSING, "roles": ["viewer"], "kind": "service"})
    assert made.status_code == 201 and made.json()["password"] is None
    token = http.post("/api/v1/users/auth-system/tokens", json={"name": "燃气监管"}).json()
    with _as(api_url, token["token"]) as system:
        assert system.get("/api/v1/auth/me").json()["department"] == HOUSING
        assert system.get("/api/v1/users").status_code == 403
        http.post("/api/v1/users/auth-system/disable")
        assert system.get("/api/v1/auth/me").status_code == 401
        http.post("/api/v1/users/auth-system/enable")
        assert system.get("/api/v1/auth/me").status_code == 200
        assert http.delete(f"/api/v1/tokens/{token['id']}").status_code == 200
        assert system.get("/api/v1/auth/me").status_code == 401
    listed = http.get("/api/v1/users/auth-system/tokens").json()["data"]
    assert "token" not in listed[0] and listed[0]["revoked_at"] is not None


def test_the_audit_log_refuses_update_and_delete(http, db_url: str):
    http.post("/api/v1/terminals", json={"name": "空气站", "kind": "air_sensor", "lon": BEILIN[0], "lat": BEILIN[1]})
    with psycopg.connect(db_url) as c, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        c.execute("update change set actor = 'someone else'")
    with psycopg.connect(db_url) as c, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        c.execute("delete from change")


def test_guessing_a_password_gets_429_with_retry_after(api_url: str, db_url: str):
    with psycopg.connect(db_url) as c:
        accounts.add_account(c, login="auth-guessed", name="王芳", department="sthjj", roles=["viewer"],
                             kind="person", password="a long and right password", actor=Actor("tests"))
    with httpx.Client(verify=TLS, base_url=api_url, timeout=30) as browser:
        guesses = [browser.post("/api/v1/auth/login", json={"login": "auth-guessed", "password": f"guess {n}"})
                   for n in range(accounts.FAILED_LOGIN_LIMITS["account_from_client"])]
        assert [g.status_code for g in guesses] == [401] * len(guesses)
        refused = browser.post("/api/v1/auth/login", json={"login": "auth-guessed",
                                                            "password": "a long and right password"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "set-cookie" not in refused.headers


def test_someone_elses_token_is_404_as_a_missing_one(api_url: str, db_url: str):
    """Token ids are counted: 403 for another account's token would tell a prober which ids exist."""
    owner = account_token(db_url, "auth-token-owner", ["viewer"], "sthjj")
    prober = account_token(db_url, "auth-token-prober", ["steward_admin"], "sthjj")
    with psycopg.connect(db_url) as c:
        token_id = accounts.list_tokens(c, "auth-token-owner")[0]["id"]
    with _as(api_url, prober) as client:
        assert client.delete(f"/api/v1/tokens/{token_id}").status_code == 404
        assert client.delete(f"/api/v1/tokens/{token_id + 100000}").status_code == 404
    with _as(api_url, owner) as client:
        assert client.get("/api/v1/auth/me").status_code == 200  # not revoked


def _alert_of(db_url: str, code: str, bureau: str, family: str) -> int:
    with psycopg.connect(db_url) as c:
        return c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'test', %s, 'warning', %s, department_code, division_code, now(), 'test'
              from terminal where code = %s returning id
            """, (family, bureau, code)).fetchone()[0]


def test_a_department_reads_granted_alerts_but_acts_only_on_routed_ones(api_url: str, http, db_url: str):
    """Policy: a grant lends reading; acting (acknowledge, resolve, close, comment, dispatch) stays with the
    terminal's steward department and the departments the alert is routed to (alert_route)."""
    operator = account_token(db_url, "auth-zjj-operator", ["operator"], HOUSING)
    river = http.post("/api/v1/terminals", json=river_station(department="sthjj").model_dump(mode="json")).json()
    granted = _river_alert(db_url, river["code"])  # the environment bureau's: routed to sthjj, not to 住建局
    routed = _alert_of(db_url, river["code"], "housing", "water")  # the housing bureau's: routed to 住建局
    assert http.post("/api/v1/grants", json={"steward": "sthjj", "grantee": HOUSING,
                                             "kind": "water_quality_station"}).status_code == 201
    account_token(db_url, "auth-zjj-field", ["viewer"], HOUSING, kind="person")
    with _as(api_url, operator) as zjj:
        assert zjj.get(f"/api/v1/alerts/{granted}").status_code == 200
        for action in ("acknowledge", "comment", "resolve", "close"):
            assert zjj.post(f"/api/v1/alerts/{granted}/{action}", json={"comment": "看看"}).status_code == 403
        task = {"subject_type": "alert", "assignee": "auth-zjj-field", "due_at": "2031-01-01T08:00:00+08:00"}
        assert zjj.post("/api/v1/tasks", json={**task, "subject_id": granted}).status_code == 403
        assert zjj.post(f"/api/v1/alerts/{routed}/acknowledge").status_code == 200
        assert zjj.post("/api/v1/tasks", json={**task, "subject_id": routed}).status_code == 201
    assert [e["action"] for e in http.get(f"/api/v1/alerts/{granted}").json()["events"]] == []


def test_an_account_of_a_disabled_department_cannot_log_in(api_url: str, http, db_url: str):
    """As a disabled account: 401 with the same message, audited as failed (a session that then answers 401
    to everything would confirm the password and leave a false ``login`` in the audit log)."""
    assert http.post("/api/v1/departments", json={"code": "rsj", "name": "绥化市人力资源和社会保障局",
                                                  "name_en": "Human Resources Bureau"}).status_code == 201
    password = accounts.new_password()
    with psycopg.connect(db_url) as c:
        accounts.add_account(c, login="auth-rsj-person", name="赵敏", department="rsj", roles=["viewer"],
                             kind="person", password=password, actor=Actor("tests"))
    credentials = {"login": "auth-rsj-person", "password": password}
    assert http.patch("/api/v1/departments/rsj", json={"disabled": True}).status_code == 200
    with httpx.Client(verify=TLS, base_url=api_url, timeout=30) as browser:
        refused = browser.post("/api/v1/auth/login", json=credentials)
        wrong = browser.post("/api/v1/auth/login", json={**credentials, "password": "wrong"})
        assert refused.status_code == wrong.status_code == 401 and refused.json() == wrong.json()
        assert "set-cookie" not in refused.headers
        assert http.patch("/api/v1/departments/rsj", json={"disabled": False}).status_code == 200
        assert browser.post("/api/v1/auth/login", json=credentials).status_code == 200
    actions = [e["action"] for e in http.get("/api/v1/audit", params={"actor": "auth-rsj-person"}).json()["data"]]
    assert actions == ["login", "login_failed", "login_failed"]


def test_a_terminal_handed_to_another_department_takes_its_open_alerts_along(api_url: str, http, db_url: str):
    """Handing terminals over is the wind-down of a disabled department: the new steward acts on their open
    alerts; the old one keeps only what is routed to it (the environment bureau's alerts, to sthjj)."""
    new_steward = account_token(db_url, "auth-zjj-heir", ["operator"], HOUSING)
    old_steward = account_token(db_url, "auth-sthjj-former", ["operator"], "sthjj")
    account_token(db_url, "auth-zjj-heir-field", ["viewer"], HOUSING, kind="person")
    river = http.post("/api/v1/terminals", json=river_station(department="sthjj").model_dump(mode="json")).json()
    routed = _river_alert(db_url, river["code"])
    unrouted = _alert_of(db_url, river["code"], "steward", "device")  # routed to nobody
    assert http.patch(f"/api/v1/terminals/{river['code']}", json={"department": HOUSING}).status_code == 200
    with _as(api_url, new_steward) as zjj:
        assert zjj.post(f"/api/v1/alerts/{routed}/acknowledge").status_code == 200
        task = {"subject_type": "alert", "subject_id": unrouted, "assignee": "auth-zjj-heir-field",
                "due_at": "2031-01-01T08:00:00+08:00"}
        assert zjj.post("/api/v1/tasks", json=task).status_code == 201
        assert zjj.post(f"/api/v1/alerts/{unrouted}/resolve", json={"comment": "接管后处理"}).status_code == 200
    with _as(api_url, old_steward) as sthjj:
        assert sthjj.post(f"/api/v1/alerts/{routed}/resolve", json={"comment": "河流归我局"}).status_code == 200
        assert sthjj.get(f"/api/v1/alerts/{unrouted}").status_code == 404  # no longer its terminal
        assert sthjj.post(f"/api/v1/alerts/{unrouted}/close").status_code == 404


def test_the_account_list_takes_a_department_by_code_or_name_and_refuses_an_unknown_one(http):
    """As every other list's ``department`` (terminals, poles, alerts, grants): a code, name or alias, and an
    unknown one is a 422 naming the field, not an empty page (a typo read as "no accounts there"; the schema fuzz's
    case with a garbage department was answered 200 with an empty page)."""
    made = http.post("/api/v1/users", json={"login": "auth-dept-list", "name": "部门列表", "department": "sthjj",
                                            "roles": ["viewer"], "kind": "service"})
    assert made.status_code == 201
    by_code = http.get("/api/v1/users", params={"department": "sthjj"}).json()["data"]
    assert "auth-dept-list" in [account["login"] for account in by_code]
    assert {account["department"] for account in by_code} == {"sthjj"}
    for name in ("绥化市生态环境局", "环保局"):
        assert http.get("/api/v1/users", params={"department": name}).json()["data"] == by_code, name
    unknown = http.get("/api/v1/users", params={"department": "没有这个局"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "department"
