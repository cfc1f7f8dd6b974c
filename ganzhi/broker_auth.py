"""The broker's password and ACL files, written from the ledger and kept in step with it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import psycopg

from core.broker import LocalBroker, hand_to_broker_user
from registry import credentials

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 5.0


def write_files(conn: psycopg.Connection, directory: Path, services: dict[str, str]) -> int:
    """Write ``passwd`` and ``acl``; returns the number of device logins."""
    directory.mkdir(parents=True, exist_ok=True)
    logins = credentials.broker_logins(conn)
    _write(directory / "passwd", credentials.password_file(logins, services))
    _write(directory / "acl", credentials.acl_file(sorted(services)))
    hand_to_broker_user(directory)
    return len(logins)


def _write(path: Path, text: str) -> None:
    """Replace atomically, so the broker never reads half a file."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    temporary.chmod(0o600)
    os.replace(temporary, path)


def ledger_version(conn: psycopg.Connection) -> tuple:
    """Changes whenever a device, its status or its credential changes."""
    return conn.execute(
        "select (select coalesce(max(id), 0) from change), "
        "(select count(*) from device_credential), (select max(issued_at) from device_credential)"
    ).fetchone()


async def keep_in_step(url: str, directory: Path, services: dict[str, str], broker: LocalBroker) -> None:
    """Rewrite the files and reload the broker whenever the ledger changes."""
    seen = None
    while True:
        try:
            seen = await asyncio.to_thread(_sync_once, url, directory, services, broker, seen)
        except psycopg.Error as exc:
            log.warning("could not update the broker's logins from the ledger: %s", exc)
        await asyncio.sleep(SYNC_INTERVAL_S)


def _sync_once(url: str, directory: Path, services: dict[str, str], broker: LocalBroker, seen: tuple | None):
    with psycopg.connect(url) as conn:
        version = ledger_version(conn)
        if version != seen and seen is not None:
            logins = write_files(conn, directory, services)
            broker.reload()
            log.info("broker logins updated from the ledger: %d devices", logins)
    return version
