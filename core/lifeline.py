"""Processes that die with the process that started them.

When ``ganzhi up`` is killed outright (kill -9, OOM killer), nothing of it may stay
behind holding ports and data directories. Linux delivers a chosen signal to a process
when its parent dies (``PR_SET_PDEATHSIG``). Our services ask for it themselves
(:func:`core.runtime.die_with_parent`); every child ``up`` starts also gets it at spawn time
through :func:`dying_with_parent`, used as ``preexec_fn``, so that programs that are not our
services (PostgreSQL, mosquitto, the simulators) die with it too, and no child can miss it.

Two caveats shape the API:

- the kernel clears that setting when a process changes its user, and mosquitto, started
  as root, drops to its own user. Such programs run under a guard, ``python -m
  core.lifeline PROGRAM ARGS``: the guard holds the death signal, runs the program as its
  child and passes SIGTERM, SIGINT and SIGHUP on to it (see :func:`guarded`);
- the signal follows the death of the *thread* that spawned the child, so children are
  spawned from threads that live as long as the parent (the event loop's thread, or the
  loop's executor threads, which live until the loop closes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl
"""Looked up here, in the parent: between fork and exec the child only calls it (a ``dlopen`` there could
deadlock on a lock another thread of the parent held at the fork)."""


def dying_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess: the child gets ``sig`` when the calling process dies (the spawn-time
    form of :func:`core.runtime.die_with_parent`, safe between fork and exec)."""
    parent = os.getpid()

    def request() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return request


def guarded(command: list[str]) -> list[str]:
    """``command`` run under a guard that dies with us and takes the program with it (for programs that
    change their user, which clears their own death signal). Start it with :func:`dying_with_parent`."""
    return [sys.executable, "-m", "core.lifeline", *command]


_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _guard(command: list[str]) -> int:
    """Run ``command``, passing stop and reload signals on; a stop before it started stops it at once."""
    received: list[int] = []
    program: subprocess.Popen | None = None

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if program is not None:
            program.send_signal(signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    program = subprocess.Popen(command)
    for signum in received:
        program.send_signal(signum)
    code = program.wait()
    if code < 0:  # killed: so is the guard, so that its starter sees the signal, not an exit code
        if -code in _FORWARDED:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(_guard(sys.argv[1:]))
