"""The one runtime of every long-running service process (ingest, HJ 212, rules, fire, ...).

A service's own module keeps only its handlers; this module owns what they all share:
stop signals, dying with the parent, a heartbeat row per process (read by /healthz),
dependencies that fail and recover (logged once each way, never on every retry),
metrics (Prometheus, ``core.metrics``) with the process's own /metrics, /healthz and /readyz
when ``GANZHI_METRICS_PORT`` is set, and a component that dies taking the process down loudly
so that its supervisor (`ganzhi up`, systemd, compose) restarts it, instead of living on silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import psycopg

from core import db
from core.metrics import Check, Endpoint, Metrics, totals_line
from core.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
"""How often a service writes its heartbeat; /healthz calls a service stale after three missed beats."""
LAST_BEAT_S = 3.0
"""How long a stopping service waits for its last heartbeat (``stopped``/``failed``); a database that does not answer
by then does not hold the stop up (CI: children of a killed `up` outlived it by over 10 s)."""
_PR_SET_PDEATHSIG = 1
_DETAIL_TYPES = (str, int, float, bool, type(None))


class Outage:
    """A dependency that can fail: its first failure and its recovery are logged once, not every retry."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.failures = 0
        self._log = logger
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException | str) -> None:
        self.failures += 1
        if self._since is None:
            self._since = time.monotonic()
            self._log.error("%s unavailable: %s; retrying", self.what, str(exc).strip()[:500])

    def recovered(self) -> None:
        if self._since is not None:
            self._log.info("%s back after %.1f s", self.what, time.monotonic() - self._since)
            self._since = None


