"""Departments added and renamed by the platform admin (API and CLI), audited; the seed keeps its hands off."""

from __future__ import annotations

import httpx
import psycopg

from registry import reference
from tests.conftest import TLS, account_token
from tests.factories import BEILIN, river_station

APPROVALS = {"code": "xzspj", "name": "绥化市行政审批服务局", "name_en": "Administrative Approval Bureau",
             "aliases": ["审批局"]}


def test_the_platform_admin_adds_and_renames_a_department_and_the_audit_log_has_both(
        api_url: str, http: httpx.Client, db_url: str):
    steward = account_token(db_url, "dept-sthjj-steward", ["steward_admin"], "sthjj")
    with httpx.Client(base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {steward}"},
                      verify=TLS) as client:
        assert client.post("/api/v1/departments", json=APPROVALS).status_code == 403
        assert client.patch("/api/v1/departments/sthjj", json={"name_en": "x y"}).status_code == 403
    made = http.post("/api/v1/departments", json=APPROVALS)
    assert made.status_code == 201 and made.json()["bureau"] == "other"
    assert http.post("/api/v1/departments", json=APPROVALS).status_code == 409
    renamed = http.patch("/api/v1/departments/xzspj", json={"aliases": ["审批局", "政务服务局"]})
    assert renamed.status_code == 200 and renamed.json()["name"] == APPROVALS["name"]
    assert http.patch("/api/v1/departments/nosuch", json={"name_en": "x y"}).status_code == 404
    terminal = http.post("/api/v1/terminals", json={"name": "审批大厅", "kind": "air_sensor", "lon": BEILIN[0],
                                                    "lat": BEILIN[1], "department": "政务服务局"})
    assert terminal.status_code == 201  # the new alias resolves
    assert http.get(f"/api/v1/terminals/{terminal.json()['code']}").json()["department"] == "xzspj"
    entries = http.get("/api/v1/audit", params={"object_type": "department", "object_code": "xzspj"}).json()["data"]
    assert [(e["actor"], e["action"]) for e in entries] == [("test-admin", "update"), ("test-admin", "create")]
    assert entries[0]["before"] == {"aliases": ["审批局"]}


def test_a_seeded_departments_new_name_outlives_the_next_seed(http: httpx.Client, db_url: str):
    old = next(d for d in http.get("/api/v1/departments").json()["data"] if d["code"] == "yjglj")
    try:
        assert http.patch("/api/v1/departments/yjglj", json={"name": "绥化市应急管理局（新）"}).status_code == 200
        with psycopg.connect(db_url) as c:
            reference.seed(c)
        now = next(d for d in http.get("/api/v1/departments").json()["data"] if d["code"] == "yjglj")
        assert now["name"] == "绥化市应急管理局（新）"
    finally:
        http.patch("/api/v1/departments/yjglj", json={"name": old["name"]})


def test_cli_adds_and_renames_a_department(db_url: str):
    from tests.test_cli import _ganzhi

    added = _ganzhi("department", "add", "cli_dept", "--name", "绥化市测试局", "--name-en", "Test Bureau",
                    "--alias", "测试局", db_url=db_url)
    assert added.returncode == 0, added.stderr
    assert _ganzhi("department", "rename", "cli_dept", "--name", "绥化市试验局", db_url=db_url).returncode == 0
    assert "绥化市试验局" in _ganzhi("department", "list", db_url=db_url).stdout
    with psycopg.connect(db_url) as c:
        actions = c.execute("select actor, action from change where object_type = 'department' "
                            "and object_code = 'cli_dept' order by id").fetchall()
    assert actions == [("cli", "create"), ("cli", "update")]


def test_a_terminals_own_limits_in_attrs_are_audited_with_before_and_after(http: httpx.Client):
    """The national norms are code (a release changes them); what a terminal is held to beyond them (a section's
    target class, a gas regulator's set point, a district's night allowance) is ledger attrs: every change of it
    is in the audit log, old and new value."""
    made = http.post("/api/v1/terminals", json=river_station(department="sthjj").model_dump(mode="json"))
    code = made.json()["code"]
    attrs = http.get(f"/api/v1/terminals/{code}").json()["attrs"]
    changed = http.patch(f"/api/v1/terminals/{code}", json={"attrs": {**attrs, "target_class": "II"}})
    assert changed.status_code == 200
    entry = http.get("/api/v1/audit", params={"object_code": code, "action": "update"}).json()["data"][0]
    assert entry["actor"] == "test-admin"
    assert (entry["before"]["attrs"]["target_class"], entry["after"]["attrs"]["target_class"]) == (
        attrs["target_class"], "II")


def test_a_disabled_department_takes_nothing_new_and_its_accounts_stop_at_once(
        api_url: str, http: httpx.Client, db_url: str):
    made = http.post("/api/v1/departments", json={"code": "tyj", "name": "绥化市体育局", "name_en": "Sports Bureau"})
    assert made.status_code == 201
    steward = account_token(db_url, "dept-tyj-steward", ["steward_admin"], "tyj")
    with httpx.Client(base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {steward}"},
                      verify=TLS) as client:
        kept = client.post("/api/v1/terminals", json={"name": "体育场空气站", "kind": "air_sensor", "lon": BEILIN[0],
                                                      "lat": BEILIN[1]}).json()["code"]
        disabled = http.patch("/api/v1/departments/tyj", json={"disabled": True})
        assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
        assert client.get("/api/v1/auth/me").status_code == 401
    terminal = {"name": "体育馆空气站", "kind": "air_sensor", "lon": BEILIN[0], "lat": BEILIN[1], "department": "tyj"}
    assert http.post("/api/v1/terminals", json=terminal).status_code == 422
    assert http.post("/api/v1/users", json={"login": "tyj-new", "name": "新人", "department": "tyj",
                                            "roles": ["viewer"]}).status_code == 422
    assert http.post("/api/v1/grants", json={"steward": "sthjj", "grantee": "tyj"}).status_code == 422
    assert http.get(f"/api/v1/terminals/{kept}").json()["department"] == "tyj"  # what it has stays
    assert http.patch(f"/api/v1/terminals/{kept}", json={"department": "zjj"}).status_code == 200  # handed over
    actions = [e["action"] for e in http.get("/api/v1/audit", params={"object_type": "department",
                                                                      "object_code": "tyj"}).json()["data"]]
    assert actions == ["disable", "create"]
    assert http.patch("/api/v1/departments/tyj", json={"disabled": False}).json()["disabled_at"] is None
