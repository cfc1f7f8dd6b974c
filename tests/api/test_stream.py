"""The live stream over real HTTP: rights in SQL, resume with Last-Event-ID with no gap and no duplicate."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from pydantic import BaseModel
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from api import schemas
from api.routes import stream
from registry import accounts, service
from registry.changes import Actor
from tests.conftest import account_token
from tests.factories import terminal_in


def _alert(url: str, department: str, name: str) -> int:
    with psycopg.connect(url) as c:
        code = service.create_terminal(c, terminal_in(name, department=department), Actor("setup"))
        return c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'gb3838:w01009', 'river', 'warning', 'steward', %s, division_code, now(), 'test'
              from terminal where code = %s returning id
            """, (department, code)).fetchone()[0]


def _act(url: str, alert_id: int, status: str) -> None:
    with psycopg.connect(url) as c:  # one transaction: the alert's update and its history entry
        c.execute("update alert set status = %s, updated_at = now() where id = %s", (status, alert_id))
        c.execute("insert into alert_event (alert_id, actor, action) values (%s, 'test', 'acknowledge')", (alert_id,))


def _feed_end(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("select coalesce(max(id), 0) from alert_feed").fetchone()[0]


def _events(response: httpx.Response) -> Iterator[dict]:
    """Server-Sent Events as dicts (id, event, data); comments (heartbeats) are skipped."""
    event: dict = {}
    for line in response.iter_lines():
        if line == "":
            if "id" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            event[field] = value


def _read(api_url: str, token: str, count: int, headers: dict | None = None, params: dict | None = None) -> list[dict]:
    got = []
    with httpx.stream("GET", f"{api_url}/api/v1/stream", params=params, timeout=30,
                      headers={"Authorization": f"Bearer {token}", **(headers or {})}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in _events(response):
            got.append(event)
            if len(got) == count:
                break  # disconnect mid-stream
    return got


def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(api_url: str, db_url: str, admin_token: str):
    start = _feed_end(db_url)
    alert = _alert(db_url, "sthjj", "流测试站1")
    _act(db_url, alert, "acknowledged")
    _act(db_url, alert, "resolved")
    everything = list(range(start + 1, _feed_end(db_url) + 1))
    assert len(everything) == 5  # insert, and twice an update with its history entry

    first = _read(api_url, admin_token, 2, params={"after": start})
    assert [int(e["id"]) for e in first] == everything[:2]
    assert first[0]["event"] == "alert" and '"action": "insert"' in first[0]["data"]

    later = _alert(db_url, "sthjj", "流测试站2")  # made while the client is away
    rest = _read(api_url, admin_token, 4, headers={"Last-Event-ID": first[-1]["id"]})
    assert [int(e["id"]) for e in rest] == [*everything[2:], everything[-1] + 1]
    assert f'"alert_id": {later}' in rest[-1]["data"]


def test_stream_is_filtered_by_the_callers_rights(api_url: str, db_url: str):
    viewer = account_token(db_url, "stream-viewer-zjj", ["viewer"], "zjj")
    start = _feed_end(db_url)
    _alert(db_url, "sthjj", "流测试站3")  # 生态环境局's: not in 住建局's view
    theirs = _alert(db_url, "zjj", "流测试站4")
    got = _read(api_url, viewer, 1, params={"after": start})
    assert f'"alert_id": {theirs}' in got[0]["data"]


def test_live_events_wake_the_stream(api_url: str, db_url: str, admin_token: str):
    """Without a cursor the stream starts with what happens next, woken by NOTIFY (not the 15 s heartbeat)."""
    def later() -> None:
        time.sleep(1)
        _alert(db_url, "sthjj", "流测试站5")

    threading.Thread(target=later).start()
    began = time.monotonic()
    got = _read(api_url, admin_token, 1)
    assert got[0]["event"] == "alert" and time.monotonic() - began < 10


def test_stream_needs_credentials(api_url: str):
    assert httpx.get(f"{api_url}/api/v1/stream", timeout=10).status_code == 401


def test_an_evaluation_extending_an_alert_is_not_news(db_url: str):
    alert = _alert(db_url, "sthjj", "流测试站6")
    start = _feed_end(db_url)
    with psycopg.connect(db_url) as c:
        c.execute("update alert set observed_end = now(), worst_value = 9.5, detail = 'still on' where id = %s",
                  (alert,))
    assert _feed_end(db_url) == start


@pytest.mark.parametrize("ending", ["disable", "revoke"])
def test_an_open_stream_ends_once_its_account_is_disabled_or_its_token_revoked(
        api_url: str, db_url: str, http: httpx.Client, monkeypatch: pytest.MonkeyPatch, ending: str):
    """The credentials are checked again at each heartbeat (shortened here), not only when the stream opened."""
    monkeypatch.setattr(stream, "HEARTBEAT_S", 0.2)
    login = f"stream-{ending}"
    token = account_token(db_url, login, ["viewer"], "sthjj")
    heartbeats = 0
    with httpx.stream("GET", f"{api_url}/api/v1/stream", headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        assert ": heartbeat" in lines  # open, and kept open while the account holds (reads up to the first)
        if ending == "disable":
            assert http.post(f"/api/v1/users/{login}/disable").status_code == 200
        else:
            with psycopg.connect(db_url) as c:
                token_id = accounts.list_tokens(c, login)[0]["id"]
            assert http.delete(f"/api/v1/tokens/{token_id}").status_code == 200
        for line in lines:
            heartbeats += line == ": heartbeat"
            if heartbeats > 5:
                break  # still open: the check did not happen
    assert heartbeats <= 2


def _documented_models(api_url: str) -> dict[str, type[BaseModel]]:
    """Event name → the model the OpenAPI document gives its ``data:`` (the discriminator's mapping in the
    ``contentSchema`` of ``itemSchema``'s data, as OpenAPI 3.2 describes an event stream), as the class of
    ``api.schemas`` of that name."""
    spec = httpx.get(f"{api_url}/openapi.json", timeout=30).json()
    event = spec["paths"]["/api/v1/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]["itemSchema"]
    data = event["properties"]["data"]["contentSchema"]
    assert event["properties"]["event"]["enum"] == list(data["discriminator"]["mapping"])
    return {kind: getattr(schemas, ref.rsplit("/", 1)[-1]) for kind, ref in data["discriminator"]["mapping"].items()}


def _fields(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_event_the_stream_sends_is_its_documented_model(api_url: str, db_url: str, admin_token: str):
    """Real events of each kind off a real server, each validated against the model OpenAPI names for its event,
    which documents every field it sends (an undocumented field fails as a missing one does)."""
    models = _documented_models(api_url)
    assert set(models) == {"alert", "alert_event", "incident", "fire_event"}
    start = _feed_end(db_url)
    alert = _alert(db_url, "sthjj", "流模型站")
    _act(db_url, alert, "acknowledged")  # an update of the alert, and an entry of its history
    with psycopg.connect(db_url) as c:
        incident = c.execute("insert into incident (key, title, bureau, division_code) values "
                             "('pole:stream-models', '流模型事件', 'steward', '231202') returning id").fetchone()[0]
        c.execute("update alert set incident_id = %s where id = %s", (incident, alert))
        c.execute("insert into fire_event (first_seen, last_seen, confidence, sources, division_code) "
                  "values (now(), now(), 0.7, '{satellite}', '231202')")
    expected = _feed_end(db_url) - start
    events = _read(api_url, admin_token, expected, params={"after": start})
    assert {e["event"] for e in events} == set(models)
    for event in events:
        model = models[event["event"]]
        parsed = model.model_validate_json(event["data"])
        sent = json.loads(event["data"])
        assert (parsed.kind, parsed.id) == (event["event"], int(event["id"]))
        at = dt.datetime.fromisoformat(sent["at"])
        assert at.isoformat() == sent["at"] and at.tzinfo is not None, "RFC 3339 with a T and an offset"
        assert set(sent) == _fields(model), event["event"]
        assert set(sent["payload"]) == _fields(type(parsed.payload)), event["event"]


def test_schemathesis_checks_each_events_data_against_the_documented_event(api_url: str, db_url: str,
                                                                           admin_token: str):
    """The schema fuzz's response check reads the stream as the document says: each event is ``{id, event,
    data}`` and its ``data`` the JSON documented for it. Real events pass; an event whose data breaks its schema
    (a severity the platform does not have) fails."""
    start = _feed_end(db_url)
    _act(db_url, _alert(db_url, "sthjj", "流文档站"), "acknowledged")  # three events: insert, update, history
    operation = schemathesis.openapi.from_url(f"{api_url}/openapi.json")["/api/v1/stream"]["GET"]
    case = operation.Case(query={"after": start})
    response = case.call(headers={"Authorization": f"Bearer {admin_token}"}, timeout=(30, 2))
    assert response.status_code == 200 and response.content.count(b"\ndata: ") == 3
    case.validate_response(response, checks=[response_schema_conformance])
    broken = response.content.replace(b'"severity": "warning"', b'"severity": "apocalyptic"', 1)
    assert broken != response.content
    tampered = schemathesis.Response(200, response.headers, broken, response.request, elapsed=0, verify=True,
                                     stream_cut_short=True)
    with pytest.raises(FailureGroup, match="SSE event payload violates content schema"):
        case.validate_response(tampered, checks=[response_schema_conformance])
