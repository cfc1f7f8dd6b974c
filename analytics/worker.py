"""The rule worker: judges readings as the ingest commits them.

Hand-off: the ingest notifies ``ganzhi_readings`` in each batch's transaction with the batch's terminals (and the
earliest observation of each), so the notification arrives when the readings are readable. A worker LISTENs,
drains what has arrived, and judges the terminals it owns in chunks, each chunk in one transaction of a handful
of set-wise queries (analytics/evaluate.py keeps each rule's state in memory between batches).

Sharing: the live rule workers are the ``rules`` services with a recent heartbeat (core/runtime.py); a terminal
belongs to the worker with the highest hash of (worker, terminal) (rendezvous hashing), so a worker started at
run time takes its share and a stopped one's terminals spread over the rest, each moving only once. While two
workers disagree for a moment, the terminal's ``rule_cursor`` row (locked while judging, versioned) keeps them
from judging it at once or from a stale memory. A terminal moves for what is heard after the move: what a worker
queued of it before (a backlog it is behind on) it still judges itself (``next_chunk``), so its watermark never
passes a reading it queued and did not judge.

Catching up: notifications are lost while nobody listens; each worker keeps a watermark of the arrival time it
has taken in, and re-reads what arrived since (with a margin) when it starts, reconnects, or a worker leaves; a
worker starting re-reads from the earliest of its own watermark and the live workers' (``begin``): the terminals it
takes over were theirs.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Iterable

import psycopg

from analytics import queries
from analytics.evaluate import (
    IDLE_S,
    REWIND,
    WINDOW,
    AlertSink,
    TerminalStream,
    heard_commit,
    held_past_due,
    judge_terminal,
    load,
    read_since,
    state_rows,
    stored_since,
    sweep_silence,
)
from analytics.neighbours import Neighbours
from core.logs import log_context
from core.metrics import Metrics
from core.runtime import Service
from ingest.writer import READINGS_CHANNEL

log = logging.getLogger(__name__)

MARGIN = dt.timedelta(seconds=10)
"""A batch's readings arrive (``received_at``) when its transaction starts; it may commit a little later."""
CHUNK = 128
"""Terminals judged in one transaction at most."""
CHUNK_MIN = 4
CHUNK_BUDGET_S = 0.05
"""What one chunk should take: a probe's alert commits with its chunk, after the chunk before it. A worker behind
judges terminals with seconds of readings each (10 ms and more apiece): then a chunk is ``CHUNK_MIN`` of them (a
chunk's queries wait on the database, which a loaded box schedules late: one terminal a chunk halved the
terminals judged per second in the bench), and a fresh reading does not wait in such a chunk (``EXPRESS``)."""
EXPRESS = dt.timedelta(seconds=2)
"""A queued terminal whose notified readings span less than this (one or a few batches: a detector that just
spoke) is light; a chunk headed by a light terminal takes only light ones, so a fresh alarm commits after its own
few queries, not after ``CHUNK_MIN`` terminals with seconds of backlog each."""
MEMBERS_EVERY_S = 2.0
SWEEP_EVERY_S = 60.0
SWEEP_FIRST_S = 10.0
"""The first no-data sweep waits until the catch-up has run and fresh readings had a chance to come in."""
WATERMARK_EVERY_S = 5.0
COLLECTOR = (10_000, 10, 100)
"""The garbage collector's thresholds in a rule worker (Python's are 700, 10, 10). Its memory (each terminal's
rules: judges, episodes, marks) is a million objects at 1,000 terminals and nearly never cyclic garbage, yet the
readings and judges a chunk makes and drops pushed it into a full collection (≈ 0.3 s of CPU, the worker stopped)
every 6–7 s: 17 % of a worker's CPU in the alerts bench at 5,850 msg/s. Young collections a fourteenth as often
let most of a chunk's objects die first; a full one comes after 100 young ones of the middle generation, not
10."""


