"""What the API refuses before any route sees it: bodies over their limit, text PostgreSQL cannot store, a query
parameter given twice.

Bodies are counted as they stream in (FastAPI's ``max_body_size``): ``MAX_JSON_BYTES`` for the whole application,
``MAX_UPLOAD_BYTES`` declared by the upload routes; beyond it the answer is 413 and the rest is not read.

A ``text`` or ``jsonb`` value cannot hold NUL, and UTF-8 cannot encode an unpaired surrogate (JSON's
``"\\ud800"``); JSON's NaN and Infinity (which Python's parser accepts) are not JSON to ``jsonb``. Rather than a
check per route, one dependency of the whole application looks at every path parameter, query parameter and JSON
body (of the routes that take one) and answers 422 naming the input, before a query could fail on it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request

from registry.errors import Invalid

MAX_JSON_BYTES = 1024 * 1024
MAX_UPLOAD_BYTES = 64 * 1024 * 1024

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _what(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"


async def refuse_unstorable_input(request: Request) -> None:
    """Raise ``Invalid`` (422) for the first input holding text PostgreSQL cannot store, or for a query parameter
    given more than once (every one of the API takes a single value; the framework would keep the last)."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise Invalid(f"query parameter {name!r} is given more than once; it takes one value", field=name)
        seen.add(name)
    for place, params in (("path", request.path_params.items()), ("query", request.query_params.multi_items())):
        for name, value in params:
            for text in (name, value):
                if isinstance(text, str) and (what := _what(text)):
                    raise Invalid(f"{place} parameter {name!r} contains {what}, which cannot be stored",
                                  field=name)
    if _takes_body(request) and _is_json(request.headers.get("content-type")) and await request.body():
        try:
            body = await request.json()  # parsed already by FastAPI (which answers bad JSON itself); cached
        except (ValueError, RecursionError) as exc:
            raise Invalid(f"the body is not JSON that can be read: {type(exc).__name__}") from exc
        _check_json(body)


def _takes_body(request: Request) -> bool:
    """Whether the route reads a body: any other route ignores one, so it is not parsed (a JSON document nested
    deep enough exhausts the parser's stack)."""
    return getattr(request.scope.get("route"), "body_field", None) is not None


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _check_json(body: Any) -> None:
    """Walk the document without recursion (a deep one must not exhaust the stack)."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if what := _what(key):
                    raise Invalid(f"a key in {path or 'the body'} contains {what}, which cannot be stored",
                                  field=path or None)
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
        elif isinstance(value, str) and (what := _what(value)):
            raise Invalid(f"{path or 'the body'} contains {what}, which cannot be stored", field=path or None)
        elif isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"{path or 'the body'} is {value}, which JSON does not allow", field=path or None)
