"""Dispatch (督办) over real HTTP and PostgreSQL: assign, list, verify on site, rectify, close; rights; photo
limits; escalation of overdue tasks; the monthly counts."""

from __future__ import annotations

import datetime as dt
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from alerts import dispatch
from alerts import fire as fire_alerts
from alerts.photos import MAX_PHOTO_BYTES
from api.routes.tasks import CITY_TIME
from registry import accounts
from registry.changes import Actor
from tests.conftest import TLS, account_token
from tests.factories import river_station

SUIHUA = {"lat": "46.6312", "lon": "126.9901"}


def _png() -> bytes:
    """A real 1×1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64) + b"\xff\xd9"


@pytest.fixture(scope="module")
def people(api_url: str, db_url: str) -> Iterator[dict[str, httpx.Client]]:
    """sthjj's operator (the assigner), a second operator, a viewer, a grid member (the assignee, a person), and
    an operator of 住建局 (zjj)."""
    roles = {"boss": (["operator"], "sthjj"), "peer": (["operator"], "sthjj"), "viewer": (["viewer"], "sthjj"),
             "grid": (["viewer"], "sthjj", "person"), "zjj": (["operator"], "zjj")}
    clients = {name: httpx.Client(verify=TLS, base_url=api_url, timeout=30, headers={
        "Authorization": f"Bearer {account_token(db_url, f'dispatch-{name}', *found)}"})
        for name, found in roles.items()}
    yield clients
    for client in clients.values():
        client.close()


def _alert(http: httpx.Client, db_url: str, severity: str = "warning") -> int:
    code = http.post("/api/v1/terminals", json=river_station(department="sthjj").model_dump(mode="json")).json()["code"]
    with psycopg.connect(db_url) as c:
        return c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'gb3838:w01009', 'river', %s, 'environment', department_code, division_code, now(),
                   'dissolved oxygen below class III' from terminal where code = %s returning id
            """, (severity, code)).fetchone()[0]


def _assign(client: httpx.Client, alert: int, hours: float = 4, to: str = "dispatch-grid") -> httpx.Response:
    due = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
    return client.post("/api/v1/tasks", json={"subject_type": "alert", "subject_id": alert, "assignee": to,
                                              "due_at": due.isoformat(), "note": "去现场核实排污口"})


