"""Ledger benchmark: import of an N-terminal census CSV, and terminal search latency over HTTP.

Runs in scratch databases on the configured server and drops them afterwards.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import psycopg
import uvicorn

from api.app import create_app
from core.settings import Settings
from ganzhi.benchkit import bench_token, drop_database, free_port, scratch_database
from ganzhi.database import prepare
from registry.changes import Actor
from registry.importer import run_import
from registry.lookups import Lookups

_KINDS = ("空气质量监测微站", "可燃气体探测器", "供水管网压力监测点", "视频监控摄像机", "室温采集器")
_STREETS = ("中兴大街", "黄河路", "长江路", "北二路", "南五路", "西直路", "东兴街", "康庄路")


def run(url: str, settings: Settings, terminals: int, searches: int, runs: int) -> None:
    print(f"box: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}; server: {urlsplit(url).hostname}:{urlsplit(url).port}")
    csv_bytes = None
    timings = []
    for attempt in range(1, runs + 1):
        scratch = scratch_database(url)
        try:
            prepare(scratch, settings)
            if csv_bytes is None:
                with psycopg.connect(scratch) as conn:
                    csv_bytes = census_csv(Lookups.load(conn), terminals)
                print(f"census CSV: {terminals} terminals, {len(csv_bytes) / 2**20:.1f} MiB")
            with psycopg.connect(scratch) as conn:
                started = time.perf_counter()
                report = run_import(conn, csv_bytes, "bench.csv", Actor("bench"))
                elapsed = time.perf_counter() - started
            if not (report.applied and report.created == terminals):
                raise RuntimeError(f"benchmark import failed: {report.errors[:5]}")
            timings.append(elapsed)
            print(f"import run {attempt}: {elapsed:.2f} s ({terminals / elapsed:,.0f} rows/s)")
            if attempt == runs:
                _search_bench(scratch, settings, searches)
        finally:
            drop_database(url, scratch)
    print(f"import median of {runs}: {statistics.median(timings):.2f} s for {terminals} terminals")


def census_csv(lookups: Lookups, count: int, seed: int = 7) -> bytes:
    """A Chinese-header census sheet of ``count`` terminals placed inside Suihua's counties."""
    rng = np.random.default_rng(seed)
    min_lon, min_lat, max_lon, max_lat = lookups.index.bounds
    points: list[tuple[float, float]] = []
    while len(points) < count:
        lons, lats = rng.uniform(min_lon, max_lon, count), rng.uniform(min_lat, max_lat, count)
        inside = [i for i, d in enumerate(lookups.index.locate_many(lons, lats)) if d]
        points += [(round(lons[i], 6), round(lats[i], 6)) for i in inside][: count - len(points)]
    lines = ["设备名称,设备类型,经度,纬度,安装地址,状态"]
    for n, (lon, lat) in enumerate(points):
        kind = _KINDS[n % len(_KINDS)]
        street = _STREETS[n % len(_STREETS)]
        lines.append(f"{street}{n}号{kind},{kind},{lon},{lat},{street}{n % 500}号,在用")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


SEARCH_ROUNDS = 3


def _search_bench(url: str, settings: Settings, searches: int) -> None:
    """The same searches as the platform admin (no rights filter) and as a 住建局 viewer (its terminals and a
    grant of 水务局's water pressure points), interleaved; p99 per caller, median of SEARCH_ROUNDS rounds."""
    with psycopg.connect(url) as conn:
        conn.execute("insert into sharing_grant (steward_code, grantee_code, kind, granted_by) "
                     "values ('swj', 'zjj', 'water_pressure_point', 'bench')")
    callers = {"admin": bench_token(url, "bench-admin", ["platform_admin"]),
               "zjj viewer": bench_token(url, "bench-zjj", ["viewer"], "zjj")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, url), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    queries = [
        ("division", {"division": "231202"}),
        ("division+kind", {"division": "231282", "kind": "air_sensor"}),
        ("department", {"department": "住建局"}),
        ("bbox", {"bbox": "126.9,46.55,127.05,46.7"}),
        ("text", {"q": "黄河路12号"}),
        ("code prefix", {"q": "2312812"}),
        ("readable_by", {"readable_by": "swj", "kind": "water_pressure_point"}),
        ("page 50", {"limit": 50, "after": "23120240"}),
    ]
    p99s: dict[str, list[float]] = {caller: [] for caller in callers}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for headers in callers.values():  # warm up
            for _, params in queries:
                client.get("/api/v1/terminals", params=params, headers=headers).raise_for_status()
        for round_ in range(1, SEARCH_ROUNDS + 1):
            latencies = {caller: {name: [] for name, _ in queries} for caller in callers}
            for i in range(searches):
                name, params = queries[i % len(queries)]
                for caller, headers in callers.items():
                    started = time.perf_counter()
                    client.get("/api/v1/terminals", params=params, headers=headers).raise_for_status()
                    latencies[caller][name].append((time.perf_counter() - started) * 1000)
            print(f"search round {round_}: {searches} requests per caller over HTTP (limit 100 unless stated):")
            for caller, by_query in latencies.items():
                p99s[caller].append(_report(caller, by_query))
    server.should_exit = True
    thread.join(10)
    admin, department = (statistics.median(p99s[c]) for c in callers)
    print(f"search p99, median of {SEARCH_ROUNDS} rounds: admin {admin:.1f} ms, zjj viewer {department:.1f} ms "
          f"(rights filter {100 * (department / admin - 1):+.0f} %)")


def _report(caller: str, latencies: dict[str, list[float]]) -> float:
    print(f"  as {caller}:")
    for name, values in latencies.items():
        print(f"    {name:12s} p50 {np.percentile(values, 50):6.1f} ms  p99 {np.percentile(values, 99):6.1f} ms")
    everything = [v for values in latencies.values() for v in values]
    p99 = float(np.percentile(everything, 99))
    print(f"    {'all':12s} p50 {np.percentile(everything, 50):6.1f} ms  p99 {p99:6.1f} ms")
    return p99
