"""One paging style across the API (issue 12 §3): the change and audit logs, dead letters, fire events and
webhook deliveries answer ``{data, next}`` like terminals and alerts; following ``next`` as ``after`` walks the
whole list newest first, keeping the filters, and a cursor that is not ours is a 422."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest

from registry import audit
from registry.changes import Actor


def _walk(http, path: str, params: dict, limit: int = 2) -> list[int]:
    """Every id of the list, page by page."""
    ids, after = [], None
    while True:
        body = http.get(path, params={**params, "limit": limit, **({"after": after} if after else {})}).json()
        assert set(body) >= {"data", "next"} and len(body["data"]) <= limit
        ids += [row["id"] for row in body["data"]]
        after = body["next"]
        if after is None:
            return ids


def _changes(db_url: str, code: str, count: int) -> None:
    with psycopg.connect(db_url) as conn:
        for n in range(count):
            audit.record(conn, Actor("paging-test"), "update", "terminal", code, after={"n": n})


def test_the_change_and_audit_logs_page_as_data_and_next(http, db_url):
    code = f"PAGING{uuid.uuid4().hex[:8]}"
    _changes(db_url, code, 5)
    _changes(db_url, f"{code}X", 1)  # another object: the filter keeps it out of every page
    for path in ("/api/v1/changes", "/api/v1/audit"):
        everything = http.get(path, params={"object_code": code}).json()
        assert everything["next"] is None and len(everything["data"]) == 5
        ids = _walk(http, path, {"object_code": code})
        assert ids == [row["id"] for row in everything["data"]] and ids == sorted(ids, reverse=True)


def test_dead_letters_page_as_data_and_next(http, db_url):
    publisher = f"PAGING{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url) as conn:
        for n in range(5):
            payload = f"{{bad {n}".encode()
            conn.execute("insert into dead_letter (topic, publisher, payload, reason, payload_size, payload_sha256) "
                         "values (%s, %s, %s, 'payload is not JSON', %s, %s)",
                         (f"ganzhi/v1/{publisher}/telemetry", publisher, payload, len(payload),
                          hashlib.sha256(payload).digest()))
    ids = _walk(http, "/api/v1/dead-letters", {"publisher": publisher, "reason": "JSON"})
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    first = http.get("/api/v1/dead-letters", params={"publisher": publisher, "limit": 1}).json()
    assert first["data"][0]["payload_text"] == "{bad 4" and first["next"] == str(ids[0])
    assert http.get("/api/v1/dead-letters", params={"publisher": publisher, "reason": "range"}).json() == {
        "data": [], "next": None, "count": None}


def test_fire_events_page_as_data_and_next(http, db_url):
    with psycopg.connect(db_url) as conn:
        made = [conn.execute("insert into fire_event (first_seen, last_seen, confidence, sources) "
                             "values ('2099-01-01T00:00Z', '2099-01-01T01:00Z', 0.8, '{satellite}') returning id"
                             ).fetchone()[0] for _ in range(3)]
    ids = _walk(http, "/api/v1/fire-events", {"from": "2099-01-01T00:00:00Z", "status": "open"})
    assert ids == sorted(made, reverse=True)
    event = http.get("/api/v1/fire-events", params={"from": "2099-01-01T00:00:00Z", "limit": 1}).json()["data"][0]
    assert (event["sources"], event["detections"], event["alert_id"]) == (["satellite"], 0, None)


@pytest.mark.parametrize("path", ["/api/v1/changes", "/api/v1/audit", "/api/v1/dead-letters", "/api/v1/fire-events"])
def test_a_cursor_that_is_not_ours_is_refused(http, path):
    refused = http.get(path, params={"after": "2026-11-29|x"})
    assert refused.status_code == 422 and refused.json()["field"] == "after"


def _walk_keys(http, path: str, key: str, params: dict | None = None, limit: int = 2) -> list:
    """Every ``key`` of a list, page by page, following ``next`` as ``after``."""
    keys, after = [], None
    while True:
        body = http.get(path, params={**(params or {}), "limit": limit, **({"after": after} if after else {})}).json()
        assert set(body) == {"data", "next", "count"} and len(body["data"]) <= limit, body
        keys += [row[key] for row in body["data"]]
        if (after := body["next"]) is None:
            return keys


def test_a_poles_terminals_page_in_code_order(http):
    pole = http.post("/api/v1/poles", json={"name": "分页杆", "department": "城管局", "lon": 126.98, "lat": 46.65})
    assert pole.status_code == 201, pole.text
    code = pole.json()["code"]
    made = [http.post("/api/v1/terminals", json={"name": f"分页杆上{n}", "kind": "air_sensor", "pole": code}).json()
            ["code"] for n in range(5)]
    assert _walk_keys(http, f"/api/v1/poles/{code}/terminals", "code") == sorted(made)
    whole = http.get(f"/api/v1/poles/{code}/terminals").json()
    assert whole["next"] is None and [t["code"] for t in whole["data"]] == sorted(made)


def test_tokens_grants_and_webhooks_page_as_data_and_next(http):
    """The lists that grow with use page like the others, oldest first; each page is the next slice."""
    assert http.post("/api/v1/users", json={"login": "paging-tokens", "name": "分页令牌", "department": "sthjj",
                                            "roles": ["viewer"], "kind": "service"}).status_code == 201
    tokens = [http.post("/api/v1/users/paging-tokens/tokens", json={"name": f"t{n}"}).json()["id"] for n in range(5)]
    assert _walk_keys(http, "/api/v1/users/paging-tokens/tokens", "id") == tokens

    kinds = [k["key"] for k in http.get("/api/v1/kinds").json()["data"]][:3]
    grants = [http.post("/api/v1/grants", json={"steward": "zjj", "grantee": "yjglj", "kind": kind}).json()["id"]
              for kind in kinds]
    hooks = [http.post("/api/v1/webhooks", json={"url": f"https://8.8.8.8/paging-{n}", "department": "nyncj"})
             .json()["id"] for n in range(3)]
    try:
        assert _walk_keys(http, "/api/v1/grants", "id", {"department": "yjglj"}) == grants
        assert [h for h in _walk_keys(http, "/api/v1/webhooks", "id") if h in hooks] == hooks
        everything = http.get("/api/v1/webhooks", params={"limit": 1000}).json()
        assert everything["next"] is None and _walk_keys(http, "/api/v1/webhooks", "id") == [
            h["id"] for h in everything["data"]]
    finally:
        for grant in grants:
            http.delete(f"/api/v1/grants/{grant}")
        for hook in hooks:
            http.delete(f"/api/v1/webhooks/{hook}")


@pytest.mark.parametrize("path", ["/api/v1/grants", "/api/v1/webhooks", "/api/v1/users/test-admin/tokens"])
def test_a_cursor_that_is_not_one_of_these_lists_is_refused(http, path):
    refused = http.get(path, params={"after": "23120221000001R"})
    assert refused.status_code == 422 and refused.json()["field"] == "after"


@pytest.mark.parametrize("path", ["/api/v1/divisions", "/api/v1/departments", "/api/v1/kinds", "/api/v1/metrics",
                                  "/api/v1/tasks/assignees", "/api/v1/terminal-states/summary"])
def test_short_lists_answer_one_whole_page(http, path):
    """Catalogues and counts come whole: one page whose ``next`` is null."""
    body = http.get(path).json()
    assert set(body) == {"data", "next", "count"} and body["next"] is None and isinstance(body["data"], list)
