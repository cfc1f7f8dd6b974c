"""Children that must die with their parent: kill the parent, then see the child go."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil


def assert_dies_with(parent: subprocess.Popen, child_pid: int, what: str, within_s: float = 10) -> None:
    """Kill ``parent``; ``child_pid`` must be gone (or a zombie) within ``within_s``; it is killed either way."""
    try:
        parent.kill()
        parent.communicate(timeout=5)
        deadline = time.monotonic() + within_s
        while psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, f"{what} outlived its parent"
            time.sleep(0.1)
    finally:
        if psutil.pid_exists(child_pid):
            os.kill(child_pid, signal.SIGKILL)
