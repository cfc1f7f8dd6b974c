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
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import psycopg

from core import db
from core.pgerrors import is_outage, is_transient
from core.runtime import Outage, Service
from devices import Reading, hj212
from ingest import validate
from ingest.dead_letters import MAX_PAYLOAD, DeadLetter, Limiter, redact_hj212
from ingest.directory import Directory
from ingest.guard import PasswordGuard
from ingest.metrics import IngestMetrics
from ingest.writer import Batch, Writer

log = logging.getLogger(__name__)

READ_SIZE = 8192
IDLE_TIMEOUT_S = 600.0
GARBAGE_FLUSH_BYTES = 1024 * 1024
"""Bytes outside frames are gathered per connection into one dead letter, written at close or at this size."""


@dataclass(frozen=True)
class GatewayConfig:
    database_url: str
    host: str = "0.0.0.0"
    port: int = 9212
    retention_days: int = 400
    batch_wait_s: float = 0.05


@dataclass
class _Job:
    batch: Batch
    letter: DeadLetter
    """What to keep instead, should the database refuse the batch."""
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class _Locked(Exception):
    """The peer or the MN is locked after wrong PWs: the connection is closed unanswered."""


class _Garbage:
    """Bytes outside any frame on one connection: the first ``MAX_PAYLOAD`` kept, all of them counted. Its letter
    is redacted only once admitted (``redacted``: 0.17 s for 64 KiB), and a PW cut by a flush is hidden in the
    next letter (``carried``: what the previous one's bytes left open, ``hj212.open_field``)."""

    def __init__(self, carried: bytes = b"") -> None:
        self.kept = bytearray()
        self.size = 0
        self.pieces = 0
        self._sha = hashlib.sha256()
        self._carried = carried
        self.open = carried
        """The field all these bytes end in, as far as a PW goes (for the next letter of this connection)."""

    def add(self, junk: bytes) -> None:
        self.kept += junk[: MAX_PAYLOAD - len(self.kept)]
        self.size += len(junk)
        self.pieces += 1
        self._sha.update(junk)
        self.open = hj212.open_field(self.open + junk)

    def letter(self, peer: str) -> DeadLetter:
        """The letter, not yet redacted: ``redacted`` once it is admitted."""
        return DeadLetter(f"hj212://{peer}", None, bytes(self.kept),
                          f"{self.size} bytes outside any HJ 212 frame ({self.pieces} pieces)", size=self.size,
                          digest=self._sha.digest(), kind="garbage")

    def redacted(self, payload: bytes) -> bytes:
        return hj212.redact_pw(payload, self._carried)


