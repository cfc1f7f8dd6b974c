"""Errors of the ledger; the API turns each into one HTTP status."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class: a request the ledger refuses, with a message that says why."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidCode(LedgerError):
    """A city code that is malformed or has a wrong check character."""

    status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} (code {code!r})", field="code")
        self.code = code


class Invalid(LedgerError):
    """A value that breaks a rule of the ledger (unknown division, point outside Suihua...)."""

    status = 422


class NotFound(LedgerError):
    status = 404


class Conflict(LedgerError):
    """The write collides with what the ledger holds (duplicate code, object still in use)."""

    status = 409
