"""The rights matrix, generated from the OpenAPI document: every route × every kind of caller, against the
running API. A route missing from RULES fails the test, so a new route cannot ship without its rights."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.cookiejar
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from alerts import fire as fire_alerts
from alerts import webhooks
from api.auth import CSRF_HEADER, SESSION_COOKIE
from registry import accounts, service
from registry.changes import Actor
from simulators.hotspots import firms_csv
from tests.conftest import TLS, _empty_ledger, account_token
from tests.factories import BEILIN, pole_in, terminal_in

CALLERS = ("anonymous", "other_viewer", "other_operator", "other_steward", "viewer", "operator", "steward",
           "steward_session", "platform", "leading")
"""other_*: a viewer, operator and steward admin of 住建局 (zjj); viewer, operator and steward belong to
生态环境局 (sthjj), which owns the objects; steward_session is sthjj's steward admin as a person in a browser (a
session cookie and its CSRF header), expected to get exactly what steward gets with its token."""
OTHERS = {"other_viewer", "other_operator", "other_steward"}
AS = {"steward_session": "steward"}
"""Callers expected to be answered as another: the rules name the latter only."""

_ALL = set(CALLERS) - {"anonymous", "steward_session"}
# Who gets the route's success status; everyone else gets 401 (anonymous), 404 (a read of an object outside
# their view) or 403 (a right not held).
READ = ("read", _ALL - OTHERS)  # an object of sthjj: outside 住建局's view, so 404
LIST = ("list", _ALL)  # filtered lists and reference data: 200 for every authenticated caller
OPERATE = ("write", {"operator", "steward", "platform"})
STEWARD = ("write", {"steward", "platform"})
PLATFORM = ("write", {"platform"})
AUDIT = ("write", {"steward", "other_steward", "platform", "leading"})  # a steward admin: its department's part
SELF = ("self", {"viewer", "platform"})  # the viewer's own tokens: anyone else's 403 (whether the login exists or not)
OWN = ("own", {"viewer", "platform"})  # the viewer's token by id: another account's is 404, as a missing one
OWN_STEWARD = ("write", {"steward", "other_steward", "platform"})  # a steward admin's department's own list
OWN_OPERATOR = ("write", OPERATE[1] | {"other_operator", "other_steward"})  # the people its department sends
PUBLIC = ("public", set(CALLERS))
ASSIGNEE = ("act", {"viewer"})  # a dispatch task's field steps: its assignee (the viewer) only; 404 outside the view
ASSIGNER = ("act", {"operator"})  # closing a task: its assigner (the operator) only

RULES: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): LIST,
    ("GET", "/api/v1/auth/me"): LIST,
    ("GET", "/api/v1/divisions"): LIST,
    ("POST", "/api/v1/divisions"): PLATFORM,
    ("GET", "/api/v1/divisions/{code}"): LIST,
    ("GET", "/api/v1/departments"): LIST,
    ("POST", "/api/v1/departments"): PLATFORM,
    ("PATCH", "/api/v1/departments/{code}"): PLATFORM,
    ("GET", "/api/v1/kinds"): LIST,
    ("GET", "/api/v1/metrics"): LIST,
    ("GET", "/api/v1/terminals"): LIST,
    ("POST", "/api/v1/terminals"): STEWARD,
    ("GET", "/api/v1/terminals/{code}"): READ,
    ("PATCH", "/api/v1/terminals/{code}"): STEWARD,
    ("DELETE", "/api/v1/terminals/{code}"): STEWARD,
    ("GET", "/api/v1/poles"): LIST,
    ("POST", "/api/v1/poles"): STEWARD,
    ("GET", "/api/v1/poles/{code}"): READ,
    ("PATCH", "/api/v1/poles/{code}"): STEWARD,
    ("DELETE", "/api/v1/poles/{code}"): STEWARD,
    ("GET", "/api/v1/poles/{code}/terminals"): READ,
    ("POST", "/api/v1/codes/issue"): OWN_STEWARD,  # city-wide numbering: no department's object
    ("GET", "/api/v1/codes/{code}"): LIST,
    ("GET", "/api/v1/codes/{code}/qr.png"): LIST,
    ("GET", "/api/v1/codes/{code}/qr.svg"): LIST,
    ("POST", "/api/v1/credentials/{code}"): STEWARD,
    ("GET", "/api/v1/grants"): LIST,
    ("POST", "/api/v1/grants"): STEWARD,
    ("DELETE", "/api/v1/grants/{grant_id}"): STEWARD,
    ("GET", "/api/v1/changes"): AUDIT,
    ("POST", "/api/v1/ledger/import"): STEWARD,
    ("GET", "/api/v1/ledger/export"): LIST,
    ("GET", "/api/v1/ledger/template"): LIST,
    ("GET", "/api/v1/terminals/{code}/readings"): READ,
    ("GET", "/api/v1/terminals/{code}/latest"): READ,
    ("GET", "/api/v1/poles/{code}/latest"): READ,
    ("GET", "/api/v1/terminals/{code}/state"): READ,
    ("GET", "/api/v1/terminal-states"): LIST,
    ("GET", "/api/v1/terminal-states/summary"): LIST,
    ("GET", "/api/v1/dead-letters"): LIST,
    ("GET", "/api/v1/alerts"): LIST,
    ("GET", "/api/v1/alerts/{alert_id}"): READ,
    ("POST", "/api/v1/alerts/{alert_id}/{action}"): OPERATE,
    ("GET", "/api/v1/incidents"): LIST,
    ("GET", "/api/v1/fire-events"): LIST,
    ("GET", "/api/v1/fire-events/{event_id}"): READ,
    ("POST", "/api/v1/fire-events/{event_id}/verdict"): OPERATE,
    ("GET", "/api/v1/fire-detections/{detection_id}/evidence.jpg"): READ,
    ("POST", "/api/v1/firms"): PLATFORM,
    ("GET", "/api/v1/heat-sources"): LIST,
    ("POST", "/api/v1/heat-sources"): PLATFORM,
    ("DELETE", "/api/v1/heat-sources/{source_id}"): PLATFORM,
    ("GET", "/api/v1/users"): PLATFORM,
    ("POST", "/api/v1/users"): PLATFORM,
    ("GET", "/api/v1/users/{login}"): PLATFORM,
    ("POST", "/api/v1/users/{login}/disable"): PLATFORM,
    ("POST", "/api/v1/users/{login}/enable"): PLATFORM,
    ("GET", "/api/v1/users/{login}/tokens"): SELF,
    ("POST", "/api/v1/users/{login}/tokens"): SELF,
    ("DELETE", "/api/v1/tokens/{token_id}"): OWN,
    ("GET", "/api/v1/audit"): AUDIT,
    ("GET", "/api/v1/stream"): LIST,
    ("POST", "/api/v1/webhooks"): STEWARD,
    ("GET", "/api/v1/webhooks"): OWN_STEWARD,
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): STEWARD,
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): STEWARD,
    ("POST", "/api/v1/webhooks/{webhook_id}/replay"): STEWARD,
    ("POST", "/api/v1/webhooks/{webhook_id}/resume"): STEWARD,
    ("POST", "/api/v1/tasks"): OPERATE,
    ("GET", "/api/v1/tasks"): LIST,
    ("GET", "/api/v1/tasks/summary"): LIST,
    ("GET", "/api/v1/tasks/assignees"): OWN_OPERATOR,
    ("GET", "/api/v1/tasks/{task_id}"): READ,
    ("POST", "/api/v1/tasks/{task_id}/verify"): ASSIGNEE,
    ("POST", "/api/v1/tasks/{task_id}/rectify"): ASSIGNEE,
    ("POST", "/api/v1/tasks/{task_id}/{decision}"): ASSIGNER,
    ("GET", "/api/v1/tasks/{task_id}/photos/{photo_id}"): READ,
    ("GET", "/api/v1/dashboard/map"): LIST,
    ("GET", "/api/v1/dashboard/counts"): LIST,
    ("GET", "/api/v1/dashboard/alerts/{alert_id}"): READ,
    ("GET", "/api/v1/dashboard/config"): LIST,
}

_ROLES = {"other_viewer": (["viewer"], "zjj"), "other_operator": (["operator"], "zjj"),
          "other_steward": (["steward_admin"], "zjj"), "viewer": (["viewer"], "sthjj"),
          "operator": (["operator"], "sthjj"),
          "steward": (["steward_admin"], "sthjj"), "platform": (["platform_admin"], None),
          "leading": (["leading_group"], None)}
_serial = itertools.count(1)
ACTIONS = ("acknowledge", "resolve", "close", "comment")
"""Every {action} of POST /alerts/{alert_id}/{action}, each on a fresh open alert."""
BROWSER = "matrix-browser"
"""steward_session's person: a steward admin of sthjj with a password."""
ASSIGNEES = {"matrix-field": (["viewer"], "sthjj"), "matrix-housing": (["viewer"], "zjj"),
             "matrix-leader": (["leading_group"], None)}
