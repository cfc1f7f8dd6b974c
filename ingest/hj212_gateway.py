"""The HJ 212-2017 gateway: environmental data loggers (数采仪) over TCP, as first-class terminals.

Each connection is read through a ``Splitter``; each frame is decoded, its MN and PW checked against
the ledger, its values turned into readings (real-time values under the factor, minute / hourly /
daily aggregates apart, each with its data flag) and judged like MQTT readings. Readings from all
connections are written in shared batches by one writer; a logger gets its 9014 data answer only
after the commit. Bad input gets the reply code the standard defines (QnRtn 3 wrong PW, 4 unknown
MN, 9 bad CRC) where one exists and always a dead letter; one connection's trouble never touches
another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import psycopg

from devices import Reading, hj212
from ingest import validate
from ingest.directory import Directory
from ingest.writer import Batch, DeadLetter, Writer

log = logging.getLogger(__name__)

READ_SIZE = 8192
IDLE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class GatewayConfig:
    database_url: str
    host: str = "0.0.0.0"
    port: int = 9212
    retention_days: int = 400
    batch_wait_s: float = 0.05


@dataclass
class GatewayCounters:
    connections: int = 0
    packets: int = 0
    readings_stored: int = 0
    dead_letters: int = 0


@dataclass
class _Job:
    batch: Batch
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Hj212Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.counters = GatewayCounters()
        self._directory = Directory(config.database_url)
        self._writer = Writer()
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._conn: psycopg.Connection | None = None
        self._data_times: dict[tuple[str, str], str] = {}
        self._clients: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await asyncio.to_thread(self._directory.refresh, force=True)
        # reuse_port: several gateway processes can share the port, the kernel spreading connections over them.
        server = await asyncio.start_server(self._connection, self.config.host, self.config.port, reuse_port=True)
        writing = asyncio.create_task(self._write_forever())
        log.info("HJ 212 gateway listening on %s:%d", self.config.host, self.config.port)
        if ready is not None:
            ready.set()
        async with server:
            await stop.wait()
        for client in self._clients.values():  # loggers reconnect; their unanswered frames come again
            client.close()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=10)
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()

    # -- connections --------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        self.counters.connections += 1
        self._clients[asyncio.current_task()] = writer
        splitter = hj212.Splitter()
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT_S)
                if not data:
                    break
                frames, garbage = splitter.feed(data)
                for junk in garbage:
                    await self._dead_letter(f"hj212://{peer}", None, junk, "bytes outside any HJ 212 frame")
                for frame in frames:
                    for answer in await self._frame(frame, peer):
                        writer.write(answer)
                await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.debug("logger %s: %s", peer, exc)
        except Exception:
            log.exception("logger %s: connection closed after an unexpected error", peer)
        finally:
            self._clients.pop(asyncio.current_task(), None)
            writer.close()

    async def _frame(self, frame: bytes, peer: str) -> list[bytes]:
        """Handle one frame; returns the answers to send back."""
        self.counters.packets += 1
        try:
            packet = hj212.decode(frame)
        except hj212.FrameError as exc:
            await self._dead_letter(f"hj212://{peer}", None, frame, str(exc))
            lenient = _lenient(frame)
            return [hj212.request_answer(lenient, exc.qn_rtn)] if exc.qn_rtn and lenient else []
        where = f"hj212://{packet.mn}/{packet.cn}"
        logger = self._directory.loggers.get(packet.mn)
        if logger is None and await asyncio.to_thread(self._directory.refresh, force=True):
            logger = self._directory.loggers.get(packet.mn)
        if logger is None:
            await self._dead_letter(where, None, frame, f"MN {packet.mn} is not a logger in the ledger")
            return [hj212.request_answer(packet, hj212.MN_ERROR)]
        code, password = logger
        if password is not None and packet.pw != password:
            await self._dead_letter(where, code, frame, "wrong PW for this MN")
            return [hj212.request_answer(packet, hj212.PW_ERROR)]
        if packet.cn == "1013":
            return [hj212.notify_answer(packet), hj212.time_answer(packet)]
        if packet.cn not in hj212.DATA_COMMANDS:
            await self._dead_letter(where, code, frame, f"CN {packet.cn} is not handled by the gateway")
            return [hj212.request_answer(packet, hj212.CN_ERROR)] if packet.wants_reply else []
        return await self._data(packet, code, frame, where)

    async def _data(self, packet: hj212.Packet, code: str, frame: bytes, where: str) -> list[bytes]:
        try:
            values = hj212.data_values(self._with_data_time(packet))
        except hj212.FrameError as exc:
            await self._dead_letter(where, code, frame, str(exc))
            return []
        ts_ms = int(values.observed.timestamp() * 1000)
        readings = [Reading(code, hj212.metric_key(v, packet.cn), ts_ms, v.value, v.flag) for v in values.values]
        accepted, problems = validate.check(self._directory, code, readings, self.config.retention_days)
        batch = Batch(readings=accepted)
        batch.saw(code, int(time.time() * 1000))
        problems += values.unreadable
        if problems:
            batch.dead_letters.append(DeadLetter(where, code, frame, "; ".join(problems[:20]), stored=len(accepted)))
        job = _Job(batch)
        await self._jobs.put(job)
        await job.done
        return [hj212.data_answer(packet)] if packet.wants_reply else []

    def _with_data_time(self, packet: hj212.Packet) -> hj212.Packet:
        """Parts of a split packet (PNUM/PNO) after the first may leave DataTime out: they share the first's."""
        if packet.pnum is None:
            return packet
        key = (packet.mn, packet.qn or "")
        data_time = packet.values().get("DataTime")
        if data_time:
            self._data_times[key] = data_time
            if len(self._data_times) > 10_000:
                self._data_times.pop(next(iter(self._data_times)))
            return packet
        remembered = self._data_times.get(key)
        if remembered is None:
            return packet
        return hj212.Packet(**{**packet.__dict__, "cp": f"DataTime={remembered};{packet.cp}"})

    async def _dead_letter(self, where: str, code: str | None, payload: bytes, reason: str) -> None:
        batch = Batch(dead_letters=[DeadLetter(where, code, payload, reason)])
        job = _Job(batch)
        await self._jobs.put(job)
        await job.done

    # -- the writer ---------------------------------------------------------------------------------

    async def _write_forever(self) -> None:
        while True:
            jobs = [await self._jobs.get()]
            await asyncio.sleep(self.config.batch_wait_s)
            while not self._jobs.empty():
                jobs.append(self._jobs.get_nowait())
            merged = Batch()
            for job in jobs:
                merged.readings += job.batch.readings
                merged.dead_letters += job.batch.dead_letters
                for code, at in job.batch.seen_ms.items():
                    merged.saw(code, at)
            await asyncio.to_thread(self._commit, merged)
            self.counters.readings_stored += len(merged.readings)
            self.counters.dead_letters += len(merged.dead_letters)
            for job in jobs:
                job.done.set_result(None)

    def _commit(self, batch: Batch) -> None:
        """Write, retrying through database outages (the loggers wait for their answers meanwhile)."""
        failed = False
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.config.database_url, connect_timeout=5)
                    self._writer.forget()
                self._writer.write(self._conn, batch)
                if failed:
                    log.info("database back; HJ 212 batch written")
                return
            except psycopg.OperationalError as exc:
                if not failed:
                    log.error("database unavailable, holding an HJ 212 batch: %s", str(exc).strip())
                    failed = True
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                time.sleep(1.0)


def _lenient(frame: bytes) -> hj212.Packet | None:
    """The fields of a frame whose CRC is wrong, to address the QnRtn=9 answer; None if they cannot be read."""
    try:
        segment = frame[6:-6].decode("utf-8")
        return hj212.decode(b"##%04d%s%04X\r\n" % (len(segment.encode()), segment.encode(),
                                                 hj212.crc16(segment.encode())))
    except (UnicodeDecodeError, hj212.FrameError):
        return None