class Hj212Gateway:
    """The gateway's handlers; the process around them (stop, heartbeat, metrics) is ``core.runtime``'s."""

    def __init__(self, config: GatewayConfig, service: Service) -> None:
        self.config = config
        self._service = service
        self.metrics = IngestMetrics(service.metrics, "hj212", "HJ 212 frames", messages="frames")
        m = service.metrics
        self._connections = m.counter("hj212_connections", "logger connections accepted")
        self._locked_out = m.counter("hj212_connections_locked_out", "connections refused: the peer is locked out")
        self._pw_failures = m.counter("hj212_pw_failures", "frames with a wrong PW for their MN")
        self._batches_failed = m.counter("hj212_batches_failed", "batches that could not be written")
        m.gauge("hj212_clients", "logger connections open").set_function(lambda: len(self._clients))
        self._server: asyncio.Server | None = None
        service.add_check("listener", lambda: None if self._server is not None and self._server.is_serving()
                          else "not accepting connections")
        self._directory = Directory(config.database_url)
        self._writer = Writer()
        self._limiter = Limiter()
        self._guard = PasswordGuard()
        self._database = Outage("database", log)
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._conn: psycopg.Connection | None = None
        self._data_times: dict[tuple[str, str], str] = {}
        self._clients: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self.writing: asyncio.Task | None = None

    @property
    def counters(self) -> dict[str, float]:
        """The gateway's counter totals by short name (``frames``, ``readings_stored``, ...)."""
        return {name.removeprefix("hj212_"): value for name, value in self._service.metrics.totals().items()}

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Serve until the service stops (a signal, or a component that died)."""
        await asyncio.to_thread(self._directory.start, stop=self._service.stop)
        # reuse_port: several gateway processes can share the port, the kernel spreading connections over them.
        server = await asyncio.start_server(self._connection, self.config.host, self.config.port, reuse_port=True)
        self._server = server
        self.writing = asyncio.create_task(self._write_forever(), name="writer")
        self.writing.add_done_callback(self._service.watch("writer"))
        log.info("HJ 212 gateway listening on %s:%d", self.config.host, self.config.port)
        if ready is not None:
            ready.set()
        async with server:
            await self._service.until_stopped()
        for client in self._clients.values():  # loggers reconnect; their unanswered frames come again
            client.close()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=10)
        self.writing.cancel()
        await asyncio.gather(self.writing, return_exceptions=True)
        await asyncio.to_thread(self._directory.close)
        if self._conn is not None:
            self._conn.close()

    # -- connections --------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        if self._guard.host_locked(host):
            self._locked_out.inc()
            writer.close()
            return
        self._connections.inc()
        self._clients[asyncio.current_task()] = writer
        splitter, garbage = hj212.Splitter(), _Garbage()
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT_S)
                if not data:
                    break
                frames, junk = splitter.feed(data)
                for piece in junk:
                    garbage.add(piece)
                if garbage.size >= GARBAGE_FLUSH_BYTES:
                    await self._dead_letter(host, garbage.letter(peer), garbage.redacted)
                    garbage = _Garbage(garbage.open)
                for frame in frames:
                    for answer in await self._frame(frame, host, peer):
                        writer.write(answer)
                await writer.drain()
        except _Locked:
            self._locked_out.inc()
        except (TimeoutError, ConnectionError, psycopg.OperationalError) as exc:
            log.debug("logger %s: %s", peer, exc)
        except Exception:
            log.exception("logger %s: connection closed after an unexpected error", peer)
        finally:
            self._clients.pop(asyncio.current_task(), None)
            writer.close()
            if garbage.size:
                with contextlib.suppress(Exception):  # at shutdown the writer may be gone already
                    await self._dead_letter(host, garbage.letter(peer), garbage.redacted)

    async def _frame(self, frame: bytes, host: str, peer: str) -> list[bytes]:
        """Handle one frame; returns the answers to send back."""
        self.metrics.messages.inc()
        try:
            packet = hj212.decode(frame)
        except hj212.FrameError as exc:
            await self._dead_letter(host, _letter(f"hj212://{peer}", None, frame, str(exc), kind="frame"))
            lenient = _lenient(frame)
            return [hj212.request_answer(lenient, exc.qn_rtn)] if exc.qn_rtn and lenient else []
        if self._guard.locked(host, packet.mn):
            raise _Locked
        where = f"hj212://{packet.mn}/{packet.cn}"
        logger = self._directory.logger(packet.mn)
        if logger is None:
            await asyncio.to_thread(self._directory.ensure_loggers, [packet.mn])
            logger = self._directory.logger(packet.mn)
        if logger is None:
            self._guard.failed(host, None)
            await self._dead_letter(host, _letter(where, None, frame, f"MN {packet.mn} is not a logger in the ledger",
                                                  kind="unknown_publisher"))
            return [hj212.request_answer(packet, hj212.MN_ERROR)]
        if logger.pw is not None and packet.pw != logger.pw:
            self._guard.failed(host, packet.mn)
            self._pw_failures.inc()
            await self._dead_letter(host, _letter(where, logger.code, frame, "wrong PW for this MN", kind="password"))
            return [hj212.request_answer(packet, hj212.PW_ERROR)]
        self._guard.succeeded(host, packet.mn)
        if packet.cn == "1013":
            return [hj212.notify_answer(packet), hj212.time_answer(packet)]
        if packet.cn not in hj212.DATA_COMMANDS:
            await self._dead_letter(host, _letter(where, logger.code, frame, f"CN {packet.cn} is not handled",
                                                  kind="command"))
            return [hj212.request_answer(packet, hj212.CN_ERROR)] if packet.wants_reply else []
        return await self._data(packet, logger.code, frame, where, host)

    async def _data(self, packet: hj212.Packet, code: str, frame: bytes, where: str, host: str) -> list[bytes]:
        try:
            values = hj212.data_values(self._with_data_time(packet))
        except hj212.FrameError as exc:
            await self._dead_letter(host, _letter(where, code, frame, str(exc), kind="payload"))
            return []
        ts_ms = int(values.observed.timestamp() * 1000)
        readings = [Reading(code=code, metric=hj212.metric_key(v, packet.cn), ts_ms=ts_ms, value=v.value, flag=v.flag)
                    for v in values.values]
        accepted, problems = validate.check(self._directory, code, readings, self.config.retention_days)
        batch = Batch(readings=accepted)
        batch.saw(code, int(time.time() * 1000))
        problems += values.unreadable
        if problems:
            letter = self._limiter.admit(host, _letter(where, code, frame, "; ".join(problems[:20]),
                                                       stored=len(accepted), kind="readings"))
            batch.dead_letters += [letter] if letter else []
        await self._submit(batch, _letter(where, code, frame, "the database refused it"))
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

    async def _dead_letter(self, host: str, letter: DeadLetter,
                           redact: Callable[[bytes], bytes] | None = None) -> None:
        """Keep a dead letter, unless its peer address is over its budget (then it is only counted). ``redact``:
        the letter's payload is not redacted yet; it is, once admitted, off the event loop."""
        admitted = self._limiter.admit(host, letter)
        self.metrics.suppressed_now(self._limiter.suppressed)
        if admitted is None:
            return
        if redact is not None:
            admitted = replace(admitted, payload=await asyncio.to_thread(redact, admitted.payload))
        await self._submit(Batch(dead_letters=[admitted]), admitted)

    async def _submit(self, batch: Batch, instead: DeadLetter) -> None:
        """Hand a batch to the writer and wait for its commit."""
        job = _Job(batch, instead)
        await self._jobs.put(job)
        await job.done

    # -- the writer ---------------------------------------------------------------------------------

    async def _write_forever(self) -> None:
        """One writer for all connections. A batch that fails fails only its own frames (their connections
        close); if this task dies anyway, the runtime's watch fails the process, which is then restarted."""
        while True:
            jobs = [await self._jobs.get()]
            await asyncio.sleep(self.config.batch_wait_s)
            while not self._jobs.empty():
                jobs.append(self._jobs.get_nowait())
            try:
                await asyncio.to_thread(self._commit, jobs)
            except Exception as exc:
                log.exception("an HJ 212 batch of %d frames could not be written", len(jobs))
                self._batches_failed.inc()
                for job in jobs:
                    if not job.done.done():  # a connection that closed meanwhile cancelled its wait
                        job.done.set_exception(exc)
                continue
            for job in jobs:
                if not job.done.done():
                    job.done.set_result(None)

    def _commit(self, jobs: list[_Job]) -> None:
        """Write, retrying through database outages and transient failures (the loggers wait for their answers
        meanwhile); a frame the database refuses is dead-lettered alone, and a dead letter it refuses too is
        dropped (logged), so the batch is always answered."""
        parts = [job.batch for job in jobs]
        started = time.monotonic()
        failures = 0
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.config.database_url, **db.LINK)
                    self._writer.forget()
                written = self._writer.write_parts(self._conn, parts)
                if written.refused:
                    self._write_refused([_refused(jobs[i].letter, reason) for i, reason in written.refused.items()])
                break
            except psycopg.Error as exc:
                failures += 1
                self._database.failed(exc)
                if not is_outage(exc, self._conn) and not is_transient(exc):
                    log.error("a step after the write failed (%s: %s); the batch is retried", type(exc).__name__,
                              str(exc).strip()[:300])
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if self._service.wait(min(1.0, 0.1 * 2 ** failures)):
                    raise
        self._database.recovered()
        self._count(parts, written, started)

    def _write_refused(self, letters: list[DeadLetter]) -> None:
        written = self._writer.write_parts(self._conn, [Batch(dead_letters=[letter]) for letter in letters])
        for index, reason in written.refused.items():
            log.error("the dead letter of a refused frame (%s) was refused too (%s); it is dropped",
                      letters[index].topic, reason)

    def _count(self, parts: list[Batch], written, started: float) -> None:
        m, now_s = self.metrics, time.time()
        stored = [p for i, p in enumerate(parts) if i not in written.refused]
        m.commit_seconds.observe(time.monotonic() - started)
        m.batch_size.observe(len(parts))
        m.batches.inc()
        m.readings_stored.inc(written.stored)
        m.readings_repeated.inc(sum(len(p.readings) for p in stored) - written.stored)
        for part in stored:
            if part.readings:
                m.lag_seconds.observe(now_s - part.readings[0].ts_ms / 1000)
            m.dead_lettered(part.dead_letters)
        if written.refused:
            m.dead_letters.labels("refused").inc(len(written.refused))
        m.suppressed_now(self._limiter.suppressed)


def _letter(where: str, code: str | None, frame: bytes, reason: str, stored: int = 0,
            kind: str = "other") -> DeadLetter:
    """A dead letter of a frame, without its PW."""
    return DeadLetter(where, code, redact_hj212(frame), reason, stored=stored, kind=kind)


def _refused(letter: DeadLetter, reason: str) -> DeadLetter:
    return DeadLetter(letter.topic, letter.publisher, letter.payload, reason, size=letter.size, digest=letter.digest,
                      kind="refused")


def _lenient(frame: bytes) -> hj212.Packet | None:
    """The fields of a frame whose CRC is wrong, to address the QnRtn=9 answer; None if they cannot be read."""
    try:
        segment = frame[6:-6].decode("utf-8")
        return hj212.decode(b"##%04d%s%04X\r\n" % (len(segment.encode()), segment.encode(),
                                                 hj212.crc16(segment.encode())))
    except (UnicodeDecodeError, hj212.FrameError):
        return None
