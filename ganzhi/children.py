"""Worker processes that `up` starts, restarts when they die, and stops in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from core.lifeline import dying_with_parent

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
HEALTHY_RUN_S = 60.0
"""A child that ran this long before exiting is restarted after the first delay again, not the grown one."""


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``signal SIGKILL``, from a returncode (negative for a signal)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Child:
    """One `ganzhi …` subcommand run as a child process, restarted with backoff if it exits on its own.

    The child gets SIGTERM when this process dies, however it dies (``core.lifeline``). It runs in a session of
    its own: Ctrl-C in the terminal reaches `up` alone, which stops the workers before the broker they talk to
    (else the broker went at the same time, and 1,600 simulated devices each reported their lost connection)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        """How often the child exited on its own and was started again."""
        self._stopping = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = FIRST_DELAY_S
        while not self._stopping:
            started = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "ganzhi", *self.args,
                                                                env=self.env, preexec_fn=dying_with_parent(),
                                                                start_new_session=True)
            code = await self.process.wait()
            if self._stopping:
                return
            ran = time.monotonic() - started
            if ran >= HEALTHY_RUN_S:
                delay = FIRST_DELAY_S
            self.restarts += 1
            log.error("%s (pid %d) exited with %s after %.1f s; restart %d in %.0f s", self.name, self.process.pid,
                      describe_exit(code), ran, self.restarts, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)

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
