"""Response envelopes shared by the routes, and the one error body of every 4xx and 5xx answer."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


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
