"""Simulated HJ 212-2017 data loggers (数采仪): one TCP connection each, like the real ones.

Every ``realtime_s`` a 2011 real-time packet, every minute a 2051 minute packet (Avg/Min/Max, and
Cou for flow), every hour a 2061 hourly packet, all with Flag=5 (answer wanted); the logger waits
for the platform's answer before sending more. A few loggers report maintenance (M) or
calibration (C) flags from time to time, and some packets go out with a broken CRC.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devices import hj212, metric
from registry import queries
from registry.credentials import demo_logger_login
from simulators import truth
from simulators.faults import Distortion, Fault, Injection, plan
from simulators.signals import base_value

log = logging.getLogger(__name__)
_BEIJING = dt.timezone(dt.timedelta(hours=8))
ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SimLogger:
    code: str
    kind: str
    mn: str
    pw: str
    metrics: tuple[str, ...]
    attrs: dict


@dataclass
class LoggerStats:
    packets: int = 0
    answers: int = 0
    refused: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def load_loggers(conn: psycopg.Connection, secret_key: str) -> list[SimLogger]:
    """The ledger's HJ 212 terminals with the demo PW derived from their name."""
    loggers = []
    for t in queries.search_terminals(conn, queries.Search(), limit=10_000_000):
        if t.protocol.value == "hj212" and t.mn and t.status.value != "retired":
            mn, pw = demo_logger_login(secret_key, t.name)
            loggers.append(SimLogger(t.code, t.kind, t.mn, pw if mn == t.mn else "", tuple(t.metrics), t.attrs))
    return loggers


async def run_loggers(loggers: list[SimLogger], host: str, port: int, stop: asyncio.Event, *, speed: float = 1.0,
                      realtime_s: float = 30.0, bad_crc_share: float = 0.0, faults: dict[str, Fault] | None = None,
                      seed: int = 1, horizon_h: float = 24.0, truth_path: Path | None = None,
                      truth_h: float = truth.RECORDED_H, observed_from: dt.datetime | None = None) -> LoggerStats:
    """Run the loggers; those whose code is in ``faults`` get that value fault or event (a pollution event some
    hours long, a stuck, drifting or spiking analyser) every ``horizon_h`` simulated hours, as the MQTT fleet's
    devices do (``simulators.run``), those of the first ``truth_h`` hours recorded in ``truth_path``. Readings
    are stamped (DataTime) with simulated time from ``observed_from`` on, ``speed`` times faster than the wall clock
    (None: the wall clock, as a live demo does); the truth's windows are then in simulated time too."""
    stats = LoggerStats()
    faults = faults or {}
    events = {lg.code: plan(faults[lg.code], lg.code, lg.kind, lg.metrics, horizon_h, seed, repeat=True)
              for lg in loggers if lg.code in faults}
    if truth_path is not None:
        started = observed_from or dt.datetime.now(dt.UTC)
        per_hour = 1.0 if observed_from else speed  # observation time over simulated hours
        truth.record(truth_path, [t for e in events.values() if e is not None
                                  for t in truth.observed(e, started, per_hour, truth_h)])
    clock = _Clock(time.monotonic(), speed, observed_from)
    tasks = [asyncio.create_task(_logger(lg, host, port, stop, speed, realtime_s, bad_crc_share,
                                         random.Random(f"{seed}:{lg.mn}"), stats,
                                         _Distorted(events.get(lg.code), lg.mn, clock)))
             for lg in loggers]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


@dataclass(frozen=True)
class _Clock:
    started: float
    speed: float
    observed_from: dt.datetime | None = None

    def elapsed_h(self) -> float:
        return (time.monotonic() - self.started) * self.speed / 3600

    def now(self) -> dt.datetime:
        """Now in observation time, Beijing time as loggers keep it: simulated from ``observed_from`` on, or the
        wall clock."""
        if self.observed_from is None:
            return dt.datetime.now(_BEIJING)
        return (self.observed_from + dt.timedelta(hours=self.elapsed_h())).astimezone(_BEIJING)