"""People a task may be sent to (or not); the matrix callers themselves are service accounts."""


@dataclass
class World:
    """The objects each route acts on, all of 生态环境局 (sthjj); fresh ones for routes that use them up."""

    client: httpx.Client
    """One client for every call, which keeps no cookie (each caller's credentials are in its headers): a client
    made per call loaded the CA bundle each time, most of the matrix's two minutes."""
    tokens: dict[str, str]
    viewer_password: str
    browser_password: str
    db: psycopg.Connection
    session: tuple[str, str] | None = None
    """steward_session's cookie and CSRF token, logged in again after a call logged it out."""

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        if caller != "steward_session":
            return {"Authorization": f"Bearer {self.tokens[caller]}"}
        if self.session is None:
            login = self.client.post("/api/v1/auth/login", json={"login": BROWSER, "password": self.browser_password})
            self.session = login.cookies[SESSION_COOKIE], login.json()["csrf_token"]
        cookie, csrf = self.session
        return {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: csrf}

    @contextlib.contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        """The matrix's one connection, in a transaction committed when the block ends (a savepoint inside
        another's). A connection per object made took the matrix from 19 s to 33 s (load 17, 2026-12-01)."""
        with self.db.transaction():
            yield self.db

    def terminal(self) -> str:
        n = next(_serial)
        with self.conn() as c:
            return service.create_terminal(c, terminal_in(f"矩阵空气站{n}", department="sthjj"), Actor("setup"))

    def pole(self) -> str:
        with self.conn() as c:
            return service.create_pole(c, pole_in(f"矩阵杆{next(_serial)}", department="sthjj"), Actor("setup"))

    def alert(self) -> int:
        with self.conn() as c:
            return c.execute(
                """
                insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                                   observed_start, detail)
                select id, 'gb3838:w01009', 'river', 'warning', 'environment', 'sthjj', division_code, now(), 'test'
                  from terminal where code = %s returning id
                """, (self.terminal(),)).fetchone()[0]

    def fire_event(self) -> int:
        """A straw fire with a detection and its evidence picture; its alert goes to the environment bureau."""
        now = dt.datetime.now(dt.UTC)
        with self.conn() as c:
            event = c.execute(
                "insert into fire_event (first_seen, last_seen, lat, lon, accuracy_m, division_code, confidence) "
                "values (%s, %s, 46.64, 126.98, 300, '231202', 0.9) returning id", (now, now)).fetchone()[0]
            detection = c.execute(
                "insert into fire_detection (event_id, source, cue, track, first_seen, last_seen, confidence, "
                "position) values (%s, 'camera', 'flame', %s, %s, %s, 0.9, 'unknown') returning id",
                (event, f"t{next(_serial)}", now, now)).fetchone()[0]
            c.execute("insert into fire_evidence (detection_id, captured_at, jpeg) values (%s, %s, %s)",
                      (detection, now, b"\xff\xd8\xff\xe0 jpeg"))
            fire_alerts.fire_event(c, event)
            return event

    def detection(self) -> int:
        with self.conn() as c:
            return c.execute("select id from fire_detection where event_id = %s", (self.fire_event(),)).fetchone()[0]

    def grant(self) -> int:
        with self.conn() as c:
            c.execute("delete from sharing_grant where steward_code = 'sthjj' and grantee_code = 'cgj'")
            return c.execute("insert into sharing_grant (steward_code, grantee_code, granted_by) "
                             "values ('sthjj', 'cgj', 'setup') returning id").fetchone()[0]

    def department(self) -> str:
        code = f"matrixd{next(_serial)}"
        with self.conn() as c:
            c.execute("insert into department (code, name, name_en, bureau) "
                      "values (%(code)s, %(code)s, %(code)s, 'other')", {"code": code})
        return code

    def heat_source(self) -> int:
        with self.conn() as c:
            return c.execute("insert into heat_source (name, kind, lat, lon, radius_m, division_code) values "
                             "(%s, 'boiler', 46.64, 126.98, 500, '231202') returning id",
                             (f"矩阵锅炉房{next(_serial)}",)).fetchone()[0]

    def account(self) -> str:
        login = f"matrix-{next(_serial)}"
        with self.conn() as c:
            accounts.add_account(c, login=login, name=login, department="sthjj", roles=["viewer"], kind="service",
                                 password=None, actor=Actor("setup"))
        return login

    def webhook(self) -> int:
        with self.conn() as c:
            return webhooks.create(c, department="sthjj", channel="webhook", target="https://8.8.8.8/hook",
                                   families=None, severities=None, division=None, created_by="setup")["id"]
    def task(self, status: str) -> int:
        """A dispatch task on a fresh alert, from the operator to the viewer, in ``status``, with one photo."""
        with self.conn() as c:
            task = c.execute(
                "insert into task (subject_type, subject_id, alert_id, family, severity, division_code, "
                "department_code, assigner_id, assignee_id, status, due_at) "
                "select 'alert', a.id, a.id, a.family, a.severity, a.division_code, 'sthjj', "
                "(select id from account where login = 'matrix-operator'), "
                "(select id from account where login = 'matrix-viewer'), %s, now() + interval '1 day' "
                "from alert a where a.id = %s returning id", (status, self.alert())).fetchone()[0]
            step = c.execute("insert into task_step (task_id, actor, action) values (%s, 'matrix-viewer', 'verify') "
                             "returning id", (task,)).fetchone()[0]
            self.photo = c.execute("insert into task_photo (step_id, content_type, image) values "
                                   "(%s, 'image/png', %s) returning id", (step, b"\x89PNG\r\n\x1a\n")).fetchone()[0]
        return task

    def viewer_token(self) -> int:
        with self.conn() as c:
            return accounts.issue_token(c, "matrix-viewer", "spare", None, Actor("setup"))[0]["id"]