def owner(members: Iterable[str], terminal_id: int) -> str:
    """Rendezvous hashing: the member with the highest hash of (member, terminal)."""
    return max(members, key=lambda m: hashlib.blake2b(f"{m}/{terminal_id}".encode(), digest_size=8).digest())


def parse(payload: str) -> tuple[int, dict[int, dt.datetime]]:
    """``xid|terminal:earliest_ms,...`` → (xid, terminal id → earliest observation)."""
    xid, _, items = payload.partition("|")
    found = {}
    for item in items.split(","):
        terminal, _, ms = item.partition(":")
        found[int(terminal)] = dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC)
    return int(xid), found


class _RuleMetrics:
    def __init__(self, metrics: Metrics, worker: RuleWorker) -> None:
        self.registry = metrics
        self.batches = metrics.counter("rules_batches", "rounds that judged terminals")
        self.terminals = metrics.counter("rules_evaluations", "terminals judged (each against all its rules)")
        self.skipped = metrics.counter("rules_skipped", "notified terminals already judged from a batch")
        self.windows = metrics.counter("rules_windows", "rule windows re-read (late or out-of-order readings, a "
                                       "window rule's turn)")
        self.rewinds = metrics.counter("rules_rewinds", "streamed rules rewound to a mark to take in a reading a "
                                       "moment late")
        self.rows = metrics.counter("rules_rows_read", "readings read to judge the terminals")
        self.cpu = metrics.counter("rules_cpu_seconds", "CPU time the worker's thread spent judging chunks (the "
                                   "database's share not included)")
        self.gc = metrics.counter("rules_gc_seconds", "CPU time the process spent collecting garbage (the "
                                  "collections a chunk set off are in rules_cpu_seconds too)")
        self.failed = metrics.counter("rules_failed", "terminals that could not be judged")
        self.reconnects = metrics.counter("rules_reconnects", "database connections lost and made again")
        self.chunk_seconds = metrics.histogram("rules_chunk_seconds", "judging one chunk of terminals (a transaction)")
        self.lag_seconds = metrics.histogram("rules_lag_seconds", "from a terminal's earliest new reading (ts) to "
                                             "the commit of its judgement")
        metrics.gauge("rules_pending", "terminals notified, not judged yet").set_function(lambda: len(worker.pending))
        metrics.gauge("rules_members", "live rule workers sharing the terminals").set_function(
            lambda: len(worker.members))


