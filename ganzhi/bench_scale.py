"""Scale-out measured: 1 vs 2 ingest workers and 1 vs 2 rule workers, on the same workload each.

Ingest: the ingest benchmark (``ganzhi.bench_ingest``) run with one worker, then with two sharing the
subscription; readings/s committed, their ratio, and exactly-once storage (lost = published − stored,
stored twice = rows − distinct (terminal, metric, ts)).

Rules: water-quality stations (GB 3838 rules) get ``rounds`` readings of every metric, written as the
ingest writes them (COPY, then the notification at commit); the rule workers judge them as they come.
Readings judged/s = readings written / time from the first write to the workers' last judgement
(scraped from their /metrics: ``ganzhi_rules_evaluations_total`` stops moving, ``ganzhi_rules_pending``
is 0). Exactly once: no (terminal, rule) with two active alerts, and every station judged (its cursor
moved) by exactly one worker at a time (the cursor's lock; the count of stations never judged is printed).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import httpx
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from ganzhi import bench_ingest
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.database import prepare
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from registry.lookups import Lookups
from registry.models import TerminalIn

WATER = ("w01001", "w01009", "w01010", "w01003", "w01014", "w01019", "w21003", "w21011", "w21001")
SETTLED_S = 3.0
"""The rule workers are done when their evaluations have not moved for this long with nothing pending."""


def ingest(url: str, settings: Settings, messages: int, readings: int) -> None:
    figures = {}
    for workers in (1, 2):
        print(f"--- {workers} ingest worker(s)")
        figures[workers] = bench_ingest.run(url, settings, messages, readings, 4, workers, 250, None, "5",
                                            ceiling=False)
    one, two = figures[1], figures[2]
    print(f"ingest scale-out: {one.readings_per_s:,.0f} → {two.readings_per_s:,.0f} readings/s, ratio "
          f"{two.readings_per_s / one.readings_per_s:.2f}; exactly once: lost {one.lost} / {two.lost}, "
          f"stored twice {one.twice} / {two.twice}")


def rules(url: str, settings: Settings, stations: int, rounds: int) -> None:
    rates = {}
    for workers in (1, 2):
        rates[workers] = _rules_run(url, settings, stations, rounds, workers)
    print(f"rules scale-out: {rates[1]:,.0f} → {rates[2]:,.0f} readings judged/s, ratio {rates[2] / rates[1]:.2f}")


def _rules_run(url: str, settings: Settings, stations: int, rounds: int, workers: int) -> float:
    scratch = scratch_database(url)
    processes: list[subprocess.Popen] = []
    try:
        prepare(scratch, settings)
        terminals = _stations(scratch, stations)
        ports = [free_port() for _ in range(workers)]
        env = dict(os.environ, DATABASE_URL=scratch, GANZHI_LOG_LEVEL="WARNING")
        processes = [subprocess.Popen([sys.executable, "-m", "ganzhi", "analytics", "--name", f"scale-rules-{n}"],
                                      env=dict(env, GANZHI_METRICS_PORT=str(port))) for n, port in enumerate(ports)]
        bench_ingest._wait_ready(ports)
        time.sleep(3)  # every worker has seen the others (membership is read every 2 s)
        cpu_before = _cpu_seconds(processes)
        start = time.monotonic()
        _write_rounds(scratch, terminals, rounds)
        written = len(terminals) * len(WATER) * rounds
        done = _settled(ports)
        cpu = [after - before for before, after in zip(cpu_before, _cpu_seconds(processes), strict=True)]
        rate = written / (done - start)
        twice, never = _exactly_once(scratch, [t for t, _ in terminals])
        load = os.getloadavg()[0]
        print(f"{workers} rule worker(s): {written:,} readings of {len(terminals)} stations judged in "
              f"{done - start:.1f} s: {rate:,.0f} readings/s (load average {load:.1f}); (terminal, rule) with two "
              f"active alerts: {twice}; stations never judged: {never}")
        print(f"  rule workers' CPU: {' + '.join(f'{c:.1f}' for c in cpu)} s, {sum(cpu) / written * 1e6:.1f} µs per "
              f"reading judged (the settling wait of {SETTLED_S:.0f} s included)")
        return rate
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        drop_database(url, scratch)


def _cpu_seconds(processes: list[subprocess.Popen]) -> list[float]:
    return [sum(psutil.Process(process.pid).cpu_times()[:2]) for process in processes]


def _stations(url: str, count: int) -> list[tuple[int, str]]:
    actor = Actor("bench")
    items = [TerminalIn(name=f"scale station {i}", kind="water_quality_station", lon=126.5 + (i % 50) * 0.005,
                        lat=46.5 + (i // 50) * 0.005,  # a grid inside Suihua
                        metrics=list(WATER), attrs={"river": "呼兰河", "chainage_km": float(i),
                                                    "target_class": "III"}) for i in range(count)]
    with psycopg.connect(url) as conn:
        rows, errors = service.prepare_terminals(conn, items, Lookups.load(conn))
        service.raise_errors(errors)
        service.save_terminals(conn, rows, actor)
        conn.commit()
        return conn.execute("select id, code from terminal where name like 'scale station %' order by id").fetchall()


def _write_rounds(url: str, terminals: list[tuple[int, str]], rounds: int) -> None:
    """Every station's metrics every 10 minutes of observation time, one transaction per round."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10 * rounds)
    writer = Writer()
    with psycopg.connect(url) as conn:
        for r in range(rounds):
            ts = int((start + dt.timedelta(minutes=10 * r)).timestamp() * 1000)
            value = 0.5 + (r % 5) * 0.1  # within class III, wandering
            writer.write(conn, Batch(readings=[Accepted(t, code, m, ts, value, None) for t, code in terminals
                                               for m in WATER]))


def _settled(ports: list[int], timeout_s: float = 600) -> float:
    """When the workers last judged something, once they have been idle for SETTLED_S."""
    deadline = time.monotonic() + timeout_s
    last_total, last_change = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        samples = [_samples(port) for port in ports]
        total = sum(s.get("ganzhi_rules_evaluations_total", 0.0) for s in samples)
        pending = sum(s.get("ganzhi_rules_pending", 0.0) for s in samples)
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        elif pending == 0 and total > 0 and now - last_change > SETTLED_S:
            return last_change
        time.sleep(0.1)
    raise RuntimeError("the rule workers did not settle")


def _samples(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if not s.labels}


def _exactly_once(url: str, terminal_ids: list[int]) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        twice = conn.execute("""
            select count(*) from (select terminal_id, rule from alert where status in ('open', 'acknowledged')
                                   group by terminal_id, rule having count(*) > 1) d
        """).fetchone()[0]
        judged = conn.execute("select count(*) from rule_cursor where terminal_id = any(%s) and version > 0",
                              (terminal_ids,)).fetchone()[0]
    return twice, len(terminal_ids) - judged
