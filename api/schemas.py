"""Response envelopes shared by the routes, and the one error body of every 4xx and 5xx answer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, Field

T = TypeVar("T")


def _rfc3339(value: object) -> object:
    """Pydantic would read a bare number as Unix seconds; the schema (and a person) means RFC 3339 text."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1)
                                          .isdigit()):
        raise ValueError("a time is RFC 3339 text, e.g. 2026-11-29T08:00:00+08:00, not a number")
    return value


Instant = Annotated[dt.datetime, BeforeValidator(_rfc3339)]
"""A point in time given as a query parameter."""


class Page(BaseModel, Generic[T]):
    data: list[T]
    next: str | None = Field(description="pass as `after` for the next page; null on the last page")
    count: int | None = Field(default=None, description="total matches, when asked for with count=true")


class Created(BaseModel):
    code: str


class Problem(BaseModel):
    field: str | None = Field(description="the input at fault: a body field (attrs.river), a query or path "
                                          "parameter, or null for the request as a whole")
    message: str


class ErrorOut(BaseModel):
    """What every refused or failed request answers, whatever its status."""

    detail: str = Field(description="what is wrong, in words a person can act on")
    field: str | None = Field(default=None, description="the input at fault, when there is one")
    problems: list[Problem] = Field(default_factory=list,
                                    description="every problem found, when the request has several (schema errors)")
