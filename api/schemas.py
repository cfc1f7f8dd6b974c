"""Response envelopes shared by the routes."""

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
