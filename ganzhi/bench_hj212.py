"""HJ 212 gateway benchmark: N logger connections at once, each sending real-time packets and
waiting for each answer (9014, sent after the commit), as loggers do.

Prints packets/s and readings/s stored, and p50/p99 from sending a packet to its answer, which is
the gateway→stored latency plus one loopback round trip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import time

import numpy as np
import psycopg

from core.settings import Settings
from devices import hj212
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.database import prepare
from registry import service
from registry.changes import Actor
from registry.lookups import Lookups
from registry.models import TerminalIn

METRICS = ("a34004", "a34002", "a01001", "a01002")
_BEIJING = dt.timezone(dt.timedelta(hours=8))


def run(url: str, settings: Settings, connections: int, packets: int, gateways: int) -> None:
    print(f"box: {os.cpu_count()} cores; {connections} logger connections × {packets} real-time packets, "
          f"{len(METRICS)} values each; {gateways} gateway process(es)")
    scratch = scratch_database(url)
    port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        prepare(scratch, settings)
        mns = _loggers(scratch, connections)
        env = dict(os.environ, DATABASE_URL=scratch, GANZHI_HJ212_PORT=str(port), GANZHI_LOG_LEVEL="WARNING")
        processes = [subprocess.Popen([sys.executable, "-m", "ganzhi", "hj212"], env=env) for _ in range(gateways)]
        _wait_port(port)
        time.sleep(2)  # let every process bind before the loggers connect
        started = time.perf_counter()
        latencies = asyncio.run(_all_loggers(port, mns, packets))
        elapsed = time.perf_counter() - started
        with psycopg.connect(scratch) as conn:
            stored = conn.execute("select count(*) from reading").fetchone()[0]
            letters = conn.execute("select count(*) from dead_letter").fetchone()[0]
        sent = connections * packets
        print(f"answered {len(latencies)} of {sent} packets in {elapsed:.1f} s: {len(latencies) / elapsed:,.0f} "
              f"packets/s, {stored / elapsed:,.0f} readings/s stored ({stored} readings, {letters} dead letters)")
        print(f"send→answer (after commit): p50 {np.percentile(latencies, 50):.0f} ms, "
              f"p99 {np.percentile(latencies, 99):.0f} ms")
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        drop_database(url, scratch)


def _loggers(url: str, count: int) -> list[str]:
    items = [TerminalIn(name=f"bench logger {i}", kind="air_sensor", lon=126.98 + (i % 100) * 1e-4,
                        lat=46.64 + (i // 100) * 1e-4, protocol="hj212", mn=f"BENCH{i:019d}", pw="123456",
                        metrics=list(METRICS)) for i in range(count)]
    with psycopg.connect(url) as conn:
        rows, errors = service.prepare_terminals(conn, items, Lookups.load(conn))
        service.raise_errors(errors)
        service.save_terminals(conn, rows, Actor("bench"))
        conn.commit()
    return [item.mn for item in items]


async def _all_loggers(port: int, mns: list[str], packets: int) -> list[float]:
    results = await asyncio.gather(*(_one_logger(port, mn, packets) for mn in mns))
    return [latency for latencies in results for latency in latencies]


async def _one_logger(port: int, mn: str, packets: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    splitter = hj212.Splitter()
    start = dt.datetime.now(_BEIJING).replace(microsecond=0) - dt.timedelta(seconds=packets)
    latencies = []
    try:
        for i in range(packets):
            at = start + dt.timedelta(seconds=i)
            cp = f"DataTime={at:%Y%m%d%H%M%S};" + ";".join(f"{m}-Rtd={20 + i % 7},{m}-Flag=N" for m in METRICS)
            frame = hj212.encode(hj212.Packet(qn=hj212.now_qn(), st="22", cn="2011", pw="123456", mn=mn, flag=5,
                                              cp=cp))
            sent = time.perf_counter()
            writer.write(frame)
            await writer.drain()
            while True:
                frames, _ = splitter.feed(await reader.read(4096))
                if frames:
                    break
            latencies.append((time.perf_counter() - sent) * 1000)
    finally:
        writer.close()
    return latencies


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("the HJ 212 gateway did not start")