def _request(world: World, method: str, path: str, fixed: dict[str, str]) -> dict:
    """Path parameters, query and body for one call, with fresh objects where the call uses them up; ``fixed``:
    path parameters given."""
    n = next(_serial)
    makers = {
        "code": lambda: world.pole() if path.startswith("/api/v1/poles/") else (
            "231202" if path.startswith("/api/v1/divisions/") else
            world.department() if path.startswith("/api/v1/departments/") else world.terminal()),
        "alert_id": world.alert, "event_id": world.fire_event,
        "detection_id": world.detection, "grant_id": world.grant, "source_id": world.heat_source,
        "login": lambda: "matrix-viewer" if "tokens" in path else world.account(), "token_id": world.viewer_token,
        "webhook_id": world.webhook,
        "task_id": lambda: world.task("assigned" if path.endswith("/verify") else "verified"),
        "decision": lambda: "close", "photo_id": lambda: world.photo,
    }
    params = {name: make() for name, make in makers.items() if f"{{{name}}}" in path} | fixed
    bodies = {
        ("POST", "/api/v1/auth/login"): {"json": {"login": "matrix-viewer", "password": world.viewer_password}},
        ("POST", "/api/v1/divisions"): {"json": {"code": f"231202{n % 1000:03d}", "name": f"矩阵镇{n}",
                                                 "level": "township", "parent": "231202"}},
        ("POST", "/api/v1/terminals"): {"json": {"name": f"矩阵站{n}", "kind": "air_sensor", "lon": BEILIN[0],
                                                 "lat": BEILIN[1], "department": "sthjj"}},
        ("PATCH", "/api/v1/terminals/{code}"): {"json": {"vendor": "先河环保"}},
        ("POST", "/api/v1/departments"): {"json": {"code": f"matrix{n}", "name": f"矩阵局{n}",
                                                   "name_en": f"Matrix {n}"}},
        ("PATCH", "/api/v1/departments/{code}"): {"json": {"name_en": f"Matrix bureau {n}"}},
        ("POST", "/api/v1/poles"): {"json": {"name": f"矩阵杆{n}", "department": "sthjj", "lon": BEILIN[0],
                                             "lat": BEILIN[1]}},
        ("PATCH", "/api/v1/poles/{code}"): {"json": {"address": "中兴大街"}},
        ("POST", "/api/v1/codes/issue"): {"json": {"division": "231202", "kind": "air_sensor"}},
        ("POST", "/api/v1/grants"): {"json": {"steward": "sthjj", "grantee": "zrzyj", "kind": "air_sensor"}},
        ("POST", "/api/v1/ledger/import"): {
            "files": {"file": ("s.csv", f"设备名称,设备类型,经度,纬度,所属部门\r\n站{n},空气质量监测微站,126.98,46.64,"
                                        "sthjj\r\n".encode(), "text/csv")}, "params": {"dry_run": "true"}},
        ("POST", "/api/v1/alerts/{alert_id}/{action}"): {"json": {"comment": "派人查看"}},
        ("POST", "/api/v1/fire-events/{event_id}/verdict"): {"json": {"verdict": "straw"}},
        ("POST", "/api/v1/firms"): {"files": {"file": ("f.csv", firms_csv([]).encode(), "text/csv")}},
        ("POST", "/api/v1/heat-sources"): {"json": {"name": f"矩阵热源{n}", "kind": "boiler", "lat": 46.64,
                                                    "lon": 126.98}},
        ("POST", "/api/v1/users"): {"json": {"login": f"new-{n}", "name": "新用户", "department": "sthjj",
                                             "roles": ["viewer"]}},
        ("POST", "/api/v1/users/{login}/tokens"): {"json": {"name": "矩阵"}},
        ("POST", "/api/v1/webhooks"): {"json": {"url": "https://8.8.8.8/hook", "department": "sthjj"}},
        ("POST", "/api/v1/webhooks/{webhook_id}/replay"): {"json": {"from": "2026-01-01T00:00:00Z",
                                                                   "to": "2026-01-02T00:00:00Z"}},
        ("GET", "/api/v1/tasks/summary"): {"params": {"month": "2031-01"}},
        ("POST", "/api/v1/tasks/{task_id}/verify"): {"data": {"lat": "46.64", "lon": "126.98"}},
    }
    found = bodies.get((method, path), {})
    if (method, path) == ("POST", "/api/v1/tasks"):
        found = {"json": {"subject_type": "alert", "subject_id": world.alert(), "assignee": "matrix-field",
                          "due_at": "2031-01-01T08:00:00+08:00"}}
    if (method, path) == ("POST", "/api/v1/grants"):
        with world.conn() as c:
            c.execute("delete from sharing_grant where steward_code = 'sthjj' and grantee_code = 'zrzyj'")
    if (method, path) == ("POST", "/api/v1/users/{login}/enable"):
        with world.conn() as c:
            c.execute("update account set disabled_at = now() where login = %s", (params["login"],))
    return {"url": path.format(**params), **found}


