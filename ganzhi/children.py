"""Worker processes and servers that `up` starts, restarts when they die, and stops in order."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from core.lifeline import dying_with_parent
from core.runtime import Outage, Service

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
HEALTHY_RUN_S = 60.0
"""A child that ran this long before exiting is restarted at once, and its backoff starts over."""
POLL_S = 0.5
"""How often a server's process is looked at."""


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``signal SIGKILL``, from a returncode (negative for a signal)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Backoff:
    """How long to wait before starting a child that exited: not at all after a healthy run (``HEALTHY_RUN_S`` or
    longer: a kill, an out-of-memory), else ``FIRST_DELAY_S``, doubling up to ``MAX_DELAY_S`` while it keeps dying
    early (a crash loop)."""

    def __init__(self) -> None:
        self._next = FIRST_DELAY_S

    def after(self, ran_s: float) -> float:
        """The delay before the next start, for a run that lasted ``ran_s``."""
        if ran_s >= HEALTHY_RUN_S:
            self._next = FIRST_DELAY_S
            return 0.0
        delay, self._next = self._next, min(self._next * 2, MAX_DELAY_S)
        return delay


class Child:
    """One `ganzhi …` subcommand run as a child process, restarted with backoff if it exits on its own.

    The child gets SIGTERM when this process dies, however it dies (``core.lifeline``). It runs in a session of
    its own: Ctrl-C in the terminal reaches `up` alone, which stops the workers before the broker they talk to
    (else the broker went at the same time, and 1,600 simulated devices each reported their lost connection)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], nice: int = 0) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.nice = nice
        """Runs this much below normal CPU priority (``os.nice``)."""
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        """How often the child exited on its own and was started again."""
        self._stopping = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            started = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "ganzhi", *self.args,
                                                                env=self.env, preexec_fn=dying_and_niced(self.nice),
                                                                start_new_session=True)
            log.info("%s: process %d started", self.name, self.process.pid)
            code = await self.process.wait()
            if self._stopping:
                return
            ran = time.monotonic() - started
            delay = backoff.after(ran)
            self.restarts += 1
            log.error("%s (pid %d) exited with %s after %.1f s; restart %d in %.0f s", self.name, self.process.pid,
                      describe_exit(code), ran, self.restarts, delay)
            await asyncio.sleep(delay)

    async def stop(self, timeout_s: float = 20.0) -> None:
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                log.warning("%s did not stop in %.0f s; killing it", self.name, timeout_s)
                self.process.kill()
                await self.process.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.restarts:
            log.info("%s was restarted %d times", self.name, self.restarts)


def dying_and_niced(nice: int) -> Callable[[], None]:
    """Between fork and exec: die with us, and lower the CPU priority by ``nice`` (both are plain system calls)."""
    request = dying_with_parent()

    def prepare() -> None:
        request()
        if nice:
            os.nice(nice)

    return prepare


class Server:
    """A server `up` runs itself (mosquitto, the embedded PostgreSQL): started again with backoff when its process
    dies, its death and its recovery logged once each (not every attempt), its restarts in its heartbeat's detail.

    ``exit_code`` is None while the process runs; ``start`` starts it again, raising when it cannot."""

    def __init__(self, service: Service, exit_code: Callable[[], int | None],
                 start: Callable[[], Awaitable[None]]) -> None:
        self.service = service
        self._exit_code = exit_code
        self._start = start
        self.restarts = 0
        self._outage = Outage(service.name, log)
        service.set_detail(restarts=0)

    async def watch(self) -> None:
        """Until cancelled: wait for the process to die, then start it again."""
        delay = FIRST_DELAY_S
        since = time.monotonic()
        while True:
            code = await self._death()
            if time.monotonic() - since >= HEALTHY_RUN_S:
                delay = FIRST_DELAY_S
            self._outage.failed(f"exited with {describe_exit(code)}")
            delay = await self._restart(delay)
            since = time.monotonic()

    async def _death(self) -> int:
        """The process's exit code, once it exits (a process of ``subprocess``, not asyncio's: polled)."""
        while True:
            code = self._exit_code()
            if code is not None:
                return code
            await asyncio.sleep(POLL_S)

    async def _restart(self, delay: float) -> float:
        """Start the process again, retrying with a growing delay; returns the delay for the next death."""
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
            self.restarts += 1
            self.service.set_detail(restarts=self.restarts)
            try:
                await self._start()
            except Exception as exc:  # say why, and try again: up without its broker or database is no platform
                log.error("%s: restart %d failed: %s; next in %.0f s", self.service.name, self.restarts, exc, delay)
                continue
            self._outage.recovered()
            return delay


async def keep_running(service: Service, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run()`` as long as `up` runs; when it raises (or returns) it is logged with its traceback and run again
    with backoff, its restarts and last failure in the heartbeat's detail."""
    delay = FIRST_DELAY_S
    restarts = 0
    service.set_detail(restarts=0)
    while True:
        started = time.monotonic()
        try:
            await run()
            error: Exception = RuntimeError("returned while `up` runs")
        except Exception as exc:  # a bug, not an outage (those it retries itself): loudly, then again
            error = exc
        if time.monotonic() - started >= HEALTHY_RUN_S:
            delay = FIRST_DELAY_S
        restarts += 1
        log.error("%s died: %s: %s; restart %d in %.0f s", service.name, type(error).__name__, error, restarts, delay,
                  exc_info=(type(error), error, error.__traceback__))
        service.set_detail(restarts=restarts, failure=f"{type(error).__name__}: {str(error)[:300]}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)
