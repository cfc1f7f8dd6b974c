"""`ganzhi up`: the whole platform on one machine, on embedded defaults.

Starts (unless DATABASE_URL / MQTT_URL point elsewhere) an embedded PostgreSQL and a
local MQTT broker whose logins come from the ledger, migrates, loads the demo ledger into
an empty database, starts the ingest workers and (with the demo) the device simulators,
serves the API, runs the maintenance worker (partitions, rollups), restarts whatever of it dies (workers,
the embedded PostgreSQL, mosquitto, the broker sync), and on Ctrl-C or SIGTERM stops everything it started,
in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import signal
import socket
import threading
import types
from collections.abc import Awaitable, Callable

import uvicorn

from core import db
from core.broker import BrokerMissing, LocalBroker
from core.embedded import EmbeddedPostgres, stop_leftover
from core.runtime import Service, heartbeat
from core.settings import Settings, UnsafeSettings
from ganzhi import broker_auth, database
from ganzhi.account_commands import ADMIN_LOGIN, ADMIN_SECRET_FILE, ensure_first_admin
from ganzhi.children import Child, Server, keep_running

log = logging.getLogger(__name__)

SIMULATOR_SPEED = 10
"""The demo fleet reports ten times faster than real devices, so data shows within a minute."""
TRUTH_FILE = "truth.jsonl"
"""In the data directory: the demo fleet's injected faults and events (``simulators.truth``), appended by every
simulator `up` starts, so that the running demo's alerts can be scored (`ganzhi bench alert-quality --truth`)."""
DEMO_TOWERS = 2
"""Camera towers streaming synthetic scenes (a straw fire among them) to the fire worker."""
OWNER_URL_VARIABLE = "GANZHI_DATABASE_OWNER_URL"
OWNER_COMMANDS = frozenset({"maintain"})
"""The workers that act as the tables' owner (partitions); the others must not hold its URL."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `up` owns the signals and the shutdown order; ``listening`` is set
    once it has started and listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.listening.set()


async def _listening(server: _Server, serving: asyncio.Task, stop: asyncio.Event) -> bool:
    """Whether the API listens; false when its server ended first (say, its port is taken) or a stop came while
    it started (its lifespan may wait 30 s for the database: the other workers are not started to be killed)."""
    listening = asyncio.create_task(server.listening.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({listening, serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    stopping.cancel()
    return server.listening.is_set() and not stop.is_set()


async def run(settings: Settings, *, load_demo: bool, simulate: bool) -> None:
    try:
        settings.require_own_secrets(demo=load_demo)
    except UnsafeSettings as exc:
        raise SystemExit(str(exc)) from exc
    if not settings.database_url:  # a server a killed `up` left behind still holds the port for a moment
        await asyncio.to_thread(stop_leftover, (settings.var_dir / "pgdata").resolve())
    _require_free_ports(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else secrets.token_urlsafe(24)
    api = asyncio.create_task(_import_api())  # meanwhile: the database, the broker and the workers come first
    async with contextlib.AsyncExitStack() as stack:
        url, owner_url, embedded = await _database(settings, stack)
        await asyncio.to_thread(database.prepare, owner_url, settings, url)
        if embedded is not None:  # watched once its heartbeat has a table to go to
            _supervise_database(stack, embedded, url)
        if admin_file := await asyncio.to_thread(ensure_first_admin, url, settings.var_dir):
            log.info("First run: log in as 'admin' with the password in %s (see README, Logging in)", admin_file)
        if load_demo:
            await asyncio.to_thread(_load_demo_if_empty, url, settings)
        mqtt_url = await _broker(settings, stack, url, password)
        readings_path, others = _children(stack, _worker_commands(settings, simulate),
                                          _child_environment(url, mqtt_url, password), owner_url,
                                          settings.background_nice)
        await _start(readings_path)
        server = _Server(uvicorn.Config((await api).create_app(settings, url), host=settings.http_host,
                                        port=settings.http_port, log_level="warning", lifespan="on",
                                        forwarded_allow_ips=settings.forwarded_allow_ips))
        serving = asyncio.create_task(server.serve())
        if await _listening(server, serving, stop):
            log.info("Ganzhi is up: API on http://%s:%d (docs at /docs); Ctrl-C stops it%s",
                     settings.http_host, settings.http_port,
                     f"; the simulators' ground truth goes to {settings.var_dir / TRUTH_FILE} (ganzhi bench "
                     f"alert-quality --truth {settings.var_dir / TRUTH_FILE})" if simulate else "")
            _print_dashboard(settings)
            await _start(others)
        await _wait_for(stop, serving)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
    log.info("Ganzhi stopped")


async def _import_api() -> types.ModuleType:
    """``api.app``, imported in a thread: seconds of CPU (15 s at load 10 on two cores) that no longer stand
    between a restarted `up` and its workers (issue 10 §6: ingest back within 10 s)."""
    return await asyncio.to_thread(importlib.import_module, "api.app")


def _print_dashboard(settings: Settings) -> None:
    """Where a newcomer goes next, on stdout: the dashboard and how to log in to it."""
    secret = settings.var_dir / ADMIN_SECRET_FILE
    login = (f"log in as '{ADMIN_LOGIN}' with the password in {secret} (cat {secret})" if secret.exists()
             else "log in with your account (ganzhi user add makes one)")
    print(f"\n  Dashboard 态势大屏: http://{settings.http_host}:{settings.http_port}/dashboard/\n  {login}\n",
          flush=True)


def _require_free_ports(settings: Settings) -> None:
    """Fail before starting anything when a port we would listen on is taken."""
    wanted = [("GANZHI_HTTP_PORT", settings.http_host, settings.http_port),
              ("GANZHI_HJ212_PORT", settings.hj212_host, settings.hj212_port)]
    if not settings.database_url:
        wanted.append(("GANZHI_EMBEDDED_PG_PORT", "127.0.0.1", settings.embedded_pg_port))
    if not settings.mqtt_url:
        wanted.append(("GANZHI_EMBEDDED_MQTT_PORT", "127.0.0.1", settings.embedded_mqtt_port))
    for variable, host, port in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise SystemExit(f"port {host}:{port} is in use ({exc.strerror}); set {variable} to another") from exc


class EmbeddedServer:
    """The embedded PostgreSQL as `up` starts, restarts and stops it. A restart runs in a thread that cannot be
    cancelled: a stop waits for it to end, then stops what it started, and a start after the stop starts nothing
    (a Ctrl-C during a restart used to find the dead postmaster, return, and leave the new one running)."""

    def __init__(self, server: EmbeddedPostgres) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def exit_code(self) -> int | None:
        return self.server.exit_code

    def start(self) -> str:
        """The superuser's URL, once the server runs (or once `up` stops: then nothing is started)."""
        with self._lock:
            if not self._stopped:
                self.server.start()
            return self.server.url

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self.server.stop()