@pytest.fixture(scope="module")
def world(api_url: str, db_url: str) -> Iterator[World]:
    tokens = {name: account_token(db_url, f"matrix-{name.replace('_', '-')}", *_ROLES[name]) for name in _ROLES}
    for login, (roles, department) in ASSIGNEES.items():
        account_token(db_url, login, roles, department, kind="person")
    password, browser = accounts.new_password(), accounts.new_password()
    with psycopg.connect(db_url) as c:
        accounts.set_password(c, "matrix-viewer", password, Actor("setup"))
        accounts.add_account(c, login=BROWSER, name="李伟", department="sthjj", roles=["steward_admin"],
                             kind="person", password=browser, actor=Actor("setup"))
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    with (httpx.Client(verify=TLS, base_url=api_url, timeout=30, cookies=no_cookies) as client,
          psycopg.connect(db_url, autocommit=True) as db):
        yield World(client, tokens, password, browser, db)
    _empty_ledger(db_url)


def _routes(api_url: str) -> list[tuple[str, str, int]]:
    spec = httpx.get(f"{api_url}/openapi.json", timeout=60).json()
    routes = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            success = min(int(code) for code in operation["responses"] if code.startswith("2"))
            routes.append((method.upper(), path, success))
    return routes


def _cases(api_url: str) -> Iterator[tuple[str, str, int, dict[str, str]]]:
    """Every route, the alert action route once per action."""
    for method, path, success in _routes(api_url):
        for fixed in ([{"action": a} for a in ACTIONS] if "{action}" in path else [{}]):
            yield method, path, success, fixed


