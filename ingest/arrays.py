"""PostgreSQL array literals made with ``str.join``: psycopg dumps a Python list element by element in Python
(its C extension does not cover arrays), which cost more than the rest of a batch's upserts."""

from __future__ import annotations

from collections.abc import Iterable


def array(elements: Iterable[str]) -> str:
    """An array literal of elements already in its syntax (numbers, NULL, quoted text)."""
    return "{" + ",".join(elements) + "}"


def quoted(text: str | None) -> str:
    """A text element of an array literal (None: NULL)."""
    if text is None:
        return "NULL"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def number(value: int | None) -> str:
    """A number element of an array literal (None: NULL)."""
    return "NULL" if value is None else str(value)
