"""Worker processes that `up` starts, restarts when they die, and stops in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

log = logging.getLogger(__name__)


class Child:
    """One `ganzhi …` subcommand run as a child process, restarted if it exits on its own."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping:
            self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "ganzhi", *self.args,
                                                                env=self.env)
            code = await self.process.wait()
            if self._stopping:
                return
            log.error("%s exited with %s; restarting in %.0f s", self.name, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

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
