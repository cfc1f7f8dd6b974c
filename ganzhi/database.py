"""Bringing a database to the current schema: migrations of every package, then reference data."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

import alerts
import analytics
import core
import ingest
import registry
from core import db
from core.migrate import Migration, MigrationError, migrate
from core.settings import Settings
from ingest import store
from registry import reference

log = logging.getLogger(__name__)

MIGRATION_DIRS: list[Path] = [
    Path(core.__file__).with_name("migrations"),
    Path(registry.__file__).with_name("migrations"),
    Path(ingest.__file__).with_name("migrations"),
    Path(analytics.__file__).with_name("migrations"),
    Path(alerts.__file__).with_name("migrations"),
]


AUDIT_LOG = "change"
"""The append-only audit log: the application role may insert and read it, nothing more."""


def prepare(url: str, settings: Settings, services_url: str | None = None) -> list[Migration]:
    """Wait for the server, migrate, seed reference data and make the readings partitions, as the tables' owner
    (``url``); when the services log in as another role (``services_url``), grant it the application's rights."""
    db.wait_for_database(url)
    role = application_role(url, services_url)
    with db.connect(url) as conn:
        applied = migrate(conn, MIGRATION_DIRS)
        reference.seed(conn)
        store.maintain(conn, settings.retention_days, settings.partition_premake_days,
                       dead_letter_days=settings.dead_letter_retention_days)
        if role is not None:
            grant_application_rights(conn, role, urlsplit(services_url).password)
        conn.commit()
    for migration in applied:
        log.info("applied %04d_%s", migration.version, migration.name)
    return applied


def application_role(owner_url: str, services_url: str | None) -> str | None:
    """The role the services log in as, when it is not the owner's."""
    if services_url is None:
        return None
    role = urlsplit(services_url).username
    return role if role and role != urlsplit(owner_url).username else None


def grant_application_rights(conn: psycopg.Connection, role: str, password: str | None) -> None:
    """Reading and writing every table, now and the owner's future ones, but only inserting into and reading the
    audit log; the role owns nothing, so it cannot drop, truncate or alter a table, nor disable a trigger. Nor may
    it create in schema public (PostgreSQL <= 14 and clusters upgraded from it let every role), where a function of
    its own could shadow one the owner's code calls by a cast. Repeated by every `ganzhi db migrate`, after the
    migrations (a table they made is covered at once). A missing role is made, with DATABASE_URL's password, when
    the owner may make roles."""
    if conn.execute("select 1 from pg_roles where rolname = %(role)s", {"role": role}).fetchone() is None:
        _create_login_role(conn, role, password)
    grants = [
        "grant create on schema public to current_user",  # an owner who is not the schema's keeps its right
        "revoke create on schema public from public",
        "revoke create on schema public from {role}",
        "grant usage on schema public to {role}",
        "grant select, insert, update, delete on all tables in schema public to {role}",
        "grant usage, select on all sequences in schema public to {role}",
        "alter default privileges in schema public grant select, insert, update, delete on tables to {role}",
        "alter default privileges in schema public grant usage, select on sequences to {role}",
        "revoke update, delete, truncate, references, trigger on {audit} from {role}",
        "revoke insert, update, delete, truncate on schema_migration from {role}",
        "grant execute on function {maker}(date) to {role}",
    ]
    names = {"role": sql.Identifier(role), "audit": sql.Identifier(AUDIT_LOG),
             "maker": sql.Identifier(store.PARTITION_MAKER)}
    with conn.transaction():
        for grant in grants:
            conn.execute(sql.SQL(grant).format(**names))
    log.info("database role %s: the application's rights (the audit log: insert and select only)", role)


def _create_login_role(conn: psycopg.Connection, role: str, password: str | None) -> None:
    may = conn.execute("select rolsuper or rolcreaterole from pg_roles where rolname = current_user").fetchone()[0]
    if not may:
        raise MigrationError(f"the services' database role {role!r} (DATABASE_URL) does not exist and the owner may "
                             "not create roles; create it as docs/deploy.md, Database roles, shows")
    conn.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(role), sql.Literal(password)))
    log.info("created the services' database role %s", role)
