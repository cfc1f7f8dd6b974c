"""Every response typed in OpenAPI, no free-form objects, one paging style (issue 12 §3).

The walk goes through every operation's success responses, following ``$ref``s: an object must name its
properties (or type its values, for a map), and no schema may be left untyped. Open data has a bounded schema too:
a terminal's ``attrs`` and a change's before/after are maps of scalars (attrs nested one level), GeoJSON bodies
(application/geo+json) name their geometry and properties."""

from __future__ import annotations

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


def test_every_response_is_typed(http):
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    free = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                for media, body in (response.get("content") or {}).items() if status.startswith("2") else ():
                    if media not in NOT_JSON and (why := _free_form(body.get("schema", {}), schemas)):
                        free[f"{method.upper()} {path}"] = why
    assert free == {}


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


UNPAGED = {
    "/api/v1/divisions", "/api/v1/departments", "/api/v1/kinds", "/api/v1/metrics",  # catalogues
    "/api/v1/poles/{code}/terminals",  # what one pole carries
    "/api/v1/grants",  # at most one per pair of departments and kind
    "/api/v1/users/{login}/tokens",  # one account's tokens
    "/api/v1/webhooks",  # a department's few subscriptions
    "/api/v1/tasks/assignees",  # the 派发 picker: a department's people
    "/api/v1/tasks/summary", "/api/v1/terminal-states/summary",  # counts per department and county or state
}
"""Lists answered whole, as a JSON array: catalogues and lists bounded by what they belong to (docs/api.md)."""


def test_every_list_is_a_page_or_small_and_bounded(http):
    """A list that grows with the city (terminals, alerts, accounts, heat sources, ...) pages as ``{data, next}``;
    only the lists of ``UNPAGED`` answer a bare array."""
    spec = http.get("/openapi.json").json()
    arrays = {path for path, operations in spec["paths"].items() for operation in operations.values()
              if operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
              .get("schema", {}).get("type") == "array"}
    assert arrays == UNPAGED


def test_accounts_and_heat_sources_page_in_name_order(http):
    for n in range(3):
        assert http.post("/api/v1/users", json={"login": f"paging-{n}", "name": f"分页{n}", "department": "sthjj",
                                                "roles": ["viewer"], "kind": "service"}).status_code == 201
        assert http.post("/api/v1/heat-sources", json={"name": f"分页热源{n}", "kind": "boiler", "lat": 46.64,
                                                       "lon": 126.98 + n / 100}).status_code == 201
    for path, key, wanted in (("/api/v1/users", "login", ["paging-0", "paging-1", "paging-2"]),
                              ("/api/v1/heat-sources", "name", ["分页热源0", "分页热源1", "分页热源2"])):
        seen, after = [], None
        while True:
            body = http.get(path, params={"limit": 2, **({"after": after} if after else {})}).json()
            assert set(body) == {"data", "next", "count"}
            seen += [row[key] for row in body["data"]]
            if (after := body["next"]) is None:
                break
        assert [k for k in seen if k in wanted] == wanted and len(seen) == len(set(seen)), path
