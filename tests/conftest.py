"""Test services: a real PostgreSQL (DATABASE_URL, else an embedded server), a real
mosquitto started with the project's configuration, and the API over real HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql

from api.app import create_app
from core.broker import LocalBroker
from core.embedded import EmbeddedPostgres
from core.migrate import migrate
from core.settings import Settings, get_settings
from ganzhi.benchkit import free_port
from ganzhi.database import MIGRATION_DIRS, prepare
from registry import accounts
from registry.changes import Actor
from registry.lookups import forget_divisions
from tests.mqtt import AuthBroker

TLS: ssl.SSLContext = httpx.create_ssl_context()
"""The one TLS context of every test client (``verify=TLS``): httpx builds one for each client it makes, loading
the CA bundle each time (130 ms a client at load 12, measured 2026-12-01), and the tests' clients speak plain HTTP
to a local server anyway."""

LEDGER_TABLES = (
    "terminal", "pole", "change", "sharing_grant", "code_sequence", "reading", "latest_reading", "latest_debt",
    "latest_debt_run", "device_state", "dead_letter", "device_credential", "alert", "alert_event", "incident",
    "rule_state", "rule_cursor", "rule_watermark", "fire_evidence", "fire_detection", "fire_event", "heat_source",
    "service_heartbeat",
)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory) -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL's, or an embedded one for this run."""
    configured = get_settings().database_url
    if configured:
        try:
            psycopg.connect(configured, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            pytest.exit(f"DATABASE_URL={configured} is not reachable: {exc}", returncode=3)
        yield configured
        return
    data_dir = Path("/tmp") / f"ganzhi-test-pg-{uuid.uuid4().hex[:8]}"
    server = EmbeddedPostgres(data_dir, free_port())
    url = server.start()
    yield url
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def fresh_database(server_url: str):
    """A factory of databases on the test server, empty or copies of ``template``, dropped at the end of the
    run."""
    created: list[str] = []

    def make(template: str | None = None) -> str:
        name = f"ganzhi_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            statement = sql.SQL("create database {}").format(sql.Identifier(name))
            if template is not None:
                statement += sql.SQL(" template {}").format(sql.Identifier(urlsplit(template).path.lstrip("/")))
            admin.execute(statement)
        created.append(name)
        return with_database(server_url, name)

    yield make
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(functools.partial(_drop_database, server_url), created))