class RuleWorker:
    def __init__(self, database_url: str, sink: AlertSink, name: str) -> None:
        self.url, self.sink, self.name = database_url, sink, name
        self.memory: dict[int, TerminalStream] = {}
        self.neighbours = Neighbours()
        """The stuck-sensor rules' neighbours, looked up on the connection of the chunk being judged."""
        self.pending: dict[int, dt.datetime] = {}
        """Terminals notified and not judged yet → the earliest observation among their new readings."""
        self.queued: dict[int, dt.datetime] = {}
        """Terminals notified and not judged yet → an arrival time (the database's clock) that what they have
        unjudged is not older than (``step``'s watermark)."""
        self.heard_from: dt.datetime | None = None
        """The readings of a notification drained from now on arrived at or after this (``committed_before`` at
        the last check before the drain: the batch was still writing then, or began later)."""
        self.newest: dict[int, dt.datetime] = {}
        """Terminals notified and not judged yet → the latest batch's earliest observation (``EXPRESS``); none
        for a terminal queued by a catch-up (its backlog is unknown: not light)."""
        self.holding: set[int] = set()
        """Terminals in memory whose spike screen held a reading when last judged (``held_past_due``)."""
        self.judged_at: dict[int, float] = {}
        """When each terminal was last judged (monotonic): the least recently judged go first."""
        self.marked: dict[int, float] = {}
        """The terminals whose rules may hold marks → when last judged, least recently judged first
        (``forget_idle``)."""
        self._cost = 0.001
        """Seconds per terminal judged, a moving average over the chunks (a guess until the first is judged)."""
        self._collect_started = 0.0
        self.members: list[str] = [name]
        self._owners: dict[int, bool] = {}
        self.metrics = _RuleMetrics(Metrics(), self)
        """Counted in a registry of its own until ``run`` gives it the service's."""
        self.stop = threading.Event()
        """Set by the service on SIGTERM: the worker stops between chunks (what it judged is committed)."""
        self._due = {"members": 0.0, "sweep": time.monotonic() + SWEEP_FIRST_S, "watermark": 0.0}
        self._begun = False
        """Whether ``begin`` has run in this process (a reconnect catches up from this worker's watermark only)."""

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self, service: Service) -> None:
        self.stop = service.stop
        self.metrics = _RuleMetrics(service.metrics, self)
        gc.set_threshold(*COLLECTOR)
        gc.callbacks.append(self._collecting)
        try:
            self._serve(service)
        finally:
            gc.callbacks.remove(self._collecting)

    def _collecting(self, phase: str, info: dict) -> None:
        """``gc.callbacks``: the collector's CPU time into ``rules_gc_seconds``."""
        if phase == "start":
            self._collect_started = time.thread_time()  # a collection runs in the thread that set it off
        else:
            self.metrics.gc.inc(time.thread_time() - self._collect_started)

    def _serve(self, service: Service) -> None:
        while not service.stop.is_set():
            listen = service.connect(self.url, autocommit=True, what="notifications")
            conn = service.connect(self.url, what="database")
            if listen is None or conn is None:
                break
            try:
                self.listen(listen)
                self.begin(conn)
                while not service.stop.is_set():
                    self.step(listen, conn)
                    service.set_detail(members=len(self.members), terminals=len(self.memory))
            except psycopg.OperationalError as exc:  # the runtime logs the outage once each way on reconnecting
                log.error("rule worker %s lost the database: %s; reconnecting and catching up", self.name,
                          str(exc).strip())
                self.metrics.reconnects.inc()
            finally:
                listen.close()
                conn.close()

    def listen(self, listen: psycopg.Connection) -> None:
        listen.execute(f"listen {READINGS_CHANNEL}")

    def begin(self, conn: psycopg.Connection) -> None:
        """After ``listen``, on starting or reconnecting: learn the membership (so that only this worker's share is
        caught up), then queue what arrived since the watermark (what commits later is heard).

        Starting, the watermark is the earliest of this worker's own (a worker new by name: the last hour) and the
        live workers': the terminals this one takes over were theirs, with what they have not judged yet. They
        judge what they queued of them themselves (``next_chunk``), but the worker that had them may crash and be
        back before the others notice (its catch-up then queues only its own share); and what arrived more than an
        hour ago (a worker back from an outage when this one is started to help) is behind any watermark of this
        worker's own. Reconnecting, it catches up from its own watermark: its terminals have not moved."""
        self.refresh_members(conn)
        self.heard_from = queries.committed_before(conn)
        others = [] if self._begun else [m for m in self.members if m != self.name]
        self.catch_up(conn, queries.watermark(conn, [self.name, *others]))
        self._begun = True

    def step(self, listen: psycopg.Connection, conn: psycopg.Connection, wait_s: float = 0.2) -> int:
        """Drain the notifications into the queue, judge a chunk of it (``next_chunk``); the chores when due."""
        started = dt.datetime.now(dt.UTC)
        saving = time.monotonic() >= self._due["watermark"]
        heard_from = self.heard_from
        if saving or heard_from is None:  # before the drain: a batch that commits after it is heard after it
            self.heard_from = queries.committed_before(conn)
        self.drain(listen, 0.0 if self.pending else wait_s, heard_from or self.heard_from)
        now = time.monotonic()
        if now >= self._due["members"]:
            self.refresh_members(conn)
            self._due["members"] = now + MEMBERS_EVERY_S
            for terminal_id, after in held_past_due(self.memory, self.holding).items():
                self.pending.setdefault(terminal_id, after)  # a jump, then silence: judge the jump
                self.queued.setdefault(terminal_id, started)
        judged = self.judge(conn, self.next_chunk())
        self.forget_idle(time.monotonic())
        if now >= self._due["sweep"] and self.members[0] == self.name:  # one sweeper: the first member by name
            with conn.transaction():
                sweep_silence(conn, self.sink)
            self._due["sweep"] = now + SWEEP_EVERY_S
        # Everything that arrived before ``heard_from`` has been judged, but what is queued or was left unjudged by
        # a stop. Saved only with nothing queued, the watermark of a worker under load (nearly always something
        # queued) stood still, and a restart re-read hours.
        if saving and not self.stop.is_set():
            with conn.transaction():
                queries.save_watermark(conn, self.name, min([self.heard_from, *self.queued.values()]))
            self._due["watermark"] = now + WATERMARK_EVERY_S
        return judged

    def next_chunk(self) -> dict[int, dt.datetime]:
        """Take the queued terminals judged least recently (never judged first), as many as fit the chunk budget.

        Least recently judged first: when the worker is behind, every queued terminal still waits at most one
        round, but a terminal that speaks after a quiet spell (a detector that just saw gas) is not queued behind
        a round of terminals that report every second and were judged a moment ago. Among terminals never judged
        here, the freshest readings first (by their newest notified observation): a worker catching up after a
        start under load queues every terminal unjudged, and an alarm published meanwhile goes before their
        backlog, its own terminal's backlog included.

        A queued terminal that a worker joining since has taken over is judged here all the same: this worker
        queued it (it was its own), its watermark stays before it until then (``queued``), and the newcomer's
        catch-up may not reach back that far. Dropped, it was passed by the watermark and never judged. The
        newcomer may judge it too, from its own catch-up or what it hears: the terminal's lock and version
        (``_streams``) keep the two from judging it at once or from a stale memory, and an alert is reconciled,
        not added (docs/rules.md, Resuming)."""
        if not self.pending:
            return {}
        take = heapq.nsmallest(self.chunk_size(), self.pending,
                               key=lambda t: (self.judged_at.get(t, -math.inf), -self.heard(t).timestamp()))
        if self.light(take[0]):
            take = [t for t in take if self.light(t)]
        for terminal_id in take:
            self.newest.pop(terminal_id, None)
            self.queued.pop(terminal_id, None)
        return {t: self.pending.pop(t) for t in take}

    def heard(self, terminal_id: int) -> dt.datetime:
        """The newest observation notified for a queued terminal (its earliest when only a catch-up queued it):
        a terminal in the catch-up's backlog that has just alarmed is as fresh as its alarm."""
        return self.newest.get(terminal_id, self.pending[terminal_id])

    def light(self, terminal_id: int) -> bool:
        newest = self.newest.get(terminal_id)
        return newest is not None and newest - self.pending[terminal_id] < EXPRESS

    def forget_idle(self, now: float) -> None:
        """Drop the marks of the terminals not judged for ``IDLE_S`` and not queued either: a terminal costs its
        marks' memory only while it reports (a reading that comes later than that re-reads its rules' windows). A
        queued one is reporting, only judged late (a worker behind judges a busy terminal every minute or so): its
        marks are what keep its late readings from re-reading windows."""
        for terminal_id, judged in list(itertools.islice(self.marked.items(), 64)):
            if now - judged < IDLE_S:
                return
            if terminal_id in self.pending:
                continue
            del self.marked[terminal_id]
            if (stream := self.memory.get(terminal_id)) is not None:
                stream.forget_marks()

    def chunk_size(self) -> int:
        """Terminals in the next chunk: as many as the last chunks' cost per terminal fits in ``CHUNK_BUDGET_S``
        (a short transaction commits its alerts sooner and holds the terminals' locks briefly)."""
        return max(CHUNK_MIN, min(CHUNK, int(CHUNK_BUDGET_S / self._cost)))

    def drain(self, listen: psycopg.Connection, wait_s: float, heard_from: dt.datetime) -> None:
        """Queue terminal → earliest observation of the batches notified since the last drain that this worker
        has not read already (their readings arrived at or after ``heard_from``)."""
        first = list(listen.notifies(timeout=wait_s, stop_after=1))
        rest = list(listen.notifies(timeout=0.001)) if first else []  # what else has come (no 20 ms wait)
        for note in first + rest:
            xid, terminals = parse(note.payload)
            heard_commit(terminals.values())
            for terminal_id, earliest in terminals.items():
                if not self.owns(terminal_id):
                    continue
                held = self.memory.get(terminal_id)
                if held is not None and held.judged(xid):
                    self.metrics.skipped.inc()
                    continue
                if terminal_id not in self.pending or earliest < self.pending[terminal_id]:
                    self.pending[terminal_id] = earliest
                self.queued.setdefault(terminal_id, heard_from)
                self.newest[terminal_id] = max(self.newest.get(terminal_id, earliest), earliest)

    # -- sharing ------------------------------------------------------------------------------------------

    def owns(self, terminal_id: int) -> bool:
        mine = self._owners.get(terminal_id)
        if mine is None:
            mine = self._owners[terminal_id] = owner(self.members, terminal_id) == self.name
        return mine

    def refresh_members(self, conn: psycopg.Connection) -> None:
        members = sorted(set(queries.rule_workers(conn)) | {self.name})
        conn.commit()
        if members == self.members:
            return
        departed = sorted(set(self.members) - set(members))
        log.info("rule workers now %s", ", ".join(members))
        self.members, self._owners = members, {}
        self.memory = {t: s for t, s in self.memory.items() if self.owns(t) or t in self.pending}
        if departed:  # their terminals may have readings they had not judged
            self.catch_up(conn, queries.watermark(conn, departed))

    def catch_up(self, conn: psycopg.Connection, mark: dt.datetime | None) -> None:
        """Queue the owned terminals with readings that arrived since ``mark`` (less the margin): the loop judges
        them chunk by chunk, hearing notifications in between, so a fresh alarm does not wait for the catch-up
        (thousands of terminals' first judgements on a worker started under load)."""
        if mark is None:
            mark = conn.execute("select now() - %s", (queries.NEW_WORKER,)).fetchone()[0]
        arrived = queries.arrived_since(conn, mark - MARGIN)
        conn.commit()
        for terminal_id, earliest in arrived.items():
            if self.owns(terminal_id) and earliest < self.pending.get(terminal_id, dt.datetime.max.replace(
                    tzinfo=dt.UTC)):
                self.pending[terminal_id] = earliest
                self.queued[terminal_id] = min(self.queued.get(terminal_id, mark), mark)

    # -- judging ------------------------------------------------------------------------------------------

    def judge(self, conn: psycopg.Connection, events: dict[int, dt.datetime]) -> int:
        ids = list(events)  # in the order they came; each chunk locks its terminals in id order
        at = 0
        while at < len(ids):
            if self.stop.is_set():  # the rest is caught up after the restart, from the watermark
                break
            size = self.chunk_size()
            chunk = {t: events[t] for t in ids[at:at + size]}
            at += size
            started, cpu = time.monotonic(), time.thread_time()
            try:
                self._judge_chunk(conn, chunk)
            except psycopg.OperationalError:
                raise
            except Exception:  # one bad terminal must not hold up the others: judge them one by one
                log.exception("rule worker %s: a chunk of %d terminals failed; judging them one by one",
                              self.name, len(chunk))
                self._judge_alone(conn, chunk)
            self._count(chunk, started)
            self.metrics.cpu.inc(time.thread_time() - cpu)
        if ids:
            self.metrics.batches.inc()
        return len(ids)

    def _count(self, chunk: dict[int, dt.datetime], started: float) -> None:
        ended = time.monotonic()
        self.metrics.chunk_seconds.observe(ended - started)
        per = (ended - started) / len(chunk)
        self._cost = 0.8 * self._cost + 0.2 * per
        self.judged_at.update(dict.fromkeys(chunk, ended))
        for terminal_id in chunk:  # to the end: ``marked`` stays in the order terminals were last judged
            self.marked.pop(terminal_id, None)
            self.marked[terminal_id] = ended
        self.metrics.terminals.inc(len(chunk))
        now = dt.datetime.now(dt.UTC)
        for earliest in chunk.values():
            self.metrics.lag_seconds.observe((now - earliest).total_seconds())

    def _judge_alone(self, conn: psycopg.Connection, events: dict[int, dt.datetime]) -> None:
        for terminal_id, earliest in events.items():
            try:
                self._judge_chunk(conn, {terminal_id: earliest})
            except psycopg.OperationalError:
                raise
            except Exception:
                log.exception("rule worker %s: terminal %d could not be judged", self.name, terminal_id)
                self.metrics.failed.inc()

    def _judge_chunk(self, conn: psycopg.Connection, events: dict[int, dt.datetime]) -> None:
        self.neighbours.conn = conn
        try:
            with conn.transaction():
                snapshot = conn.execute("select pg_current_snapshot()::text").fetchone()[0]
                streams = self._streams(conn, list(events))
                stored = self.sink.stored_alerts_of(conn, {t: stored_since(s, events[t])
                                                           for t, s in streams.items()})
                since = {t: read_since(s, events[t], stored.get(t, {})) for t, s in streams.items()}
                data = queries.series_of(conn, since) if since else {}
                self._count_reads(streams, data)
                states = []
                for terminal_id, stream in streams.items():
                    with log_context(terminal=stream.info.code):
                        changed = judge_terminal(conn, self.sink, stream, events[terminal_id], data[terminal_id],
                                                 stored.get(terminal_id, {}))
                    states += state_rows(stream, changed)
                queries.advance(conn, list(streams), self.name, states)
        except BaseException:
            for terminal_id in events:  # the transaction is undone: so is what memory learnt in it
                self.memory.pop(terminal_id, None)
            raise
        for terminal_id, stream in streams.items():
            stream.version += 1
            stream.snapshot = snapshot
            if not self.owns(terminal_id):  # queued before a newcomer took it over (``next_chunk``): done here
                self.memory.pop(terminal_id, None)
                self.holding.discard(terminal_id)
                continue
            self.memory[terminal_id] = stream
            if stream.holding():
                self.holding.add(terminal_id)
            else:
                self.holding.discard(terminal_id)

    def _count_reads(self, streams: dict[int, TerminalStream], data: dict[int, dict[str, list]]) -> None:
        steps = [step for s in streams.values() for step in (s.steps or {}).values()]
        self.metrics.windows.inc(steps.count(WINDOW))
        self.metrics.rewinds.inc(steps.count(REWIND))
        self.metrics.rows.inc(sum(len(points) for series in data.values() for points in series.values()))

    def _streams(self, conn: psycopg.Connection, terminal_ids: list[int]) -> dict[int, TerminalStream]:
        """The terminals' streams, locked; from memory when current, else as the database has them."""
        versions = queries.lock_terminals(conn, terminal_ids, self.name)
        infos = queries.terminal_infos(conn, list(versions))
        streams, stale = {}, []
        for terminal_id, info in infos.items():
            held = self.memory.get(terminal_id)
            if held is None or held.version != versions[terminal_id] or held.info != info:
                stale.append((info, versions[terminal_id]))
            else:
                streams[terminal_id] = held
        if stale:
            streams |= load(conn, stale, self.neighbours)
        for gone in set(terminal_ids) - set(infos):
            self.memory.pop(gone, None)
        return streams
