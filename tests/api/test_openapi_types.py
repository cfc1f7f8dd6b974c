"""Every response typed in OpenAPI, no free-form objects, one paging style (issue 12 §3).

The walk goes through every operation's success responses, following ``$ref``s: every answer with a body has a
schema; a JSON answer (application/json, application/geo+json, and the JSON of each event of the live stream,
text/event-stream) is an object, never a bare array (lists are pages, ``{data, next}``); an object must name its
properties (or type its values, for a map), and no schema may be left untyped. A file (an image, a spreadsheet,
CSV) is a string of bytes. Open data has a bounded schema too: a terminal's ``attrs`` and a change's before/after
are maps of scalars (attrs nested one level), GeoJSON bodies name their geometry and properties."""

from __future__ import annotations

import pytest

WITHOUT_SCHEMA: dict[tuple[str, str, str], str] = {}
"""(method, path, media type) of a success answer that cannot have a schema, and why. Empty: a file is
``{"type": "string", "format": "binary"}``, the stream's events are JSON with models."""


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json") or media == "text/event-stream"


def _resolve(schema: dict, schemas: dict) -> dict:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


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
        if extra is True:
            found.append(f"object with untyped additional properties: {schema.get('title', '')}")
        elif "properties" not in schema and "oneOf" not in schema and not (isinstance(extra, dict) and extra):
            found.append(f"object without properties: {schema.get('title', '')}")
        if isinstance(extra, dict) and extra:
            found += _free_form(extra, schemas, seen)
        for value in schema.get("properties", {}).values():
            found += _free_form(value, schemas, seen)
    if schema.get("type") == "array":
        found += _free_form(schema.get("items", {}), schemas, seen)
    return found


def _untyped_body(media: str, schema: dict, schemas: dict) -> list[str]:
    """What is wrong with one success body's schema: nothing, for a typed JSON object or a file."""
    if not schema:
        return ["no schema"]
    if not _is_json(media):
        return [] if _resolve(schema, schemas).get("type") == "string" else [f"{media} that is not a string"]
    top = _resolve(schema, schemas)
    shapes = [top, *(_resolve(sub, schemas) for key in ("anyOf", "oneOf") for sub in top.get(key, []))]
    bare = ["a bare array (a list answers a page, {data, next})"] if any(
        shape.get("type") == "array" for shape in shapes) else []
    return bare + _free_form(schema, schemas)


def _body_schema(body: dict) -> dict:
    """The schema of an answer's body; of an event stream described as OpenAPI 3.2 does (``itemSchema``, one
    event), the schema of each event's JSON (its data's ``contentSchema``)."""
    if "itemSchema" in body:
        return body["itemSchema"].get("properties", {}).get("data", {}).get("contentSchema", {})
    return body.get("schema", {})


def untyped_responses(spec: dict) -> dict[str, list[str]]:
    """Every success answer of the document whose body is not typed, with what is wrong with it."""
    schemas = spec["components"]["schemas"]
    free: dict[str, list[str]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                content = response.get("content") or {}
                if not content and status != "204":
                    free[f"{method.upper()} {path} {status}"] = ["a body with no media type nor schema"]
                for media, body in content.items():
                    if (method.upper(), path, media) in WITHOUT_SCHEMA:
                        continue
                    if why := _untyped_body(media, _body_schema(body), schemas):
                        free[f"{method.upper()} {path} {status} {media}"] = why
    return free


def test_every_success_answer_has_a_typed_schema_and_no_bare_array(http):
    assert untyped_responses(http.get("/openapi.json").json()) == {}


@pytest.mark.parametrize(("schema", "wrong"), [
    ({"type": "array", "items": {"$ref": "#/components/schemas/Row"}}, "a bare array"),
    ({"type": "object"}, "object without properties"),
    ({"type": "object", "additionalProperties": True}, "untyped additional properties"),
    ({}, "no schema"),
])
def test_the_walk_finds_bare_arrays_free_form_objects_and_missing_schemas(schema: dict, wrong: str):
    """The walk itself: each shape it must refuse, in an answer of a made-up document."""
    spec = {"components": {"schemas": {"Row": {"type": "object", "properties": {"id": {"type": "integer"}}}}},
            "paths": {"/rows": {"get": {"responses": {
                "200": {"content": {"application/json": {"schema": schema}}},
                "204": {"description": "nothing"}}}},
                "/file": {"get": {"responses": {"200": {"description": "no content declared"}}}}}}
    found = untyped_responses(spec)
    assert wrong in " ".join(found["GET /rows 200 application/json"])
    assert found["GET /file 200"] == ["a body with no media type nor schema"]


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


UNPAGED_WITH_CURSOR = {"/api/v1/terminals/{code}/readings"}
"""Takes a cursor but answers more than pages: a terminal's readings, raw (a page: ``{code, data, next}``) or in
time buckets (the whole window)."""


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
