"""Only one delivery worker sends: the second waits as a standby behind a PostgreSQL advisory lock and takes over
when the first stops (two senders would break the order of an endpoint's deliveries)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from alerts.delivery import SINGLE_WORKER_LOCK
from tests.alerts.receiver import Receiver, reset_delivery, start_worker, worker_environment
from tests.alerts.test_delivery import _alerts, _subscribe, _wait_delivered

pytestmark = pytest.mark.slow


@pytest.fixture
def db(db_url: str, conn) -> Iterator[str]:
    reset_delivery(db_url)
    yield db_url
    reset_delivery(db_url)


def _lock_holders(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("select count(*) from pg_locks where locktype = 'advisory' and granted "
                         "and database = (select oid from pg_database where datname = current_database()) "
                         "and (classid::bigint << 32) + objid::bigint = %s", (SINGLE_WORKER_LOCK,)).fetchone()[0]


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds} s")
        time.sleep(0.2)


class Logged:
    """A `ganzhi deliver` whose log lines are read as they come."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "ganzhi", "deliver"],
                                        env=worker_environment(url, GANZHI_LOG_LEVEL="INFO"),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.put(line)

    def wait_for_line(self, text: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if text in line:
                return line
        raise AssertionError(f"the worker did not log {text!r} within {seconds} s")


def test_a_second_delivery_worker_waits_and_takes_over(db: str):
    receiver = Receiver()
    hook = _subscribe(db, receiver.start())
    receiver.secret = hook["secret"]
    first = start_worker(db)
    second = None
    try:
        _wait_for(lambda: _lock_holders(db) == 1, 30, "lock held by the first worker")
        second = Logged(db)
        line = second.wait_for_line("another delivery worker is running", 30)
        assert "waits as a standby" in line
        time.sleep(1)
        assert second.process.poll() is None  # it waits, it does not exit
        assert _lock_holders(db) == 1
        first.terminate()
        assert first.wait(20) == 0
        second.wait_for_line("takes over", 30)
        made = _alerts(db, 2, 1)
        _wait_delivered(db, hook["id"], len(made), 60)  # the standby sends now
    finally:
        for worker in (first, second.process if second else None):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(20)
        receiver.stop()
    assert receiver.ids() == set(made)