def test_assign_list_verify_rectify_close_with_every_step_audited(http, db_url, people):
    alert = _alert(http, db_url)
    created = _assign(people["boss"], alert)
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["status"], task["assignee"], task["level"], task["overdue"]) == ("assigned", "dispatch-grid",
                                                                                   "township", False)
    mine = people["grid"].get("/api/v1/tasks", params={"mine": "true", "status": "assigned"}).json()
    assert [t["id"] for t in mine["data"]] == [task["id"]] and mine["next"] is None
    assert people["boss"].get("/api/v1/tasks", params={"mine": "true"}).json()["data"] == []

    png = _png()
    verified = people["grid"].post(f"/api/v1/tasks/{task['id']}/verify", data={"note": "河面有油污", **SUIHUA},
                                   files=[("photo", ("a.png", png, "image/png")), ("photo", ("b.jpg", JPEG, "x/y"))])
    assert verified.status_code == 200, verified.text
    step = verified.json()["steps"][-1]
    assert (step["action"], step["lat"], step["lon"], len(step["photos"])) == ("verify", 46.6312, 126.9901, 2)
    served = people["boss"].get(f"/api/v1/tasks/{task['id']}/photos/{step['photos'][0]}")
    assert served.content == png and served.headers["content-type"] == "image/png"
    assert people["boss"].get(f"/api/v1/tasks/{task['id']}/photos/{step['photos'][1]}").headers[
        "content-type"] == "image/jpeg"  # sniffed, not the client's word

    rectified = people["grid"].post(f"/api/v1/tasks/{task['id']}/rectify", data={"note": "已封堵"},
                                    files=[("photo", ("c.jpg", JPEG, "image/jpeg"))])
    assert rectified.json()["status"] == "rectified"
    closed = people["boss"].post(f"/api/v1/tasks/{task['id']}/close", json={"note": "复查合格"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed" and closed.json()["closed_at"]
    assert [s["action"] for s in closed.json()["steps"]] == ["assign", "verify", "rectify", "close"]
    with psycopg.connect(db_url) as c:
        audited = c.execute("select actor, action from change where object_type = 'task' and object_code = %s "
                            "order by id", (str(task["id"]),)).fetchall()
    assert audited == [("dispatch-boss", "assign"), ("dispatch-grid", "verify"), ("dispatch-grid", "rectify"),
                       ("dispatch-boss", "close")]


def test_rights_viewer_cannot_assign_others_see_nothing_and_steps_belong_to_their_people(http, db_url, people):
    alert = _alert(http, db_url)
    assert _assign(people["viewer"], alert).status_code == 403
    assert _assign(people["zjj"], alert).status_code == 404  # the alert is outside 住建局's view
    task = _assign(people["boss"], alert).json()["id"]
    assert people["zjj"].get(f"/api/v1/tasks/{task}").status_code == 404
    assert people["zjj"].post(f"/api/v1/tasks/{task}/verify", data=SUIHUA).status_code == 404
    assert people["zjj"].get("/api/v1/tasks").json()["data"] == []
    assert people["viewer"].get(f"/api/v1/tasks/{task}").status_code == 200  # same department
    assert people["peer"].post(f"/api/v1/tasks/{task}/verify", data=SUIHUA).status_code == 403
    assert people["grid"].post(f"/api/v1/tasks/{task}/close").status_code == 403  # not the assigner
    assert people["boss"].post(f"/api/v1/tasks/{task}/close").status_code == 409  # nothing verified yet
    assert people["grid"].post(f"/api/v1/tasks/{task}/verify", data=SUIHUA).status_code == 200
    assert people["grid"].post(f"/api/v1/tasks/{task}/close").status_code == 403
    assert people["peer"].post(f"/api/v1/tasks/{task}/close").status_code == 403
    rejected = people["boss"].post(f"/api/v1/tasks/{task}/reject", json={"note": "照片不清楚"})
    assert rejected.json()["status"] == "assigned"
    assert people["grid"].post(f"/api/v1/tasks/{task}/verify", data=SUIHUA).json()["status"] == "verified"


def test_photo_limits_and_gps_are_enforced(http, db_url, people):
    task = _assign(people["boss"], _alert(http, db_url)).json()["id"]
    grid = people["grid"]
    url = f"/api/v1/tasks/{task}/verify"
    big = b"\xff\xd8\xff" + bytes(MAX_PHOTO_BYTES)
    assert grid.post(url, data=SUIHUA, files=[("photo", ("big.jpg", big, "image/jpeg"))]).status_code == 413
    assert grid.post(url, data=SUIHUA, files=[("photo", ("x.jpg", b"GIF89a....", "image/jpeg"))]).status_code == 422
    eleven = [("photo", (f"{n}.jpg", JPEG, "image/jpeg")) for n in range(11)]
    assert grid.post(url, data=SUIHUA, files=eleven).status_code == 413
    whole = [("photo", (f"{n}.jpg", big, "image/jpeg")) for n in range(11)]  # over the body limit: not read
    assert grid.post(url, data=SUIHUA, files=whole).status_code == 413
    assert grid.post(url, data={"lat": "91", "lon": "126.99"}).status_code == 422
    assert grid.post(url, data={"lat": "46.6", "lon": "east"}).status_code == 422
    assert grid.post(url, data={"note": "no position"}).status_code == 422
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from task_step where task_id = %s", (task,)).fetchone() == (1,)
    assert grid.get(f"/api/v1/tasks/{task}").json()["status"] == "assigned"


def test_overdue_task_escalates_one_level_per_rule_period(http, db_url, people):
    task = _assign(people["boss"], _alert(http, db_url, "warning")).json()["id"]
    with psycopg.connect(db_url) as c:
        assert dispatch.sweep(c) == []  # not due yet
        c.execute("update task set level_since = now() - interval '30 hours', due_at = now() - interval '23 hours' "
                  "where id = %s", (task,))
        assert dispatch.sweep(c) == []  # warning: 24 h at the township level
        c.execute("update task set due_at = now() - interval '25 hours' where id = %s", (task,))
        assert dispatch.sweep(c) == [task]
        assert dispatch.sweep(c) == []  # 48 h at the county level from now
        c.execute("update task set due_at = due_at - interval '49 hours', level_since = level_since - interval "
                  "'49 hours' where id = %s", (task,))
        assert dispatch.sweep(c) == [task]
        assert dispatch.sweep(c) == []  # the city bureau is the top
        escalations = c.execute("select after->>'to' from change where object_type = 'task' and action = "
                                "'escalate' and object_code = %s order by id", (str(task),)).fetchall()
    assert escalations == [("county",), ("city",)]
    shown = people["grid"].get("/api/v1/tasks", params={"mine": "true", "overdue": "true"}).json()["data"]
    assert [(t["id"], t["level"], t["overdue"]) for t in shown] == [(task, "city", True)]
    assert people["grid"].get("/api/v1/tasks", params={"overdue": "false"}).json()["data"] == []


def test_escalation_rules_are_data(http, db_url, people):
    task = _assign(people["boss"], _alert(http, db_url, "warning")).json()["id"]
    with psycopg.connect(db_url) as c:
        c.execute("update task set level_since = now() - interval '2 hours', due_at = now() - interval '1 hour' "
                  "where id = %s", (task,))
        c.execute("insert into escalation_rule (family, severity, level, hours) values ('river', 'warning', "
                  "'township', 0)")
        try:
            assert dispatch.sweep(c) == [task]
        finally:
            c.execute("delete from escalation_rule where family = 'river'")


def test_monthly_summary_counts_open_overdue_closed_per_department_and_county(http, db_url, people):
    boss, grid = people["boss"], people["grid"]
    done = _assign(boss, _alert(http, db_url)).json()["id"]
    late = _assign(boss, _alert(http, db_url)).json()["id"]
    _assign(boss, _alert(http, db_url))
    grid.post(f"/api/v1/tasks/{done}/verify", data=SUIHUA)
    boss.post(f"/api/v1/tasks/{done}/close")
    with psycopg.connect(db_url) as c:
        c.execute("update task set due_at = now() - interval '1 hour' where id = %s", (late,))
    month = dt.datetime.now(CITY_TIME).strftime("%Y-%m")
    rows = boss.get("/api/v1/tasks/summary", params={"month": month}).json()["data"]
    assert [(r["department"], r["county"], r["open"], r["overdue"], r["closed"]) for r in rows] == [
        ("sthjj", "231202", 2, 1, 1)]
    assert people["zjj"].get("/api/v1/tasks/summary", params={"month": month}).json() == {
        "data": [], "next": None, "count": None}
    assert boss.get("/api/v1/tasks/summary", params={"month": "2020-01"}).json()["data"] == []
    assert boss.get("/api/v1/tasks/summary", params={"month": "2020-13"}).status_code == 422


def test_dispatch_sweep_service_escalates_and_stops_cleanly(http, db_url, people):
    task = _assign(people["boss"], _alert(http, db_url, "critical")).json()["id"]
    with psycopg.connect(db_url) as c:
        c.execute("update task set level_since = now() - interval '3 hours', due_at = now() - interval '3 hours' "
                  "where id = %s", (task,))
    sweeper = subprocess.Popen([sys.executable, "-m", "ganzhi", "dispatch-sweep", "--every", "0.2"],
                               env=os.environ | {"DATABASE_URL": db_url}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90  # a Python process starts slowly on a busy 2-core box
        while people["boss"].get(f"/api/v1/tasks/{task}").json()["level"] == "township":
            assert time.monotonic() < deadline, "the sweep service did not escalate the overdue task"
            time.sleep(0.2)
    finally:
        sweeper.send_signal(signal.SIGTERM)
        _, err = sweeper.communicate(timeout=30)
    assert sweeper.returncode == 0, err
    steps = people["boss"].get(f"/api/v1/tasks/{task}").json()["steps"]
    assert [(s["actor"], s["action"]) for s in steps][-1] == ("dispatch-sweep", "escalate")


def test_incidents_and_fire_events_are_assigned_through_their_alerts(http, db_url, people):
    alert = _alert(http, db_url, "critical")
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(db_url) as c:
        incident = c.execute("insert into incident (key, title, bureau, division_code) values "
                             "('river:呼兰河', '呼兰河水质', 'environment', '231202') returning id").fetchone()[0]
        c.execute("update alert set incident_id = %s where id = %s", (incident, alert))
        event = c.execute("insert into fire_event (first_seen, last_seen, lat, lon, accuracy_m, division_code, "
                          "confidence) values (%s, %s, 46.64, 126.98, 300, '231202', 0.9) returning id",
                          (now, now)).fetchone()[0]
        fire_alerts.fire_event(c, event)
    due = (now + dt.timedelta(hours=2)).isoformat()
    for subject_type, subject_id, family in (("incident", incident, "river"), ("fire_event", event, "fire")):
        body = {"subject_type": subject_type, "subject_id": subject_id, "assignee": "dispatch-grid", "due_at": due}
        made = people["boss"].post("/api/v1/tasks", json=body)
        assert made.status_code == 201, made.text
        assert (made.json()["subject_type"], made.json()["family"]) == (subject_type, family)
        assert people["zjj"].post("/api/v1/tasks", json=body).status_code == 404
    missing = {"subject_type": "incident", "subject_id": 999999, "assignee": "dispatch-grid", "due_at": due}
    assert people["boss"].post("/api/v1/tasks", json=missing).status_code == 404
    naive = {"subject_type": "alert", "subject_id": alert, "assignee": "dispatch-grid", "due_at": "2031-01-01T08:00"}
    assert people["boss"].post("/api/v1/tasks", json=naive).status_code == 422
    nobody = {"subject_type": "alert", "subject_id": alert, "assignee": "nobody-here", "due_at": due}
    assert people["boss"].post("/api/v1/tasks", json=nobody).status_code == 404


def test_the_assignee_picker_lists_the_callers_people_only(http, db_url, people):
    """GET /tasks/assignees: the enabled people of the operator's department; the platform admin's list spans the
    departments. Not another department's, a disabled account, the leading group, or a system's account."""
    made = {}
    with psycopg.connect(db_url) as conn:
        for name, roles, department in (("field", ["viewer"], "sthjj"), ("chief", ["operator"], "sthjj"),
                                        ("gone", ["viewer"], "sthjj"), ("housing", ["viewer"], "zjj"),
                                        ("leader", ["leading_group"], None)):
            login = f"picker-{name}-{os.getpid()}"
            accounts.add_account(conn, login=login, name=f"人员{name}", department=department, roles=roles,
                                 kind="person", password=accounts.new_password(), actor=Actor("tests"))
            made[name] = login
        accounts.set_disabled(conn, made["gone"], True, Actor("tests"))
    listed = people["boss"].get("/api/v1/tasks/assignees")
    assert listed.status_code == 200, listed.text
    logins = {row["login"] for row in listed.json()["data"]}
    assert {made["field"], made["chief"]} <= logins
    assert not logins & {made["gone"], made["housing"], made["leader"], "dispatch-viewer"}  # a service account
    assert {row["department"] for row in listed.json()["data"]} == {"sthjj"}
    everyone = {row["login"] for row in http.get("/api/v1/tasks/assignees").json()["data"]}
    assert {made["field"], made["chief"], made["housing"]} <= everyone and made["leader"] not in everyone
    assert http.patch("/api/v1/departments/zjj", json={"disabled": True}).status_code == 200
    try:  # a disabled department's people are not sent
        everyone = {row["login"] for row in http.get("/api/v1/tasks/assignees").json()["data"]}
        assert made["field"] in everyone and made["housing"] not in everyone
    finally:
        assert http.patch("/api/v1/departments/zjj", json={"disabled": False}).status_code == 200
    assert people["viewer"].get("/api/v1/tasks/assignees").status_code == 403


def test_a_task_goes_only_to_a_person_the_assigner_may_send(http, db_url, people):
    """POST /tasks sends one of the assigner's people (those of the picker): a system's account is refused with 403;
    the leading group (no department) and another department's person answer 404 exactly as a login that does not
    exist (no existence leak); the platform admin sends any department's."""
    with psycopg.connect(db_url) as conn:
        for login, roles, department in (("send-leader", ["leading_group"], None), ("send-housing", ["viewer"], "zjj")):
            accounts.add_account(conn, login=f"{login}-{os.getpid()}", name=login, department=department, roles=roles,
                                 kind="person", password=accounts.new_password(), actor=Actor("tests"))
    alert = _alert(http, db_url)
    for refused, status in (("dispatch-viewer", 403), (f"send-leader-{os.getpid()}", 404),
                            (f"send-housing-{os.getpid()}", 404), (f"nobody-{os.getpid()}", 404)):
        answer = _assign(people["boss"], alert, to=refused)
        assert (answer.status_code, answer.json()["field"]) == (status, "assignee"), refused
        assert status == 403 or answer.json()["detail"] == f"account {refused!r} does not exist"
    assert _assign(people["boss"], alert).status_code == 201  # dispatch-grid: a person of sthjj
    assert _assign(http, alert, to=f"send-housing-{os.getpid()}").status_code == 201  # the city-wide view
    assert _assign(http, alert, to="dispatch-viewer").status_code == 403
