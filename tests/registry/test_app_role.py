"""Issue 11 §3: the services log in as an application role that owns no table, so the audit log is append-only for
them by privilege, not by a trigger they could disable: `ganzhi db migrate`, run as the owner, grants that role
its rights, the audit log insert and select only."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from core.settings import Settings
from ganzhi.benchkit import free_port
from ganzhi.database import prepare
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from tests.conftest import TLS, account_token, serving_api
from tests.factories import terminal_in


@dataclass(frozen=True)
class Roles:
    owner_url: str
    app_url: str
    app_role: str


def _as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"))


@pytest.fixture(scope="module")
def roles(server_url: str, fresh_database, settings: Settings) -> Iterator[Roles]:
    """A database migrated by the superuser (the tables' owner) for a login role of this run only (roles are the
    cluster's, shared by concurrent test runs)."""
    role, password = f"ganzhi_app_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(role), sql.Literal(password)))
    owner_url = fresh_database()
    app_url = _as_role(owner_url, role, password)
    prepare(owner_url, settings, app_url)
    yield Roles(owner_url, app_url, role)
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


TAMPERING = [
    "update change set actor = 'nobody'",
    "delete from change",
    "truncate change",
    "alter table change disable trigger all",
    "drop trigger change_no_update_delete on change",
    "set session_replication_role = replica",
    "drop table change",
]


@pytest.mark.parametrize("statement", TAMPERING)
def test_the_application_role_cannot_change_the_audit_log(roles: Roles, statement: str):
    with psycopg.connect(roles.app_url, autocommit=True) as app:
        assert app.execute("select current_user, rolsuper from pg_roles where rolname = current_user"
                           ).fetchone() == (roles.app_role, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute(statement)


def test_the_application_role_appends_to_and_reads_the_audit_log(roles: Roles):
    with psycopg.connect(roles.app_url) as app:
        row = app.execute("insert into change (actor, action, object_type, object_code, summary) "
                          "values ('tests', 'create', 'pole', 'P-1', 'a pole') returning id").fetchone()[0]
        app.commit()
        assert app.execute("select actor from change where id = %(id)s", {"id": row}).fetchone() == ("tests",)


def test_the_owner_still_empties_the_audit_log(roles: Roles):
    """Test clean-up truncates the ledger as the owner (a superuser here)."""
    with psycopg.connect(roles.owner_url, autocommit=True) as owner:
        owner.execute("truncate change")


def test_an_ingest_writer_as_the_application_role_stores_a_late_reading(roles: Roles):
    """A reading ten days late needs a partition maintenance did not make ahead; only the owner may add one, so
    the writer has it made by the owner's function."""
    with psycopg.connect(roles.owner_url) as owner:
        code = service.create_terminal(owner, terminal_in("角色测试微站"), Actor("tests"))
        owner.commit()
        terminal_id = owner.execute("select id from terminal where code = %(code)s", {"code": code}).fetchone()[0]
    late = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    with psycopg.connect(roles.app_url) as app:
        Writer().write(app, Batch(readings=[Accepted(terminal_id, code, "a34004", int(late.timestamp() * 1000),
                                                      42.0, None)]))
        assert app.execute("select value from reading where terminal_id = %(id)s", {"id": terminal_id}
                           ).fetchone() == (42.0,)
        owner_of = app.execute("select pg_get_userbyid(relowner) from pg_class where relname = %(name)s",
                               {"name": f"reading_p{late:%Y%m%d}"}).fetchone()
    assert owner_of is not None and owner_of[0] != roles.app_role


@pytest.fixture(scope="module")
def app_api(roles: Roles, broker: tuple[str, int]) -> Iterator[str]:
    """The API logging in to the database as the application role."""
    settings = Settings(database_url=roles.app_url, mqtt_url=f"mqtt://{broker[0]}:{broker[1]}", http_port=free_port())
    with serving_api(settings, roles.app_url) as url:
        yield url


def test_the_api_as_the_application_role_acknowledges_an_alert_into_the_audit_log(roles: Roles, app_api: str):
    with psycopg.connect(roles.owner_url) as owner:
        code = service.create_terminal(owner, terminal_in("角色测试告警微站"), Actor("tests"))
        alert, department = owner.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'device:offline', 'device', 'warning', 'steward', department_code, division_code, now(), 'silent'
              from terminal where code = %(code)s returning id, department_code
            """, {"code": code}).fetchone()
    token = account_token(roles.owner_url, f"role-op-{uuid.uuid4().hex[:8]}", ["operator"], department)
    with httpx.Client(verify=TLS, base_url=app_api, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        done = client.post(f"/api/v1/alerts/{alert}/acknowledge", json={"comment": "on our way"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "acknowledged"
    with psycopg.connect(roles.owner_url) as owner:
        assert owner.execute("select action, after from change where object_type = 'alert' and object_code = "
                             "%(alert)s", {"alert": str(alert)}).fetchall() == [
            ("acknowledge", {"comment": "on our way"})]


def test_migrate_makes_a_missing_services_role_with_its_urls_password(roles: Roles, settings: Settings):
    """The compose deployment names the role and its password in DATABASE_URL only; `ganzhi db migrate`, run as
    a superuser owner, makes it (a DBA's owner without CREATEROLE is told to make it first)."""
    role, password = f"ganzhi_app_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    app_url = _as_role(roles.owner_url, role, password)
    try:
        prepare(roles.owner_url, settings, app_url)
        with psycopg.connect(app_url) as app:
            assert app.execute("select count(*) >= 0 from change").fetchone() == (True,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("delete from change")
    finally:
        with psycopg.connect(roles.owner_url, autocommit=True) as owner:
            owner.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            owner.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_maintenance_makes_the_partitions_ahead_as_the_owner(roles: Roles):
    """`ganzhi maintain` logs in with GANZHI_DATABASE_OWNER_URL: as the services' role it could not add a
    partition (the session's database was prepared three days ahead; maintenance makes seven)."""
    ahead = f"reading_p{dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7):%Y%m%d}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANZHI_")}
    env.update({"DATABASE_URL": roles.app_url, "GANZHI_DATABASE_OWNER_URL": roles.owner_url,
                "GANZHI_PARTITION_PREMAKE_DAYS": "7"})
    process = subprocess.Popen([sys.executable, "-m", "ganzhi", "maintain", "--every", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        made = _wait_for_table(roles.owner_url, ahead, process)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert made, output
    assert made != roles.app_role


def _wait_for_table(url: str, name: str, process: subprocess.Popen, seconds: float = 60) -> str | None:
    """The table's owner once it exists; None if the process ended or the time ran out first."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and process.poll() is None:
            row = conn.execute("select pg_get_userbyid(relowner) from pg_class where relname = %(name)s",
                               {"name": name}).fetchone()
            if row is not None:
                return row[0]
            time.sleep(0.2)
    return None


HIJACKS = [
    "to_char(day date, format text) returns text",
    "format(format text, a text, b text, c text) returns text",
    "format(format text, a text, b text) returns text",
    "quote_ident(name text) returns text",
    "to_date(day text, format text) returns date",
]
"""Functions the services' role could put in schema public (where PostgreSQL ≤ 14 and pg_upgrade'd clusters let
every role create) under the names a partition maker calls, each a closer match than the built-in by a cast."""


@pytest.fixture
def hijacks(roles: Roles) -> Iterator[None]:
    """The services' role with CREATE on schema public, as PostgreSQL ≤ 14 gives every role, has put its own
    functions there; each raises, naming whether it ran as a superuser."""
    role = sql.Identifier(roles.app_role)
    with psycopg.connect(roles.owner_url, autocommit=True) as owner:
        owner.execute(sql.SQL("grant create on schema public to {}").format(role))
    try:
        with psycopg.connect(roles.app_url, autocommit=True) as app:
            for signature in HIJACKS:
                app.execute(f"create function public.{signature} language plpgsql as $$ begin raise exception "
                            "'hijacked: rolsuper %', (select rolsuper from pg_roles where rolname = current_user); "
                            "end $$")
        yield
    finally:
        with psycopg.connect(roles.owner_url, autocommit=True) as owner:
            for signature in HIJACKS:
                owner.execute(f"drop function if exists public.{signature.split(' returns ')[0]}")
            owner.execute(sql.SQL("revoke create on schema public from {}").format(role))


def test_the_partition_maker_runs_none_of_the_services_roles_functions(roles: Roles, hijacks: None):
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=12)
    with psycopg.connect(roles.app_url, autocommit=True) as app:
        app.execute("set datestyle = 'SQL, DMY'")
        assert app.execute("select ensure_reading_partition(%(day)s)", {"day": day}).fetchone() == (True,)
    with psycopg.connect(roles.owner_url) as owner:
        bounds = owner.execute(
            "select pg_get_expr(relpartbound, oid) = format('FOR VALUES FROM (%%L) TO (%%L)', %(day)s::timestamptz, "
            "%(next)s::timestamptz) from pg_class where relname = %(name)s",
            {"day": f"{day} 00:00:00+00", "next": f"{day + dt.timedelta(days=1)} 00:00:00+00",
             "name": f"reading_p{day:%Y%m%d}"}).fetchone()
    assert bounds == (True,)


def test_the_partition_maker_refuses_days_retention_would_not_keep(roles: Roles):
    """Ahead: the ingest stores nothing beyond tomorrow (one more day for clocks); behind: ten years, or back to the
    oldest partition when retention keeps more. Retention drops only days behind, so none is made years ahead."""
    today = dt.datetime.now(dt.UTC).date()
    with psycopg.connect(roles.app_url, autocommit=True) as app:
        def make(days: int) -> bool:
            return app.execute("select ensure_reading_partition(%(day)s)",
                               {"day": today + dt.timedelta(days=days)}).fetchone()[0]

        assert make(2) in (True, False)  # maintenance made days ahead already: an existing one is not refused
        made = {name for (name,) in app.execute("select relname from pg_class where relname like 'reading_p%'")}
        ahead = next(d for d in range(3, 100) if f"reading_p{today + dt.timedelta(days=d):%Y%m%d}" not in made)
        for days in (ahead, 365 * 30, -3661, -20000):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="no readings partition"):
                make(days)
        assert make(-3660) is True
        with psycopg.connect(roles.owner_url, autocommit=True) as owner:  # as a retention of twelve years keeps
            oldest = today - dt.timedelta(days=4400)
            owner.execute(sql.SQL("create table {} partition of reading for values from ({}) to ({})").format(
                sql.Identifier(f"reading_p{oldest:%Y%m%d}"), sql.Literal(f"{oldest} 00:00:00+00"),
                sql.Literal(f"{oldest + dt.timedelta(days=1)} 00:00:00+00")))
        assert make(-4000) is True
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            make(-4401)


def test_migrate_takes_from_every_role_the_right_to_create_in_schema_public(roles: Roles, settings: Settings):
    """PostgreSQL <= 14 (and a cluster pg_upgrade'd from one) lets every role create in schema public, where the
    services' role could shadow a function the owner's code calls."""
    with psycopg.connect(roles.owner_url, autocommit=True) as owner:
        owner.execute("grant create on schema public to public")
        owner.execute(sql.SQL("grant create on schema public to {}").format(sql.Identifier(roles.app_role)))
    try:
        prepare(roles.owner_url, settings, roles.app_url)
        with psycopg.connect(roles.app_url, autocommit=True) as app, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("create function public.quote_ident(name text) returns text language sql as $$ select name $$")
    finally:
        with psycopg.connect(roles.owner_url, autocommit=True) as owner:
            owner.execute("revoke create on schema public from public")
            owner.execute(sql.SQL("revoke create on schema public from {}").format(sql.Identifier(roles.app_role)))