def wait_unless(event: threading.Event, stop: threading.Event | None, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``, no longer once ``stop`` is set; True when ``event`` is set."""
    deadline = time.monotonic() + seconds
    while not event.is_set() and not (stop and stop.is_set()) and (left := deadline - time.monotonic()) > 0:
        event.wait(min(left, 0.1))
    return event.is_set()


class Service:
    """One long-running process, handed to its main by :func:`run_service` or :func:`run_service_async`."""

    def __init__(self, kind: str, name: str, database_url: str) -> None:
        self.kind = kind
        self.name = name
        self.database_url = database_url
        self.stop = threading.Event()
        self.metrics = Metrics()
        self.checks: dict[str, Check] = {"database": self._database_answers}
        """What /readyz asks: the database by default; a service adds its broker."""
        self.state = "running"
        self.detail: dict[str, object] = {}
        self.exit_code = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- stopping ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop the service (signal handlers call this); wakes sync and async sleepers alike."""
        self.stop.set()
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                self._loop.call_soon_threadsafe(self._wake.set)

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the service is stopping."""
        return self.stop.wait(seconds)

    async def sleep(self, seconds: float) -> bool:
        """The same as :meth:`wait`, for asyncio code."""
        if self._wake is None:
            self._bind_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        return self.stop.is_set()

    def wait_for(self, event: threading.Event, seconds: float) -> bool:
        """Wait for ``event`` at most ``seconds``, no longer once the service is stopping; True when it is set."""
        return wait_unless(event, self.stop, seconds)

    async def until_stopped(self) -> None:
        """Return once the service is stopping (a signal, or a component that failed)."""
        while not await self.sleep(3600):
            pass

    def _bind_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.stop.is_set():
            self._wake.set()

    # -- failures ----------------------------------------------------------------------------------

    def fail(self, component: str, exc: BaseException) -> None:
        """A component of this process died: say so loudly, show it in the heartbeat, stop with exit code 1."""
        log.error("%s: %s died: %s: %s", self.name, component, type(exc).__name__, exc,
                  exc_info=(type(exc), exc, exc.__traceback__))
        self.state = "failed"
        self.detail["failed"] = {"component": component, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
        self.exit_code = 1
        self.request_stop()

    def watch(self, component: str) -> Callable[[asyncio.Task], None]:
        """A done-callback for a task that must run as long as the service: its end is a failure."""

        def done(task: asyncio.Task) -> None:
            if task.cancelled():
                if not self.stop.is_set():
                    self.fail(component, RuntimeError("cancelled while the service runs"))
                return
            exc = task.exception()
            if exc is not None:
                self.fail(component, exc)
            elif not self.stop.is_set():
                self.fail(component, RuntimeError("ended while the service runs"))

        return done

    def add_check(self, name: str, check: Check) -> None:
        """A dependency /readyz asks about (``check`` returns None when it answers, else why not)."""
        self.checks[name] = check

    def _database_answers(self) -> str | None:
        with psycopg.connect(self.database_url, connect_timeout=2) as conn:
            conn.execute("select 1")
        return None

    def set_detail(self, **detail: str | int | float | bool | None) -> None:
        """Extra facts shown with the heartbeat (e.g. connected peers, shard): plain values only, as /healthz
        documents them; anything else is refused here, where the mistake is made, not later in /healthz."""
        wrong = {key: type(value).__name__ for key, value in detail.items() if not isinstance(value, _DETAIL_TYPES)}
        if wrong:
            raise TypeError(f"a heartbeat's detail takes plain values, not {wrong}")
        self.detail.update(detail)

    # -- connections -------------------------------------------------------------------------------

    def connect(self, url: str | None = None, *, autocommit: bool = False,
                what: str = "database") -> psycopg.Connection | None:
        """A connection, retried every second through an outage; None once the service is stopping."""
        outage = Outage(what, log)
        while not self.stop.is_set():
            try:
                conn = psycopg.connect(url or self.database_url, autocommit=autocommit, **db.LINK)
            except psycopg.OperationalError as exc:
                outage.failed(exc)
                self.wait(1.0)
                continue
            outage.recovered()
            return conn
        return None

    async def aconnect(self, url: str | None = None, *, autocommit: bool = False,
                       what: str = "database") -> psycopg.AsyncConnection | None:
        """The same as :meth:`connect`, for asyncio code."""
        outage = Outage(what, log)
        while not self.stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(url or self.database_url, autocommit=autocommit, **db.LINK)
            except psycopg.OperationalError as exc:
                outage.failed(exc)
                await self.sleep(1.0)
                continue
            outage.recovered()
            return conn
        return None


# -- heartbeat ---------------------------------------------------------------------------------------

_UPSERT = """
insert into service_heartbeat (name, kind, host, pid, started_at, beat_at, state, detail, counters)
values (%(name)s, %(kind)s, %(host)s, %(pid)s, now(), now(), %(state)s, %(detail)s, %(counters)s)
on conflict (name) do update
   set kind = excluded.kind, host = excluded.host, pid = excluded.pid,
       started_at = case when service_heartbeat.pid = excluded.pid and service_heartbeat.host = excluded.host
                         then service_heartbeat.started_at else excluded.started_at end,
       beat_at = now(), state = excluded.state, detail = excluded.detail, counters = excluded.counters
"""


class _Heartbeat(threading.Thread):
    """Writes the service's row every few seconds, and once more when it ends (waited for ``LAST_BEAT_S`` at most:
    the thread is a daemon, a database that hangs cannot keep the process alive)."""

    def __init__(self, service: Service, *, beat_first: bool = False) -> None:
        super().__init__(name=f"heartbeat {service.name}", daemon=True)
        self.service = service
        self._beat_first = beat_first
        self._done = threading.Event()
        self._outage = Outage("heartbeat database", log)
        self._conn: psycopg.Connection | None = None

    def run(self) -> None:
        if self._beat_first:
            self.beat()
        while not self._done.wait(HEARTBEAT_S):
            self.beat()
        self.beat(connect_timeout=int(LAST_BEAT_S))
        if self._conn is not None:
            self._conn.close()

    def finish(self) -> None:
        self._done.set()
        self.join(LAST_BEAT_S)
        if self.is_alive():
            log.warning("%s: its last heartbeat was not written within %.0f s", self.service.name, LAST_BEAT_S)

    def beat(self, connect_timeout: int = 5) -> None:
        service = self.service
        params = {"name": service.name, "kind": service.kind, "host": socket.gethostname(), "pid": os.getpid(),
                  "state": service.state, "detail": json.dumps(service.detail, default=str),
                  "counters": json.dumps(service.metrics.totals())}
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(service.database_url, autocommit=True, connect_timeout=connect_timeout)
            self._conn.execute(_UPSERT, params)
        except psycopg.Error as exc:
            self._outage.failed(exc)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return
        self._outage.recovered()


@contextlib.contextmanager
def heartbeat(service: Service) -> Iterator[Service]:
    """A heartbeat row for a part of a larger process (`up`'s broker sync and servers): written every few seconds
    while in the block, once more on leaving it."""
    beating = _Heartbeat(service, beat_first=True)
    beating.start()
    try:
        yield service
    finally:
        if service.state == "running":
            service.state = "stopped"
        beating.finish()


# -- running -----------------------------------------------------------------------------------------

def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (a no-op elsewhere). ``parent``: the pid of
    the process that started this one, when known (a spawned child spends a second importing before it gets
    here, and a parent dead by then is seen only against its own pid); else the parent now."""
    parent = os.getppid() if parent is None else parent
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def serve_endpoint(service: Service, settings: Settings, heartbeat: threading.Thread | None = None) -> Endpoint | None:
    """The service's /metrics, /healthz and /readyz, when ``GANZHI_METRICS_PORT`` is set (0: any free port)."""
    if settings.metrics_port is None:
        return None
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    def health() -> dict:
        alive = service.state == "running" and (heartbeat is None or heartbeat.is_alive())
        return {"status": "ok" if alive else service.state, "name": service.name, "kind": service.kind,
                "pid": os.getpid(), "detail": service.detail}

    return Endpoint(service.metrics, health, lambda: dict(service.checks), settings.metrics_host,
                    settings.metrics_port, token).start()


def _start(kind: str, name: str, database_url: str,
           settings: Settings | None) -> tuple[Service, _Heartbeat, Endpoint | None]:
    die_with_parent()
    service = Service(kind, name, database_url)
    heartbeat = _Heartbeat(service)
    heartbeat.beat()
    heartbeat.start()
    endpoint = serve_endpoint(service, settings, heartbeat) if settings is not None else None
    log.info("%s started (pid %d)", name, os.getpid())
    return service, heartbeat, endpoint


def _end(service: Service, heartbeat: _Heartbeat, endpoint: Endpoint | None, exc: BaseException | None) -> int:
    if exc is not None:
        service.fail("main", exc)
    elif service.state != "failed":
        service.state = "stopped"
    heartbeat.finish()
    if endpoint is not None:
        endpoint.close()
    totals = totals_line(service.metrics.totals())
    log.info("%s %s%s", service.name, "failed" if service.exit_code else "stopped", f": {totals}" if totals else "")
    return service.exit_code


def run_service(kind: str, name: str, database_url: str, main: Callable[[Service], None],
                settings: Settings | None = None) -> int:
    """Run a thread-based service's ``main`` until it returns or a stop signal; returns the exit code.
    With ``settings``, its metrics endpoint is served when they ask for one."""
    service, heartbeat, endpoint = _start(kind, name, database_url, settings)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.request_stop())
    error: BaseException | None = None
    try:
        main(service)
    except Exception as exc:  # the process ends either way; the supervisor must learn why
        error = exc
    return _end(service, heartbeat, endpoint, error)


