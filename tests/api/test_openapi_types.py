"""Every response typed in OpenAPI, no free-form objects, one paging style (issue 12 §3).

The walk goes through every operation's success responses, following ``$ref``s: an object must name its
properties (or type its values, for a map), and no schema may be left untyped. ``STILL_FREE_FORM`` lists the
operations that still answer free-form JSON: a ratchet, each entry must still be one (so a fixed operation leaves
the list) and no other operation may join it."""

from __future__ import annotations

STILL_FREE_FORM = {
    "DELETE /api/v1/tokens/{token_id}", "GET /api/v1/audit", "GET /api/v1/changes", "GET /api/v1/divisions/{code}",
    "GET /api/v1/fire-events/{event_id}", "GET /api/v1/heat-sources", "GET /api/v1/kinds", "GET /api/v1/metrics",
    "GET /api/v1/poles/{code}/terminals", "GET /api/v1/terminals", "GET /api/v1/terminals/{code}",
"GET /api/v1/users", "GET /api/v1/users/{login}",
    "GET /api/v1/users/{login}/tokens", "GET /api/v1/webhooks", "GET /healthz", "GET /readyz",
    "PATCH /api/v1/terminals/{code}", "POST /api/v1/codes/issue", "POST /api/v1/credentials/{code}",
    "POST /api/v1/fire-events/{event_id}/verdict", "POST /api/v1/firms", "POST /api/v1/heat-sources",
    "POST /api/v1/users", "POST /api/v1/users/{login}/disable", "POST /api/v1/users/{login}/enable",
    "POST /api/v1/users/{login}/tokens", "POST /api/v1/webhooks", "POST /api/v1/webhooks/{webhook_id}/replay",
    "POST /api/v1/webhooks/{webhook_id}/resume", "GET /api/v1/ledger/export",
}
"""Free-form today (a terminal's ``attrs`` and a change's before/after are free-form by nature: the ledger's
attributes differ per kind; they would need a schema per kind)."""
NOT_JSON = {"image/png", "image/jpeg", "image/svg+xml", "text/event-stream", "text/csv"}


def _free_form(schema: dict, schemas: dict, seen: frozenset[str] = frozenset()) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else _free_form(schemas[name], schemas, seen | {name})
    found = [p for key in ("anyOf", "oneOf", "allOf") for sub in schema.get(key, [])
             for p in _free_form(sub, schemas, seen)]
    if not set(schema) - {"title", "description", "default", "examples"}:
        return [*found, "untyped"]
    if schema.get("type") == "object":
        extra = schema.get("additionalProperties")
        if "properties" not in schema and not (isinstance(extra, dict) and extra):
            found.append(f"object without properties: {schema.get('title', '')}")
        if isinstance(extra, dict) and extra:
            found += _free_form(extra, schemas, seen)
        for value in schema.get("properties", {}).values():
            found += _free_form(value, schemas, seen)
    if schema.get("type") == "array":
        found += _free_form(schema.get("items", {}), schemas, seen)
    return found


def test_every_response_is_typed_and_no_new_one_is_free_form(http):
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    free = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                for media, body in (response.get("content") or {}).items() if status.startswith("2") else ():
                    if media not in NOT_JSON and (why := _free_form(body.get("schema", {}), schemas)):
                        free[f"{method.upper()} {path}"] = why
    assert set(free) - STILL_FREE_FORM == set(), {k: v for k, v in free.items() if k not in STILL_FREE_FORM}
    assert STILL_FREE_FORM - set(free) == set()  # typed since: take it off the list


def test_connection_states_and_newest_values_are_typed_and_page_as_data_and_next(http):
    spec = http.get("/openapi.json").json()
    for path in ("/api/v1/terminals/{code}/latest", "/api/v1/poles/{code}/latest", "/api/v1/terminals/{code}/state",
                 "/api/v1/terminal-states", "/api/v1/terminal-states/summary"):
        body = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert _free_form(body, spec["components"]["schemas"]) == [], path
    terminal = {"name": "中兴大街空气微站", "kind": "air_sensor", "lon": 126.97, "lat": 46.65}
    code = http.post("/api/v1/terminals", json=terminal).json()["code"]
    states = http.get("/api/v1/terminal-states", params={"limit": 1}).json()
    assert set(states) == {"data", "next", "count"} and states["data"][0]["code"] == code
    latest = http.get(f"/api/v1/terminals/{code}/latest").json()
    assert latest == {"code": code, "state": "never", "last_seen_at": None, "readings": []}
    assert http.get(f"/api/v1/terminals/{code}/state").json()["state"] == "never"


UNPAGED_WITH_CURSOR = {"/api/v1/terminal-states/summary", "/api/v1/terminals/{code}/readings"}
"""Take a cursor but answer more than pages: counts per department and state (the shared terminal filters have
``after``); a terminal's readings, raw (a page: ``{code, data, next}``) or in time buckets (the whole window)."""


def test_every_list_that_pages_pages_as_data_and_next(http):
    """One paging style: every operation taking a cursor (``after``) answers JSON as ``{data, next}`` (the ledger
    export and the event stream are files and a stream, not pages)."""
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    paged = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"].get("200", {}).get("content", {})
            if not any(p["name"] == "after" for p in operation.get("parameters", [])) or path in UNPAGED_WITH_CURSOR \
                    or "application/json" not in content:
                continue
            body = content["application/json"]["schema"]
            fields = schemas[body["$ref"].rsplit("/", 1)[-1]]["properties"] if "$ref" in body else {}
            assert fields.get("data", {}).get("type") == "array" and "next" in fields, f"{method} {path}"
            paged += 1
    assert paged >= 10