async def _database(settings: Settings,
                    stack: contextlib.AsyncExitStack) -> tuple[str, str, EmbeddedServer | None]:
    """The services' URL, the tables' owner's (migrations, maintenance), and the embedded server when `up` runs
    one (its ``ganzhi_app`` role and its superuser)."""
    if settings.database_url:
        return settings.database_url, settings.database_owner_url or settings.database_url, None
    server = EmbeddedServer(EmbeddedPostgres(settings.var_dir / "pgdata", settings.embedded_pg_port))
    stack.push_async_callback(asyncio.to_thread, server.stop)
    owner_url = await asyncio.to_thread(server.start)
    return await asyncio.to_thread(server.server.application_url), owner_url, server


def _supervise_database(stack: contextlib.AsyncExitStack, embedded: EmbeddedServer, url: str) -> None:
    postgres = Server(Service("database", "embedded postgres", url), lambda: embedded.exit_code,
                      lambda: asyncio.to_thread(embedded.start))
    _supervise(stack, postgres.service, postgres.watch)


def _supervise(stack: contextlib.AsyncExitStack, service: Service, watch: Callable[[], Awaitable[None]]) -> None:
    """Run ``watch`` (which restarts what it watches) with a heartbeat row for /healthz, until `up` stops; it and
    its heartbeat end before what was started earlier (the server it watches, the database) stops."""
    stack.enter_context(heartbeat(service))
    watching = asyncio.create_task(watch())
    watching.add_done_callback(_loudly(service))
    stack.push_async_callback(_cancel, watching)


def _loudly(service: Service) -> Callable[[asyncio.Task], None]:
    """A supervisor that dies is a bug: logged with its traceback, and shown as failed in its heartbeat."""

    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            service.fail("supervisor", exc)

    return done


async def _broker(settings: Settings, stack: contextlib.AsyncExitStack, url: str, password: str) -> str:
    """The broker's URL; a local mosquitto admits only the ledger's devices
    and the platform's service account, and follows the ledger at once (``broker_auth.keep_in_step``)."""
    if settings.mqtt_url:
        return settings.mqtt_url
    admin_secret = secrets.token_urlsafe(24)  # this run's broker sync only: never handed to a child
    accounts = broker_auth.platform_accounts(settings.mqtt_username, password, admin_secret)
    with db.connect(url) as conn:
        auth = broker_auth.write_files(conn, settings.var_dir / "mqtt-auth", accounts)
    log.info("broker logins from the ledger: %d devices", len(auth.logins))
    broker = LocalBroker(settings.var_dir / "mqtt", settings.embedded_mqtt_port, settings.embedded_mqtt_bind,
                         auth.directory)
    try:
        await broker.start()
    except BrokerMissing as exc:
        raise SystemExit(str(exc)) from exc
    stack.push_async_callback(broker.stop)
    mosquitto = Server(Service("broker", "embedded mosquitto", url), lambda: broker.exit_code, broker.start)
    _supervise(stack, mosquitto.service, mosquitto.watch)
    sync = Service("broker-sync", "broker sync", url)
    _supervise(stack, sync, lambda: keep_running(sync, lambda: _keep_in_step(url, auth, broker, sync)))
    return f"mqtt://127.0.0.1:{settings.embedded_mqtt_port}"


async def _keep_in_step(url: str, auth: broker_auth.BrokerAuth, broker: LocalBroker, sync: Service) -> None:
    await broker_auth.keep_in_step(url, auth, broker, service=sync)


