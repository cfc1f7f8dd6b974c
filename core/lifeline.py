"""Processes that die with the process that started them.

When ``ganzhi up`` is killed outright (kill -9, OOM killer), nothing of it may stay
behind holding ports and data directories. Linux delivers a chosen signal to a process
when its parent dies (``PR_SET_PDEATHSIG``, :func:`core.runtime.die_with_parent`); every
child ``up`` starts asks for one at spawn time through :func:`dying_with_parent`, used as
``preexec_fn``, so that programs that are not our services (PostgreSQL, mosquitto, the
simulators) die with it too.

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

import signal
import subprocess
import sys
from collections.abc import Callable

from core.runtime import die_with_parent


def dying_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess: the child gets ``sig`` when the calling process dies."""
    return lambda: die_with_parent(sig)


def guarded(command: list[str]) -> list[str]:
    """``command`` run under a guard that dies with us and takes the program with it (for programs that
    change their user, which clears their own death signal). Start it with :func:`dying_with_parent`."""
    return [sys.executable, "-m", "core.lifeline", *command]


def _guard(command: list[str]) -> int:
    """Run ``command``, passing stop and reload signals on; a stop before it started stops it at once."""
    received: list[int] = []
    program: subprocess.Popen | None = None

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if program is not None:
            program.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    program = subprocess.Popen(command)
    for signum in received:
        program.send_signal(signum)
    return program.wait()


if __name__ == "__main__":
    sys.exit(_guard(sys.argv[1:]))
