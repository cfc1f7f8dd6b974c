"""Each list through a second department's view, over real HTTP: 住建局 (zjj) sees its own and what is granted or
routed to it, and nothing of 生态环境局 (sthjj) besides; the platform admin sees both."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from alerts import fire as fire_alerts
from registry import service
from registry.changes import Actor
from tests.conftest import TLS, _empty_ledger, account_token
from tests.factories import pole_in, terminal_in

HOUSING = "zjj"


@dataclass
class Ledger:
    """Of each kind of object, one of sthjj and one of zjj (or seen by zjj)."""

    env_terminal: str
    housing_terminal: str
    env_pole: str
    housing_pole: str
    env_incident: int
    housing_incident: int
    fire_event: int
    env_grant: int
    housing_grant: int


def _alert(c: psycopg.Connection, code: str, bureau: str, family: str, incident: int | None = None) -> int:
    return c.execute(
        """
        insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                           observed_start, detail, incident_id)
        select id, 'test:' || %(family)s, %(family)s, 'warning', %(bureau)s, department_code, division_code, now(),
               'test', %(incident)s
          from terminal where code = %(code)s returning id
        """, {"family": family, "bureau": bureau, "code": code, "incident": incident}).fetchone()[0]


def _incident(c: psycopg.Connection, key: str, bureau: str) -> int:
    return c.execute("insert into incident (key, title, bureau, division_code) values (%s, %s, %s, '231202') "
                     "returning id", (key, key, bureau)).fetchone()[0]


def _dead_letter(c: psycopg.Connection, publisher: str) -> None:
    payload = f"bad from {publisher}".encode()
    c.execute("insert into dead_letter (topic, publisher, payload, reason, payload_size, payload_sha256) "
              "values (%s, %s, %s, 'test', %s, %s)",
              (f"ganzhi/{publisher}/up", publisher, payload, len(payload), hashlib.sha256(payload).digest()))


def _fire_event(c: psycopg.Connection) -> int:
    """A straw fire with its alert: the environment bureau's (生态环境局) and the agriculture bureau's."""
    now = dt.datetime.now(dt.UTC)
    event = c.execute("insert into fire_event (first_seen, last_seen, lat, lon, accuracy_m, division_code, "
                      "confidence) values (%s, %s, 46.64, 126.98, 300, '231202', 0.9) returning id",
                      (now, now)).fetchone()[0]
    fire_alerts.fire_event(c, event)
    return event


@pytest.fixture(scope="module")
def ledger(db_url: str, api_url: str) -> Iterator[Ledger]:
    setup = Actor("setup")
    with psycopg.connect(db_url) as c:
        env_pole = service.create_pole(c, pole_in("视图环境杆", department="sthjj"), setup)
        housing_pole = service.create_pole(c, pole_in("视图住建杆", department=HOUSING), setup)
        env = service.create_terminal(c, terminal_in("视图空气站", department="sthjj", pole=env_pole), setup)
        housing = service.create_terminal(c, terminal_in("视图燃气", "methane_detector", department=HOUSING,
                                                         pole=housing_pole), setup)
        env_incident = _incident(c, "view:env", "environment")
        _alert(c, env, "environment", "river", env_incident)
        housing_incident = _incident(c, "view:housing", "housing")
        _alert(c, housing, "housing", "gas", housing_incident)
        for code in (env, housing, "23120200000000000000"):
            _dead_letter(c, code)
        grants = [c.execute("insert into sharing_grant (steward_code, grantee_code, kind, granted_by) "
                            "values (%s, %s, 'methane_detector', 'setup') returning id", pair).fetchone()[0]
                  for pair in (("sthjj", "cgj"), ("zjj", "cgj"))]
        made = Ledger(env, housing, env_pole, housing_pole, env_incident, housing_incident, _fire_event(c), *grants)
    yield made
    _empty_ledger(db_url)


def _client(api_url: str, token: str) -> httpx.Client:
    return httpx.Client(verify=TLS, base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def housing(api_url: str, db_url: str) -> Iterator[httpx.Client]:
    with _client(api_url, account_token(db_url, "views-zjj-viewer", ["viewer"], HOUSING)) as client:
        yield client


@pytest.fixture(scope="module")
def admin(api_url: str, admin_token: str) -> Iterator[httpx.Client]:
    """The platform admin, without ``http``'s emptying of the ledger after each test."""
    with _client(api_url, admin_token) as client:
        yield client


def _listed(client: httpx.Client, path: str, key: str = "id", **params) -> set:
    body = client.get(path, params=params).json()
    return {row[key] for row in (body["data"] if isinstance(body, dict) else body)}


def test_fire_events_are_not_the_housing_bureaus(ledger: Ledger, housing: httpx.Client, admin: httpx.Client):
    assert ledger.fire_event not in _listed(housing, "/api/v1/fire-events")
    assert housing.get(f"/api/v1/fire-events/{ledger.fire_event}").status_code == 404
    assert ledger.fire_event in _listed(admin, "/api/v1/fire-events")


def test_incidents_show_only_those_with_an_alert_the_department_receives(ledger: Ledger, housing: httpx.Client,
                                                                         admin: httpx.Client):
    assert _listed(housing, "/api/v1/incidents") == {ledger.housing_incident}
    assert {ledger.env_incident, ledger.housing_incident} <= _listed(admin, "/api/v1/incidents")


def test_dead_letters_only_of_the_departments_terminals(ledger: Ledger, housing: httpx.Client, admin: httpx.Client):
    assert _listed(housing, "/api/v1/dead-letters", "publisher") == {ledger.housing_terminal}
    everyone = {ledger.env_terminal, ledger.housing_terminal, "23120200000000000000"}
    assert everyone <= _listed(admin, "/api/v1/dead-letters", "publisher")


def test_poles_only_the_departments_own(ledger: Ledger, housing: httpx.Client, admin: httpx.Client):
    assert _listed(housing, "/api/v1/poles", "code") == {ledger.housing_pole}
    assert housing.get(f"/api/v1/poles/{ledger.env_pole}").status_code == 404
    assert {ledger.env_pole, ledger.housing_pole} <= _listed(admin, "/api/v1/poles", "code")


def test_terminal_states_only_the_departments_own(ledger: Ledger, housing: httpx.Client, admin: httpx.Client):
    assert _listed(housing, "/api/v1/terminal-states", "code") == {ledger.housing_terminal}
    assert _listed(housing, "/api/v1/terminal-states/summary", "department") == {HOUSING}
    assert {ledger.env_terminal, ledger.housing_terminal} <= _listed(admin, "/api/v1/terminal-states", "code")


def test_grants_only_those_the_department_gave_or_received(ledger: Ledger, housing: httpx.Client,
                                                           admin: httpx.Client):
    assert _listed(housing, "/api/v1/grants") == {ledger.housing_grant}
    assert _listed(housing, "/api/v1/grants", department="sthjj") == set()
    assert {ledger.env_grant, ledger.housing_grant} <= _listed(admin, "/api/v1/grants")
