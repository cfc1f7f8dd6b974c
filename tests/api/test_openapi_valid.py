"""The OpenAPI document is valid for the version it declares, by a validator of its own (openapi-spec-validator:
the OpenAPI Initiative's JSON Schema of that version, and the checks it adds: references resolve, parameters are
unique, defaults match their schemas). Session 15 gave the live stream an ``itemSchema`` (OpenAPI 3.2's) in a
document that said ``openapi: 3.1.0``, whose Media Type Object has no such field: a 3.1 validator refused it."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate

from tests.conftest import TLS

STREAM_200 = ("paths", "/api/v1/stream", "get", "responses", "200", "content", "text/event-stream")


def test_the_document_is_valid_openapi_of_the_version_it_declares(api_url: str):
    spec = httpx.get(f"{api_url}/openapi.json", timeout=60, verify=TLS).json()
    validate(spec)  # raises, naming the first field that breaks the declared version's schema
    media = spec
    for key in STREAM_200:
        media = media[key]
    # Valid with the stream's events described, where an integrator (and schemathesis) reads them:
    assert "StreamEvent" in str(media["itemSchema"]["properties"]["data"]["contentSchema"])