@dataclass
class _Distorted:
    """A logger's event (if any) and the run's simulated clock. Each series (real-time values, minute and hourly
    aggregates: the packet's CN) keeps its own state: a spike or a flat line in the real-time values, the series
    the rules judge, must not be spent on an aggregate packet sent at the same moment."""

    injection: Injection | None
    seed: str
    clock: _Clock
    series: dict[str, Distortion] = field(default_factory=dict)

    def apply(self, cn: str, key: str, value: float) -> float:
        spec = metric(key)
        distortion = self.series.get(cn)
        if distortion is None:
            distortion = self.series[cn] = Distortion(self.injection, random.Random(f"{self.seed}:{cn}"))
        return distortion.apply(key, value, self.clock.elapsed_h(), spec.high - spec.low)


async def _logger(lg: SimLogger, host: str, port: int, stop: asyncio.Event, speed: float, realtime_s: float,
                  bad_crc_share: float, rng: random.Random, stats: LoggerStats, event: _Distorted) -> None:
    await asyncio.sleep(rng.uniform(0, min(5.0, realtime_s / speed)))
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(rng.uniform(1, 5))
            continue
        try:
            await _session(lg, reader, writer, stop, speed, realtime_s, bad_crc_share, rng, stats, event)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("logger %s: %s; reconnecting", lg.mn, exc)
        finally:
            writer.close()


async def _session(lg, reader, writer, stop, speed, realtime_s, bad_crc_share, rng, stats, event) -> None:
    splitter = hj212.Splitter()
    next_minute = next_hour = time.monotonic()
    while not stop.is_set():
        now = event.clock.now()
        packets = [_data(lg, "2011", now, rng, event)]
        if time.monotonic() >= next_minute:
            minute = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
            packets.append(_data(lg, "2051", minute, rng, event))
            next_minute = time.monotonic() + 60 / speed
        if time.monotonic() >= next_hour:
            packets.append(_data(lg, "2061", now.replace(minute=0, second=0, microsecond=0), rng, event))
            next_hour = time.monotonic() + 3600 / speed
        for packet in packets:
            frame = hj212.encode(packet)
            if rng.random() < bad_crc_share:
                frame = frame[:-6] + b"0000\r\n"
            sent = time.perf_counter()
            writer.write(frame)
            await writer.drain()
            stats.packets += 1
            answer = await _answer(reader, splitter)
            stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
            stats.answers += 1
            if answer.cn == "9011":
                stats.refused += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), realtime_s / speed)


async def _answer(reader: asyncio.StreamReader, splitter: hj212.Splitter) -> hj212.Packet:
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        data = await asyncio.wait_for(reader.read(4096), max(0.1, deadline - time.monotonic()))
        if not data:
            raise ConnectionResetError("gateway closed the connection")
        frames, _ = splitter.feed(data)
        if frames:
            return hj212.decode(frames[0])


def _data(lg: SimLogger, cn: str, at: dt.datetime, rng: random.Random, event: _Distorted) -> hj212.Packet:
    flag = "N"
    if rng.random() < 0.01:
        flag = rng.choice("MC")  # maintenance or calibration: rules must not raise pollution alerts on these
    items = [f"DataTime={at:%Y%m%d%H%M%S}"]
    for key in lg.metrics:
        value = base_value(lg.kind, key, at, lg.attrs, rng)
        value = event.apply(cn, key, value)
        if cn == "2011":
            items.append(f"{key}-Rtd={value},{key}-Flag={flag}")
        else:
            low, high = value * 0.97, value * 1.03
            cou = f",{key}-Cou={value * (60 if cn == '2051' else 3600) / 3600:.2f}" if key == "w00000" else ""
            items.append(f"{key}-Min={low:.3f},{key}-Avg={value},{key}-Max={high:.3f}{cou},{key}-Flag={flag}")
    return hj212.Packet(qn=hj212.now_qn(), st="32", cn=cn, pw=lg.pw, mn=lg.mn, flag=5, cp=";".join(items))