def _call(world: World, caller: str, method: str, path: str, fixed: dict[str, str]) -> int:
    request = _request(world, method, path, fixed)
    with world.client.stream(method, request.pop("url"), headers=world.headers(caller),
                             **request) as response:  # a stream's status, without reading it to its end
        status = response.status_code
    if caller == "steward_session" and path == "/api/v1/auth/logout" and status < 300:
        world.session = None
    return status


def test_every_route_has_its_rights(api_url: str):
    routes = {(m, p) for m, p, _ in _routes(api_url)}
    assert routes == set(RULES), f"routes without rights: {routes - set(RULES)}; stale rules: {set(RULES) - routes}"


def test_rights_matrix(api_url: str, world: World):
    failures = []
    cases = list(_cases(api_url))
    for method, path, success, fixed in cases:
        kind, allowed = RULES[(method, path)]
        for caller in CALLERS:
            status = _call(world, caller, method, path, fixed)
            expected = _expected(kind, allowed, AS.get(caller, caller), success, (method, path))
            if status not in expected:
                failures.append(f"{method} {path.format_map({'action': '{action}', **fixed}) if fixed else path} "
                                f"as {caller}: {status}, expected {' or '.join(map(str, sorted(expected)))}")
    assert not failures, "\n".join(failures)
    assert len(cases) == len(RULES) + len(ACTIONS) - 1