def _child_environment(url: str, mqtt_url: str, password: str) -> dict[str, str]:
    """The workers' environment: the platform's service account, never the broker sync's, nor the tables' owner's
    URL (``_child`` gives that to the commands in ``OWNER_COMMANDS`` alone)."""
    env = {name: value for name, value in os.environ.items() if name != OWNER_URL_VARIABLE}
    env.update({"DATABASE_URL": url, "MQTT_URL": mqtt_url, "GANZHI_MQTT_PASSWORD": password})
    return env


def _child(n: int, name: str, args: list[str], env: dict[str, str], owner_url: str, nice: int) -> Child:
    """The n-th worker; with the tables' owner's URL when it is a command that needs it (the superuser's, for the
    embedded server); below normal CPU priority by ``nice`` unless it stores readings or stands in for devices."""
    if args[0] in OWNER_COMMANDS:
        env = {**env, OWNER_URL_VARIABLE: owner_url}
    full_priority = args[0] in READINGS_PATH or args[0] in FIELD
    return Child(name, args, _metrics_port(env, n, name), 0 if full_priority else nice)


def _worker_commands(settings: Settings, simulate: bool) -> list[tuple[str, list[str]]]:
    """Every worker process `up` runs, as (name, `ganzhi` arguments)."""
    commands = [(f"ingest worker {n}", ["ingest", "--client-id", f"ganzhi-ingest-{n}"])
                for n in range(1, settings.ingest_workers + 1)]
    commands += [(f"rule worker {n}", ["analytics", "--name", f"ganzhi-rules-{n}"])
                 for n in range(1, settings.analytics_workers + 1)]
    commands += [(f"HJ 212 gateway {n}", ["hj212", "--instance", str(n)])
                 for n in range(1, settings.hj212_workers + 1)]  # SO_REUSEPORT
    commands.append(("fire worker", ["fire"]))
    commands.append(("dispatch sweep", ["dispatch-sweep"]))  # escalates overdue dispatch tasks
    commands.append(("delivery worker", ["deliver"]))  # webhooks and SMS; one only (it holds a lock)
    commands.append(("maintenance", ["maintain"]))  # the readings' hourly and daily rollups
    if simulate:  # the demo fleet, with a few pollution events and gas leaks so that alerts show too
        commands.append(("device simulator", ["simulate", "--speed", str(SIMULATOR_SPEED), "--fault", "pollution",
                                              "--fault-share", "0.03", "--towers", str(DEMO_TOWERS),
                                              "--truth", str((settings.var_dir / TRUTH_FILE).resolve())]))
    return commands


READINGS_PATH = frozenset({"ingest", "hj212"})
"""The workers that store readings: started before the API is served and before the other workers (rules, fire,
dispatch, delivery, maintenance, simulators), so that after a restart of `up` the CPU goes to them first, and run
at full CPU priority while the others run ``background_nice`` below it: on a box short of CPU, readings are
stored first and judged after (docs/operations.md, CPU priority)."""
FIELD = frozenset({"simulate"})
"""Stand-ins for the field's devices: never slowed down by the platform's priorities."""


def _children(stack: contextlib.AsyncExitStack, commands: list[tuple[str, list[str]]], env: dict[str, str],
              owner_url: str, nice: int) -> tuple[list[Child], list[Child]]:
    """The workers, those on the readings' path first; on the way out all are stopped at once."""
    children = [_child(n, name, args, env, owner_url, nice) for n, (name, args) in enumerate(commands, 1)]

    async def stop_all() -> None:
        await asyncio.gather(*(child.stop() for child in children))

    stack.push_async_callback(stop_all)
    readings_path = [child for child in children if child.args[0] in READINGS_PATH]
    return readings_path, [child for child in children if child not in readings_path]


async def _start(children: list[Child]) -> None:
    for child in children:
        await child.start()


def _metrics_port(env: dict[str, str], n: int, name: str) -> dict[str, str]:
    """The n-th child's /metrics, /healthz and /readyz on GANZHI_METRICS_PORT + n (unset or 0: as it is)."""
    base = env.get("GANZHI_METRICS_PORT")
    if not base or base == "0":
        return env
    port = int(base) + n
    log.info("%s: metrics on port %d", name, port)
    return {**env, "GANZHI_METRICS_PORT": str(port)}


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _load_demo_if_empty(url: str, settings: Settings) -> None:
    with db.connect(url) as conn:
        if conn.execute("select exists (select 1 from terminal)").fetchone()[0]:
            return
        from registry import demo  # numpy and the ledger's writers: only for an empty ledger, not on every restart

        poles, terminals = demo.load(conn, secret_key=settings.demo_secret.get_secret_value())
        log.info("loaded the Suihua demo ledger: %d poles, %d terminals", poles, terminals)


async def _wait_for(stop: asyncio.Event, serving: asyncio.Task) -> None:
    """Until a stop signal, or the API server ending by itself (say, its port is taken)."""
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopping, serving}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if serving in done and not stop.is_set():
        log.error("the API server stopped unexpectedly (is port in use?); shutting down")
