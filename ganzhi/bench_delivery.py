"""`ganzhi bench delivery`: the delivery worker against local HTTP receivers, on a scratch database.

Throughput: a backlog of alert changes written while the worker is stopped, then drained by a fresh worker to
every endpoint (deliveries/s). Latency: changes written at a steady rate to a running worker; per delivery, the
time from the feed entry's transaction to the receiver's handler (p50/p99).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from alerts import webhooks
from core.settings import Settings
from ganzhi.benchkit import drop_database, scratch_database
from ganzhi.database import prepare
from registry import service
from registry.changes import Actor
from registry.models import TerminalIn

NEXT_SEVERITY = """update alert set severity = case severity when 'warning' then 'critical' else 'warning' end,
                                updated_at = now() where id = %s"""
"""An alert change that is news (a feed entry): its severity, flipped."""


class _Receiver:
    """Records when each event id arrived (the first time)."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                event = int(self.headers["X-Ganzhi-Event"])
                with receiver.lock:
                    receiver.arrived.setdefault(event, time.time())
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def _alerts(url: str, count: int) -> list[int]:
    with psycopg.connect(url) as conn:
        ids = []
        for n in range(count):
            code = service.create_terminal(conn, TerminalIn(name=f"投递基准站{n}", kind="air_sensor", lon=126.98,
                                                            lat=46.64, department="sthjj"), Actor("bench"))
            ids.append(conn.execute(
                """
                insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                                   observed_start, detail)
                select id, 'bench', 'river', 'warning', 'environment', 'sthjj', division_code, now(), '0'
                  from terminal where code = %s returning id
                """, (code,)).fetchone()[0])
        return ids


def _changes(url: str, alerts: list[int], count: int, rate: float | None) -> list[int]:
    """``count`` alert updates (one transaction each), at ``rate`` per second or as fast as they go."""
    with psycopg.connect(url, autocommit=True) as conn:
        start = conn.execute("select coalesce(max(id), 0) from alert_feed").fetchone()[0]
        began = time.monotonic()
        for n in range(count):
            conn.execute(NEXT_SEVERITY, (alerts[n % len(alerts)],))
            if rate:
                time.sleep(max(0.0, began + (n + 1) / rate - time.monotonic()))
        return [r[0] for r in conn.execute("select id from alert_feed where id > %s order by id", (start,))]


def _worker(url: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "GANZHI_WEBHOOK_ALLOW_HOSTS": '["127.0.0.1"]',
           "GANZHI_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "ganzhi", "deliver"], env=env)


def _wait_all(receivers: list[_Receiver], events: list[int], seconds: float) -> float:
    deadline = time.monotonic() + seconds
    wanted = set(events)
    while time.monotonic() < deadline:
        if all(wanted <= r.arrived.keys() for r in receivers):
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"not every event arrived within {seconds} s")


def run(url: str, settings: Settings, endpoints: int, backlog: int, probes: int, rate: float) -> None:
    scratch = scratch_database(url)
    receivers = [_Receiver() for _ in range(endpoints)]
    worker = None
    try:
        prepare(scratch, settings)
        alerts = _alerts(scratch, 50)
        with psycopg.connect(scratch) as conn:
            conn.execute("update webhook_cursor set feed_id = (select coalesce(max(id), 0) from alert_feed)")
            for receiver in receivers:
                webhooks.create(conn, department="sthjj", channel="webhook", target=receiver.url, families=None,
                                severities=None, division=None, created_by="bench")
        events = _changes(scratch, alerts, backlog, None)
        began = time.time()
        worker = _worker(scratch)
        drained = _wait_all(receivers, events, 600)
        per_s = len(events) * endpoints / (drained - began)
        probe_events = _changes(scratch, alerts, probes, rate)
        _wait_all(receivers, probe_events, 120)
        with psycopg.connect(scratch) as conn:
            at = dict(conn.execute("select id, extract(epoch from at) from alert_feed where id = any(%s)",
                                   (probe_events,)).fetchall())
        latencies = sorted((r.arrived[e] - float(at[e])) * 1000 for r in receivers for e in probe_events)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"backlog: {len(events)} events x {endpoints} endpoints drained in {drained - began:.1f} s "
              f"(worker start included): {per_s:.0f} deliveries/s")
        print(f"latency at {rate:g} events/s x {endpoints} endpoints ({len(latencies)} deliveries): "
              f"p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        for receiver in receivers:
            receiver.server.shutdown()
            receiver.server.server_close()
        drop_database(url, scratch)