ROW_REFUSALS = {("POST", "/api/v1/ledger/import")}
"""Routes that refuse another department's rows one by one: 422 naming each row, nothing written (docs/api.md)."""
BODY_OBJECTS = {("POST", "/api/v1/tasks")}
"""Routes naming an existing object in the body (the alert a task is about): 404 outside the caller's view."""


def _holds_the_role(caller: str, allowed: set[str]) -> bool:
    """Whether another department's caller holds the role the rule asks (sthjj's caller of its rank is allowed)."""
    return caller.removeprefix("other_") in allowed


def _expected(kind: str, allowed: set[str], caller: str, success: int, route: tuple[str, str]) -> set[int]:
    if caller in allowed:
        return {success}
    if caller == "anonymous":
        return {401}
    if kind in ("read", "own") or (kind == "act" and caller in OTHERS):
        return {404}  # outside the caller's view: sthjj's objects for 住建局, another account's token
    if caller in OTHERS and kind == "write" and _holds_the_role(caller, allowed):
        if "{" in route[1] or route in BODY_OBJECTS:
            return {404}  # the right held, on an object outside its view: as a missing one (no existence leak)
        if route in ROW_REFUSALS:
            return {422}
    return {403}  # a right not held; or, held, writing for another department (a new terminal of sthjj's)


def test_a_session_without_its_csrf_token_changes_nothing(api_url: str, world: World):
    """Every route that changes state, called with steward_session's cookie and no CSRF header: 403 (CSRF)."""
    failures = []
    for method, path, _, fixed in _cases(api_url):
        if method in ("GET", "HEAD") or RULES[(method, path)] == PUBLIC:
            continue
        cookie_only = {k: v for k, v in world.headers("steward_session").items() if k != CSRF_HEADER}
        request = _request(world, method, path, fixed)
        response = world.client.request(method, request.pop("url"), headers=cookie_only, **request)
        if response.status_code != 403 or "CSRF" not in response.text:
            failures.append(f"{method} {path} {fixed or ''}: {response.status_code}")
    assert not failures, "\n".join(failures)


SENDS = {"matrix-field": {"operator", "steward", "platform"}, "matrix-housing": {"platform"},
         "matrix-leader": set(), "matrix-viewer": set()}
"""POST /tasks by assignee: who may send them. A person of sthjj: its operators (its steward admin too) and the
platform admin; one of 住建局: the platform admin only (city-wide); the leading group (read-only) and a service
account: nobody."""
SENDERS_OF_STHJJ = {"operator", "steward"}
OUTSIDE_STHJJ = {"matrix-housing", "matrix-leader"}
"""An account outside the caller's department is not in its view: 404, as for a login that does not exist."""


def test_dispatch_rights_by_assignee(world: World):
    """Assigning needs the operator right over the alert, as acknowledging it does (403 without it; a subject
    outside the view is 404, tests/api/test_dispatch.py), and the assignee must be a person the caller sends:
    otherwise 403, or 404 for an account outside the caller's department (no existence leak)."""
    failures = []
    for assignee, senders in SENDS.items():
        for caller in CALLERS:
            body = {"subject_type": "alert", "subject_id": world.alert(), "assignee": assignee,
                    "due_at": "2031-01-01T08:00:00+08:00"}
            status = world.client.post("/api/v1/tasks", json=body, headers=world.headers(caller)).status_code
            rights = AS.get(caller, caller)
            expected = (201 if rights in senders else 401 if rights == "anonymous"
                        else 404 if rights in SENDERS_OF_STHJJ and assignee in OUTSIDE_STHJJ
                        else 404 if rights in OTHERS - {"other_viewer"} else 403)  # the alert: outside its view
            if status != expected:
                failures.append(f"{caller} sends {assignee}: {status}, expected {expected}")
    assert not failures, "\n".join(failures)
