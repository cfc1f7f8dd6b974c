"""Children that must die with their parent: kill the parent, then see the child go."""

from __future__ import annotations

import subprocess
import time

import psutil


def assert_dies_with(parent: subprocess.Popen, child_pid: int, what: str, within_s: float = 10) -> None:
    """Kill ``parent``; the child must end within ``within_s`` (it is killed if it does not)."""
    try:
        child = psutil.Process(child_pid)
    except psutil.NoSuchProcess:
        child = None  # gone already
    parent.kill()
    parent.communicate(timeout=5)
    if child is None:
        return
    deadline = time.monotonic() + within_s
    while _alive(child):  # (not our child: its new parent reaps it, or it stays a zombie where nothing does)
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"{what} outlived its parent")
        time.sleep(0.1)


def _alive(child: psutil.Process) -> bool:
    try:
        return child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
