"""One paging style across the API: ``{data, next}`` (``api.schemas.Page``), newest first; pass ``next`` as
``after`` for the next page (it is the last id of the page), until ``next`` is null."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from registry.errors import Invalid

Limit = Annotated[int, Query(ge=1, le=1000)]
After = Annotated[str | None, Query(description="cursor: the `next` of the previous page")]


def cursor(after: str | None) -> int | None:
    """The id a page starts below; a cursor that is not one of ours is a 422."""
    if after is None:
        return None
    if not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise Invalid(f"{after!r} is not a cursor of this list (pass the `next` of the previous page)", field="after")
    return int(after)


def page(rows: list[Any], limit: int, key: str = "id") -> tuple[list[Any], str | None]:
    """Rows asked for with ``limit + 1`` (dicts or models): the page, and the cursor of the next one (the last
    ``key`` of this page: its id, or the login or name a list in that order is keyed by)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], str(last[key] if isinstance(last, dict) else getattr(last, key))
