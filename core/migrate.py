"""Forward-only, versioned SQL migrations.

Each package that owns tables keeps ``migrations/NNNN_name.sql``; versions are unique
across packages and applied in order, each in its own transaction together with its row
in ``schema_migration``. A session advisory lock serialises concurrent runs, so running
``ganzhi db migrate`` twice, or from two processes at once, is safe. A migration edited
after it was applied is refused (its checksum no longer matches), unless the edit kept the schema it
makes and the file names the checksum it had with a ``-- replaces checksum <sha256>`` line.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x47414E5A  # "GANZ"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REPLACES_RE = re.compile(r"^-- replaces checksum ([0-9a-f]{64})$", re.MULTILINE)


class MigrationError(RuntimeError):
    """A migration set that cannot be applied as it is."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def accepted_checksums(self) -> set[str]:
        """This text's checksum and those of earlier texts it replaces (same schema, rewritten)."""
        return {self.checksum, *_REPLACES_RE.findall(self.sql)}


def discover(dirs: list[Path]) -> list[Migration]:
    """All migrations in ``dirs``, ordered by version; a repeated version is an error."""
    found: dict[int, Migration] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.sql")):
            match = _FILE_RE.match(path.name)
            if match is None:
                raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql ({path})")
            version = int(match.group(1))
            if version in found:
                raise MigrationError(f"migration version {version:04d} appears twice: {found[version].path}, {path}")
            found[version] = Migration(version, match.group(2), path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(conn: psycopg.Connection, dirs: list[Path]) -> list[Migration]:
    """Apply every pending migration; returns the ones applied by this call."""
    migrations = discover(dirs)
    conn.autocommit = True
    conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(
            """
            create table if not exists schema_migration (
                version    integer primary key,
                name       text not null,
                checksum   text not null,
                applied_at timestamptz not null default now()
            )
            """
        )
        applied = dict(conn.execute("select version, checksum from schema_migration").fetchall())
        _check_unchanged(migrations, applied)
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            _apply(conn, migration)
            done.append(migration)
        return done
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
        conn.autocommit = False


def _check_unchanged(migrations: list[Migration], applied: dict[int, str]) -> None:
    known = {m.version for m in migrations}
    for migration in migrations:
        stored = applied.get(migration.version)
        if stored is not None and stored not in migration.accepted_checksums:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was edited after it was applied; "
                "write a new migration instead"
            )
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(f"database has migrations this code does not know: {unknown}; upgrade the code")


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    log.info("applying migration %04d_%s", migration.version, migration.name)
    with conn.transaction():
        conn.execute(migration.sql)
        conn.execute(
            "insert into schema_migration (version, name, checksum) values (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
