"""The ingest benchmark's report: a run that committed nothing, and rows counted over the run only."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psycopg
import pytest

from ganzhi import bench_ingest
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from tests.factories import terminal_in
from tests.orphans import assert_dies_with


def _report(url: str, expected: int, sent: int, rows_before: dict[str, int]) -> bench_ingest.Figures:
    return bench_ingest._report(url, expected, 10, 1.0, sent, 1, 0, bench_ingest._Monitor({}), 0.0, "5", {},
                                rows_before)


def test_a_run_that_committed_nothing_is_reported(db_url, capsys):
    """Every message refused: the report divided by the empty run's time span (None) and crashed."""
    figures = _report(db_url, expected=20, sent=2, rows_before=bench_ingest.rows_written(db_url))
    assert figures == bench_ingest.Figures(0.0, 0.0, 0.0, 20, 0)
    assert "committed no readings" in capsys.readouterr().out


def _written_when_counted(url: str, write) -> None:
    """Write in a connection of its own, closed (its backend reports its statistics as it exits); wait until
    the statistics show it."""
    before = bench_ingest.rows_written(url)
    with psycopg.connect(url) as c:
        write(c)
    deadline = time.monotonic() + 30
    while bench_ingest.rows_written(url) == before and time.monotonic() < deadline:
        time.sleep(0.1)


def test_rows_written_per_message_count_the_run_only(conn, db_url, capsys):
    """The statistics count from the database's creation: rows written before the run were counted as its own."""
    code = service.create_terminal(conn, terminal_in("基准行数"), Actor("test"))
    conn.commit()
    terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
    _written_when_counted(db_url, lambda c: Writer().write(c, Batch(seen_ms={"p1": 1, "p2": 1, "p3": 1})))
    rows_before = bench_ingest.rows_written(db_url)
    now = int(time.time() * 1000)
    readings = [Accepted(terminal_id, code, metric, now, 1.0, None) for metric in bench_ingest.METRICS]
    _written_when_counted(db_url, lambda c: Writer().write(c, Batch(readings=readings)))
    _report(db_url, expected=10, sent=1, rows_before=rows_before)
    assert "latest_reading 10.00, device_state 1.00" in capsys.readouterr().out


PARENT_OF_A_GATEWAY = """
import multiprocessing, queue, sys
from ganzhi import bench_ingest
if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    answers = ctx.Queue()  # held: the Process lets go of its args once started
    gateway = ctx.Process(target=bench_ingest._publish,
                          args=(int(sys.argv[1]), "基准杆", ["基准终端"], 10**9, 10, 100.0, answers))
    gateway.start()
    print(gateway.pid, flush=True)
    gateway.join()
"""


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "still-starting"])
def test_a_benchmark_gateway_dies_with_the_bench(connected: bool):
    """A killed ``bench alerts`` left its spawned gateways publishing: they loaded the box for the next run. Also
    a bench killed while its gateway is still importing (a second after its start)."""
    with (socket.create_server(("127.0.0.1", 0)) as silent,  # accepts, never answers CONNACK: the gateway waits
          subprocess.Popen([sys.executable, "-c", PARENT_OF_A_GATEWAY, str(silent.getsockname()[1])],
                           stdout=subprocess.PIPE, text=True) as parent):
        gateway_pid = int(parent.stdout.readline())
        if connected:  # it connects after asking to die with its parent
            silent.settimeout(30)
            silent.accept()[0].close()
        assert_dies_with(parent, gateway_pid, "the gateway")