def _drop_database(server_url: str, name: str) -> None:
    """Each DROP DATABASE waits for a checkpoint of its own (PostgreSQL 15): one after another, the run's few dozen
    databases took most of a minute on the loaded box; dropped side by side they share checkpoints."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(database_url=None, mqtt_url=None, retention_days=30, partition_premake_days=3)


@pytest.fixture(scope="session")
def migrated_database(fresh_database) -> Callable[[], str]:
    """A factory of new databases with the project's migrations applied: copies of one migrated once (migrating
    takes seconds, a copy a fraction of one). Nothing may stay connected to the original."""
    template = fresh_database()
    with psycopg.connect(template) as conn:
        migrate(conn, MIGRATION_DIRS)
    return lambda: fresh_database(template)


@pytest.fixture(scope="session")
def prepared_database(fresh_database, settings: Settings) -> Callable[[], str]:
    """A factory of new databases as `prepare` leaves them (migrated, reference data, partitions): copies of one
    prepared once."""
    template = fresh_database()
    prepare(template, settings)
    return lambda: fresh_database(template)


@pytest.fixture(scope="session")
def db_url(fresh_database, settings: Settings) -> str:
    """The session's database, migrated once with reference data."""
    url = fresh_database()
    prepare(url, settings)
    return url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection to the session database; the ledger is emptied after the test."""
    with psycopg.connect(db_url) as connection:
        yield connection
        connection.rollback()
    _empty_ledger(db_url)


def _empty_ledger(url: str, attempts: int = 5) -> None:
    """Empty the ledger; session-scoped services (the broker's account sync) read these tables
    meanwhile, and a TRUNCATE's locks taken in table order can deadlock with a reader, so it is retried."""
    for attempt in range(attempts):
        try:
            with psycopg.connect(url, autocommit=True) as c:
                _truncate_filled(c)
                c.execute("delete from division where level in ('grid')")
                c.execute("delete from division where level in ('township')")
            break
        except psycopg.errors.DeadlockDetected:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    forget_divisions()


def _truncate_filled(c: psycopg.Connection) -> None:
    """TRUNCATE the ledger's tables that hold rows (with what references them), and restart the ids of every one
    of them and of every table referencing them, as ``truncate … restart identity cascade`` of all did: that took
    0.1–1 s after each of hundreds of tests that wrote to two or three (the reading's partitions among them)."""
    filled = c.execute(sql.SQL(" union all ").join(
        sql.SQL("select {} where exists (select from {})").format(sql.Literal(name), sql.Identifier(name))
        for name in LEDGER_TABLES)).fetchall()
    if filled:
        c.execute(sql.SQL("truncate {} restart identity cascade").format(
            sql.SQL(", ").join(sql.Identifier(name) for (name,) in filled)))
    c.execute("""
        with recursive reached(rel) as (
            select oid from pg_class
             where relnamespace = current_schema()::regnamespace and relname = any(%(names)s)
            union
            select con.conrelid from pg_constraint con join reached on con.confrelid = reached.rel
             where con.contype = 'f')
        select setval(d.objid::regclass, s.seqstart, false)
          from reached
          join pg_depend d on d.refobjid = reached.rel and d.classid = 'pg_class'::regclass
                          and d.deptype in ('a', 'i')
          join pg_sequence s on s.seqrelid = d.objid
        """, {"names": list(LEDGER_TABLES)})


@pytest.fixture(scope="session")
def broker() -> Iterator[tuple[str, int]]:
    """A mosquitto with the project's configuration on a free port."""
    if shutil.which("mosquitto") is None:
        pytest.exit("mosquitto is not installed; .ci/run installs it (apt-get install mosquitto)", returncode=3)
    port = free_port()
    # Not under pytest's 0700 tmp: as root, mosquitto drops to its own user, which must reach its files.
    data_dir = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-"))
    local = LocalBroker(data_dir, port)
    asyncio.run(local.start())
    yield "127.0.0.1", port
    asyncio.run(local.stop())
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def auth_broker(db_url: str) -> Iterator[AuthBroker]:
    """A mosquitto that admits only the ledger's devices and the platform's service account."""
    if shutil.which("mosquitto") is None:
        pytest.exit("mosquitto is not installed; .ci/run installs it (apt-get install mosquitto)", returncode=3)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-auth-"))
    root.chmod(0o755)
    auth = AuthBroker.start(db_url, root)
    yield auth
    auth.stop()
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def serving_api(settings: Settings, url: str, **config) -> Iterator[str]:
    """The API served by uvicorn on ``settings.http_port``, in a thread of the test process; its base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings, url), host="127.0.0.1", port=settings.http_port,
                                           log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.http_port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def api_process(url: str, broker: tuple[str, int], log: Path) -> Iterator[str]:
    """`ganzhi api` against the database at ``url``, in a process of its own on a free port; its base URL. A test
    that keeps its own process busy (generating requests) does not slow such a server down, as it does one in a
    thread of its own (one GIL). Its log (JSON lines, warnings and errors) goes to ``log`` and is printed when it
    stops: pytest shows it with a failure."""
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": url, "MQTT_URL": f"mqtt://{broker[0]}:{broker[1]}",
                   "GANZHI_HTTP_HOST": "127.0.0.1", "GANZHI_HTTP_PORT": str(port), "GANZHI_LOG_FORMAT": "json",
                   "GANZHI_LOG_LEVEL": "WARNING"}
    for overriding in ("GANZHI_DATABASE_URL", "GANZHI_MQTT_URL"):
        environment.pop(overriding, None)
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ganzhi", "api"], env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_answering(base, process, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"ganzhi api's log:\n{log.read_text(errors='replace')}")


def _wait_answering(base: str, process: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    """Until /healthz answers 200 (importing and starting take seconds, more on a loaded box)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ganzhi api exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=5, verify=TLS).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"ganzhi api did not answer within {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def api_url(db_url: str, broker: tuple[str, int]) -> Iterator[str]:
    """The API served by uvicorn on a free port, in a thread of the test process."""
    settings = Settings(database_url=db_url, mqtt_url=f"mqtt://{broker[0]}:{broker[1]}", http_port=free_port())
    with serving_api(settings, db_url) as url:
        yield url


def account_token(url: str, login: str, roles: list[str], department: str | None = None,
                  kind: str = "service") -> str:
    """A new account with these roles (a system's, or a person's without a password) and an API token for it
    (the token's secret)."""
    with psycopg.connect(url) as c:
        setup = Actor("tests")
        accounts.add_account(c, login=login, name=login, department=department, roles=roles, kind=kind,
                             password=None, actor=setup)
        return accounts.issue_token(c, login, "tests", None, setup)[1]


@pytest.fixture(scope="session")
def admin_token(db_url: str) -> str:
    """A platform admin's API token, made once per session."""
    return account_token(db_url, "test-admin", ["platform_admin"])


@pytest.fixture
def http(api_url: str, db_url: str, admin_token: str) -> Iterator[httpx.Client]:
    """An HTTP client to the API, authenticated as the platform admin; the ledger is emptied after the test."""
    with httpx.Client(base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {admin_token}"},
                      verify=TLS) as client:
        yield client
    _empty_ledger(db_url)