STOP_GRACE_S = 5.0
"""How long an asyncio service's main may take to finish once asked to stop; then it is cancelled (a main waiting
on a database that died with ``ganzhi up``, e.g. for a pool's connection, would otherwise outlive its parent)."""


async def _within_grace(service: Service, running: asyncio.Future) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(running), STOP_GRACE_S)
    except TimeoutError:
        log.warning("%s did not finish within %.0f s of being asked to stop: cancelled", service.name, STOP_GRACE_S)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def run_service_async(kind: str, name: str, database_url: str,
                      main: Callable[[Service], Awaitable[None]], settings: Settings | None = None) -> int:
    """Run an asyncio service's ``main``; a stop signal sets ``service.stop`` and wakes ``service.sleep``."""
    service, heartbeat, endpoint = _start(kind, name, database_url, settings)

    async def body() -> None:
        service._bind_loop()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.request_stop)
        running = asyncio.ensure_future(main(service))
        stopping = asyncio.ensure_future(service.until_stopped())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not running.done():
            await _within_grace(service, running)
        if not running.cancelled():
            await running

    error: BaseException | None = None
    try:
        asyncio.run(body())
    except Exception as exc:  # the process ends either way; the supervisor must learn why
        error = exc
    return _end(service, heartbeat, endpoint, error)
