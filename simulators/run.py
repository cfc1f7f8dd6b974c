"""Running a fleet: every publisher is its own MQTT client, logging in as its own city code.

Each client sends a retained ``online`` status (its last will is a retained ``offline``),
then telemetry at its terminals' intervals divided by ``speed``, with QoS 1: every publish
waits for its PUBACK, which is the publisher-side flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from core.runtime import Outage
from devices import Channel, Topic, encode_telemetry, metric
from registry.credentials import demo_secret
from simulators import truth
from simulators.client import DeviceClient
from simulators.faults import Distortion, Fault, Injection, plan
from simulators.fleet import Publisher, SimTerminal
from simulators.signals import base_value
from simulators.truth import RECORDED_H

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0


@dataclass
class SimConfig:
    host: str
    port: int
    secret_key: str
    speed: float = 1.0
    ramp_s: float = 20.0
    mqtt5: bool = True
    faults: dict[str, Fault] = field(default_factory=dict)
    seed: int = 1
    horizon_h: float = 24.0
    """Value faults and events come back every this many simulated hours."""
    truth: Path | None = None
    """Where the faults and events are recorded (JSON lines), if anywhere."""
    truth_h: float = RECORDED_H
    """Simulated hours of them recorded (the repeating ones come back every ``horizon_h``)."""
    observed_from: dt.datetime | None = None
    """Stamp readings with simulated time from this instant on, ``speed`` times faster than the wall clock (a
    benchmark compressing 24 hours into minutes, whose rules judge observation time); None: the wall clock, as a
    live demo does. The truth's windows are then in simulated time too."""
    acked: Path | None = None
    """Where every telemetry message the broker acknowledged is recorded at the end (JSON lines: publisher,
    payload), if anywhere: the identities of what must be stored."""


@dataclass
class SimStats:
    messages: int = 0
    readings: int = 0
    malformed: int = 0
    reconnects: int = 0
    failures: int = 0
    acked: list[tuple[str, bytes]] | None = None
    """(publisher code, payload) of each telemetry message acknowledged, when the config asks for them."""


async def simulate(fleet: list[Publisher], config: SimConfig, stop: asyncio.Event) -> SimStats:
    """Run every publisher until ``stop`` is set."""
    stats = SimStats(acked=[] if config.acked else None)
    injections = plan_fleet(fleet, config)
    if config.truth is not None:
        started = config.observed_from or dt.datetime.now(dt.UTC)
        speed = 1.0 if config.observed_from else config.speed  # observation time over simulated hours
        truth.record(config.truth, [t for i in injections.values()
                                    for t in truth.observed(i, started, speed, config.truth_h)])
    broker = Outage("the broker (simulated devices)", log)
    tasks = [asyncio.create_task(_device(p, config, injections, stats, broker, stop)) for p in fleet]
    log.info("simulating %d publishers (%d terminals) at speed %g", len(fleet),
             sum(len(p.terminals) for p in fleet), config.speed)
    await stop.wait()
    await stop_devices(tasks)
    if config.acked is not None:
        record_acked(config.acked, stats.acked)
    return stats


def record_acked(path: Path, acked: list[tuple[str, bytes]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for publisher, payload in acked:
            out.write(json.dumps({"publisher": publisher, "payload": payload.decode(errors="replace")},
                                 ensure_ascii=False) + "\n")


async def stop_devices(tasks: list[asyncio.Task]) -> None:
    """The way out, once ``stop`` is set: every device leaves by itself first (publishes awaiting their PUBACK
    finish, so that the count is what the broker acknowledged; a connect under way completes, then the client
    disconnects; devices waiting to connect do not). Those still busy after ``STOP_GRACE_S`` are cancelled.
    One line sums it up; a device that failed otherwise is a bug, logged once with its traceback."""
    if tasks:  # a ledger with loggers only has no MQTT devices
        await asyncio.wait(tasks, timeout=STOP_GRACE_S)
    late = [task for task in tasks if not task.done()]
    for task in late:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    log.info("devices stopped: %d left the broker by themselves, %d cancelled after %.0f s, %d failed",
             len(tasks) - len(late) - len(failed), len(late), STOP_GRACE_S, len(failed))
    if failed:
        log.error("a simulated device failed (%d did): %s", len(failed), failed[0], exc_info=failed[0])


def plan_fleet(fleet: list[Publisher], config: SimConfig) -> dict[str, Injection]:
    """The value faults and events of the publishers given one, per terminal."""
    planned = {}
    for publisher in fleet:
        fault = config.faults.get(publisher.code)
        for t in publisher.terminals if fault else ():
            injection = plan(fault, t.code, t.kind, t.metrics, config.horizon_h, config.seed, repeat=True)
            if injection is not None:
                planned[t.code] = injection
    return planned


def read_terminal(terminal: SimTerminal, distortion: Distortion, at: dt.datetime, elapsed_h: float,
                  rng: random.Random) -> list[tuple[str, float]]:
    """What the terminal's sensors report at ``at``, ``elapsed_h`` simulated hours into the run."""
    readings = []
    for key in terminal.metrics:
        spec = metric(key)
        value = base_value(terminal.kind, key, at, terminal.attrs, rng)
        readings.append((key, distortion.apply(key, value, elapsed_h, spec.high - spec.low)))
    return readings


async def _device(publisher: Publisher, config: SimConfig, injections: dict[str, Injection], stats: SimStats,
                  broker: Outage, stop: asyncio.Event) -> None:
    rng = random.Random(f"{config.seed}:{publisher.code}")
    fault = config.faults.get(publisher.code)
    device = _Device(publisher, config, rng, fault, injections)
    await _pause(stop, rng.uniform(0, config.ramp_s))
    while not stop.is_set():
        try:
            await device.session(stats, stop, broker)
        except aiomqtt.MqttError as exc:
            if stop.is_set():  # the broker went first: nothing to get back to
                return
            stats.failures += 1
            broker.failed(exc)  # the first of a fleet's failures is logged, and the recovery
            log.debug("%s: %s; reconnecting", publisher.code, exc)
            await _pause(stop, rng.uniform(1, 5))
        stats.reconnects += 1


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, unless the run stops meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class _Device:
    def __init__(self, publisher: Publisher, config: SimConfig, rng: random.Random, fault: Fault | None,
                 injections: dict[str, Injection]) -> None:
        self.publisher = publisher
        self.config = config
        self.rng = rng
        self.fault = fault
        self.distortion = {t.code: Distortion(injections.get(t.code), rng) for t in publisher.terminals}
        self.started = time.monotonic()
        self.held: list[bytes] = []
        self.status_topic = str(Topic(publisher.code, Channel.status))
        self.telemetry_topic = str(Topic(publisher.code, Channel.telemetry))

    def client(self) -> DeviceClient:
        protocol = aiomqtt.ProtocolVersion.V5 if self.config.mqtt5 else aiomqtt.ProtocolVersion.V311
        return DeviceClient(
            self.config.host, self.config.port, identifier=self.publisher.code,
            username=self.publisher.code, password=demo_secret(self.config.secret_key, self.publisher.code),
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True), protocol=protocol, keepalive=60,
        )

    async def session(self, stats: SimStats, stop: asyncio.Event, broker: Outage) -> None:
        """One connection: online, telemetry until stopped (or, for the offline fault, until it drops off)."""
        async with self.client() as client:
            broker.recovered()
            await client.publish(self.status_topic, b"online", qos=1, retain=True)
            due = {t.code: 0.0 for t in self.publisher.terminals}
            connected_at = time.monotonic()
            while not stop.is_set():
                now = time.monotonic()
                ready = [t for t in self.publisher.terminals if due[t.code] <= now]
                if ready:
                    await self._send(client, ready, stats)
                    for t in ready:
                        due[t.code] = now + t.interval_s / self.config.speed
                if self.fault is Fault.offline and now - connected_at > 600 / self.config.speed:
                    await client.publish(self.status_topic, b"offline", qos=1, retain=True)
                    break
                next_due = min(due.values()) - time.monotonic()
                if next_due > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=next_due)
        if self.fault is Fault.offline and not stop.is_set():
            await _pause(stop, 120 / self.config.speed)

    async def _send(self, client: DeviceClient, ready, stats: SimStats) -> None:
        now_ms = self.observed_ms() + (600_000 if self.fault is Fault.skew else 0)
        payload = self._payload(ready, now_ms)
        if self.fault is Fault.malformed and self.rng.random() < 0.2:
            payload = self.rng.choice(_MALFORMED)
            stats.malformed += 1
        if self.fault is Fault.late:
            self.held.append(payload)
            if len(self.held) < 5:
                return
            batch, self.held = self.held, []
        else:
            batch = [payload]
        for body in batch:
            for _ in range(2 if self.fault is Fault.duplicates else 1):
                await client.publish(self.telemetry_topic, body, qos=1)
                stats.messages += 1
                if stats.acked is not None:
                    stats.acked.append((self.publisher.code, body))
        stats.readings += sum(len(t.metrics) for t in ready)

    def observed_ms(self) -> int:
        """Now, in observation time (``SimConfig.observed_from``)."""
        if self.config.observed_from is None:
            return int(time.time() * 1000)
        simulated_s = (time.monotonic() - self.started) * self.config.speed
        return int((self.config.observed_from.timestamp() + simulated_s) * 1000)

    def _payload(self, ready, now_ms: int) -> bytes:
        at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
        elapsed_h = (time.monotonic() - self.started) * self.config.speed / 3600
        readings = []
        for terminal in ready:
            for key, value in read_terminal(terminal, self.distortion[terminal.code], at, elapsed_h, self.rng):
                reading = {"metric": key, "value": value}
                if self.publisher.is_pole:
                    reading["code"] = terminal.code
                readings.append(reading)
        return encode_telemetry(readings, now_ms)


_MALFORMED = (
    b'{"ts": 1795737600000, "readings": [{"metric": "a34004", "value": 12',
    json.dumps({"ts": 1795737600000, "readings": [{"metric": "a34004", "value": "twelve"}]}).encode(),
    json.dumps({"ts": 1795737600000}).encode(),
    b"\xff\xfe not even text",
)
