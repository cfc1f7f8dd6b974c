"""The delivery worker (`ganzhi deliver`): the alert feed into each endpoint's deliveries, and those sent.

At least once: a delivery row is written (with the fan-out cursor, in one transaction) before anything is sent,
and marked delivered only after the endpoint answered 2xx; a worker killed in between sends it again, with the
same ``Idempotency-Key`` (the event id), so the receiver can drop the copy.

Per-endpoint isolation: each endpoint with work due gets its own task, which sends its deliveries one at a time
in feed order (so an alert's changes arrive in order) with a timeout; a dead or slow endpoint holds only its own
task. A failed attempt is retried after an exponential backoff with full jitter; an endpoint whose head delivery
has failed for ``webhook_pause_after_s`` is paused (its deliveries wait; ``POST /webhooks/{id}/resume``).

A disabled department's endpoints (webhooks and SMS) are paused with it, not deleted: the fan-out makes them no
deliveries, those already queued wait, and both resume when the department is enabled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from alerts import egress, webhooks
from alerts.feed import CHANNEL, event_json
from core.logs import log_context
from core.runtime import Outage, Service
from core.settings import Settings

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 1000
TICK_S = 1.0
"""How often retries that came due are looked for when no new entry wakes the worker."""


class DeliveryFailed(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Ganzhi-Signature``: HMAC-SHA256 over ``timestamp.body`` with the endpoint's secret, hex."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt after ``attempts`` failures: exponential, capped, full jitter."""
    ceiling = min(settings.webhook_retry_cap_s, settings.webhook_retry_base_s * 2 ** (attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def _body(head: dict) -> bytes:
    event = {"id": head["feed_id"], "at": head["at"], "kind": head["kind"], "action": head["action"],
             "alert_id": head["alert_id"], "incident_id": head["incident_id"],
             "fire_event_id": head["fire_event_id"], "family": head["family"], "severity": head["severity"],
             "division": head["division_code"], "payload": head["payload"], "replay": head["replay"]}
    return event_json(event).encode()


Channel = Callable[[dict, bytes, psycopg.AsyncConnection], Awaitable[int | None]]


class Sender:
    """The channels: a webhook POST, or an SMS written to the local gateway double (``sms_outbox``)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

    async def send(self, head: dict, body: bytes, conn: psycopg.AsyncConnection) -> int | None:
        channels: dict[str, Channel] = {"webhook": self._webhook, "sms": self._sms}
        return await channels[head["channel"]](head, body, conn)

    async def _webhook(self, head: dict, body: bytes, conn: psycopg.AsyncConnection) -> int:
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"ganzhi-event-{head['feed_id']}",
                   "X-Ganzhi-Event": str(head["feed_id"]), "X-Ganzhi-Timestamp": timestamp,
                   "X-Ganzhi-Signature": sign(head["secret"], timestamp, body)}
        try:  # the client checks the addresses it connects to (``alerts.egress``): the name may have moved
            response = await self._client.post(head["target"], content=body, headers=headers)
        except webhooks.TargetRefused as exc:
            raise DeliveryFailed(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"HTTP {response.status_code}", response.status_code)
        return response.status_code

    async def _sms(self, head: dict, body: bytes, conn: psycopg.AsyncConnection) -> None:
        event = json.loads(body)
        text = (f"【感知】{event['kind']} {event['action']} 告警{event['alert_id'] or ''} "
                f"{event['family'] or ''} {event['severity'] or ''} {event['division'] or ''}").strip()
        await conn.execute("insert into sms_outbox (phone, body, key) values (%s, %s, %s) on conflict (key) do nothing",
                           (head["target"], text, f"{head['webhook_id']}:{head['feed_id']}:{head['replay']}"))
        return None


_LIVE = """w.deleted_at is null and not exists (
    select 1 from department wd where wd.code = w.department_code and wd.disabled_at is not null)"""
"""Endpoint ``w`` is in service: not deleted, and its department is enabled."""

_HEAD = f"""
    select d.id, d.webhook_id, d.feed_id, d.replay, d.attempts, d.next_at, d.first_failed_at, d.created_at,
           w.channel, w.target, w.secret, f.at, f.kind, f.action, f.alert_id, f.incident_id, f.fire_event_id,
           f.family, f.severity, f.division_code, f.payload
      from webhook_delivery d join webhook w on w.id = d.webhook_id join alert_feed f on f.id = d.feed_id
     where d.webhook_id = %s and d.status = 'pending' and w.paused_at is null and {_LIVE}
     order by d.id limit %s
"""
HEADS = 100
"""Deliveries of one endpoint read at once (sent one by one, in order)."""


class DeliveryWorker:
    def __init__(self, service: Service, settings: Settings, pool: AsyncConnectionPool, sender: Sender) -> None:
        self._service = service
        self._settings = settings
        self._pool = pool
        self._sender = sender
        self._endpoints: dict[int, asyncio.Task] = {}
        self.wake = asyncio.Event()
        m = service.metrics
        self._queued = m.counter("deliveries_queued", "deliveries made from the alert feed (one per endpoint)")
        self._attempts = m.counter("delivery_attempts", "delivery attempts, by outcome (ok, failed)", ["outcome"])
        self._latency = m.histogram("delivery_latency_seconds", "from the alert feed entry to its delivery",
                                    (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
        self._attempt_seconds = m.histogram("delivery_attempt_seconds", "one attempt, by outcome", labels=["outcome"])
        m.gauge("delivery_endpoints_sending", "endpoints with a delivery task running").set_function(
            lambda: len(self._endpoints))

    async def fan_out(self) -> int:
        """One batch of the feed into deliveries, with the cursor, in one transaction; the number of entries read."""
        async with self._pool.connection() as conn, conn.transaction():
            after = (await (await conn.execute("select feed_id from webhook_cursor for update")).fetchone())[0]
            upto = (await (await conn.execute("select coalesce(max(id), 0) from alert_feed where id <= %s",
                                              (after + FAN_OUT_BATCH,))).fetchone())[0]
            if upto <= after:
                return 0
            cur = conn.cursor(row_factory=dict_row)
            endpoints = await (await cur.execute(
                f"select w.id, w.department_code as department from webhook w where {_LIVE}")).fetchall()
            for endpoint in endpoints:
                made = await conn.execute(*webhooks.fan_out_statement(endpoint, after, upto))
                self._queued.inc(made.rowcount)
            await conn.execute("update webhook_cursor set feed_id = %s", (upto,))
            return upto - after

    async def start_due(self) -> None:
        """A task for each endpoint with a delivery due that has none running."""
        async with self._pool.connection() as conn:
            due = await (await conn.execute(
                f"""
                select distinct d.webhook_id from webhook_delivery d join webhook w on w.id = d.webhook_id
                 where d.status = 'pending' and d.next_at <= now() and w.paused_at is null and {_LIVE}
                """)).fetchall()
        for (webhook_id,) in due:
            if webhook_id not in self._endpoints:
                task = asyncio.create_task(self._endpoint(webhook_id), name=f"endpoint {webhook_id}")
                task.add_done_callback(self._ended)
                task.add_done_callback(lambda _, key=webhook_id: self._endpoints.pop(key, None))
                self._endpoints[webhook_id] = task
        self._service.set_detail(endpoints_sending=len(self._endpoints))

    def _ended(self, task: asyncio.Task) -> None:
        """An endpoint task ends when it has nothing due; an error in it is a bug and takes the worker down."""
        if not task.cancelled() and task.exception() is not None:
            self._service.fail(task.get_name(), task.exception())

    async def _endpoint(self, webhook_id: int) -> None:
        """The endpoint's deliveries in order, until none is due (or it is failing and must wait)."""
        try:
            await self._send_due(webhook_id)
        except psycopg.OperationalError as exc:  # the database is away: the loop starts the endpoint again
            log.info("endpoint %s waits for the database: %s", webhook_id, exc)

    async def _send_due(self, webhook_id: int) -> None:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            while not self._service.stop.is_set():
                heads = await (await cur.execute(_HEAD, (webhook_id, HEADS))).fetchall()
                for head in heads:  # the first not yet due stops them all: the endpoint's order holds
                    if head["next_at"] > dt.datetime.now(dt.UTC) or not await self._attempt(conn, head):
                        return
                if len(heads) < HEADS:
                    return

    async def _attempt(self, conn: psycopg.AsyncConnection, head: dict) -> bool:
        body = _body(head)
        started = time.monotonic()
        try:
            with log_context(alert_id=head["alert_id"]):
                status = await self._sender.send(head, body, conn)
        except DeliveryFailed as exc:
            self._attempt_seconds.labels("failed").observe(time.monotonic() - started)
            await self._failed(conn, head, exc)
            return False
        self._attempt_seconds.labels("ok").observe(time.monotonic() - started)
        since = head["created_at"] if head["replay"] else head["at"]
        await conn.execute(
            """
            update webhook_delivery set status = 'delivered', attempts = attempts + 1, last_status = %(status)s,
                   last_error = null, delivered_at = now(),
                   latency_ms = extract(epoch from now() - %(at)s::timestamptz) * 1000
             where id = %(id)s
            """, {"id": head["id"], "status": status, "at": head["created_at"] if head["replay"] else head["at"]})
        self._attempts.labels("ok").inc()
        self._latency.observe((dt.datetime.now(dt.UTC) - since).total_seconds())
        return True

    async def _failed(self, conn: psycopg.AsyncConnection, head: dict, exc: DeliveryFailed) -> None:
        attempts = head["attempts"] + 1
        now = dt.datetime.now(dt.UTC)
        first = head["first_failed_at"] or now
        delay = backoff(attempts, self._settings)
        async with conn.transaction():
            await conn.execute(
                """
                update webhook_delivery set attempts = %(attempts)s, last_status = %(status)s, last_error = %(error)s,
                       first_failed_at = %(first)s, next_at = now() + make_interval(secs => %(delay)s)
                 where id = %(id)s
                """, {"attempts": attempts, "status": exc.status, "error": str(exc)[:500], "first": first,
                      "delay": delay, "id": head["id"]})
            if (now - first).total_seconds() >= self._settings.webhook_pause_after_s:
                await conn.execute("update webhook set paused_at = now(), pause_reason = %s where id = %s",
                                   (f"failing since {first.isoformat()}: {exc}"[:500], head["webhook_id"]))
                log.warning("webhook %s paused: failing since %s (%s)", head["webhook_id"], first, exc)
        self._attempts.labels("failed").inc()
        log.info("delivery %s to webhook %s failed: %s", head["id"], head["webhook_id"], exc,
                 extra={"alert_id": head["alert_id"]})

    async def run(self) -> None:
        database = Outage("database", log)
        while not self._service.stop.is_set():
            self.wake.clear()
            try:
                while await self.fan_out():
                    pass
                await self.start_due()
                database.recovered()
            except psycopg.OperationalError as exc:  # a restart of PostgreSQL: the pool reconnects
                database.failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), TICK_S)
        for task in list(self._endpoints.values()):
            task.cancel()
        await asyncio.gather(*self._endpoints.values(), return_exceptions=True)


async def _listen(service: Service, url: str, worker: DeliveryWorker) -> None:
    """Wake the worker on every new feed entry (NOTIFY); reconnects through outages."""
    while not service.stop.is_set():
        conn = await service.aconnect(url, autocommit=True, what="database (LISTEN)")
        if conn is None:
            return
        try:
            async with conn:
                await conn.execute(f"listen {CHANNEL}")
                worker.wake.set()
                async for _ in conn.notifies():
                    worker.wake.set()
        except psycopg.Error as exc:
            log.warning("the delivery worker's LISTEN connection failed: %s", exc)
            await service.sleep(1)


SINGLE_WORKER_LOCK = 0x67616E7A6869
"""PostgreSQL advisory lock (session level) that the one running delivery worker holds. Two workers would each
send an endpoint's deliveries and break their order per alert; a second one waits as a standby instead."""
LOCK_RETRY_S = 2.0
LOCK_CHECK_S = 5.0


async def single_worker_lock(service: Service, url: str) -> psycopg.AsyncConnection | None:
    """A connection holding ``SINGLE_WORKER_LOCK``, once this worker gets it (waiting while another holds it);
    None when the service was stopped while waiting."""
    conn = await service.aconnect(url, autocommit=True, what="delivery lock")
    waiting = False
    while conn is not None and not service.stop.is_set():
        got = await (await conn.execute("select pg_try_advisory_lock(%s)", (SINGLE_WORKER_LOCK,))).fetchone()
        if got[0]:
            if waiting:
                log.info("the other delivery worker stopped; this one takes over")
            return conn
        if not waiting:
            log.warning("another delivery worker is running (it holds PostgreSQL advisory lock %d): only one may "
                        "send, so this one waits as a standby until it stops", SINGLE_WORKER_LOCK)
            service.set_detail(standby=True)
            waiting = True
        await service.sleep(LOCK_RETRY_S)
    if conn is not None:
        await conn.close()
    return None


class LockLost(RuntimeError):
    """Another delivery worker took the lock while this one's connection was down."""


async def _retake(service: Service, url: str) -> psycopg.AsyncConnection | None:
    conn = await service.aconnect(url, autocommit=True, what="delivery lock")
    if conn is None:
        return None
    got = await (await conn.execute("select pg_try_advisory_lock(%s)", (SINGLE_WORKER_LOCK,))).fetchone()
    if not got[0]:
        await conn.close()
        raise LockLost("another delivery worker took over while the database was away; this one stops")
    log.info("delivery lock taken again after its connection was lost")
    return conn


async def _keep_lock(service: Service, url: str, conn: psycopg.AsyncConnection | None) -> None:
    """Hold the lock for the worker's life. When its connection is lost (PostgreSQL restarted), the lock went with
    it: take it again on a new connection; if another worker got it meanwhile, this one stops (``LockLost``)."""
    try:
        while conn is not None and not await service.sleep(LOCK_CHECK_S):
            try:
                await conn.execute("select 1")
            except psycopg.OperationalError:
                await conn.close()
                conn = None
            if conn is None:
                conn = await _retake(service, url)
    finally:
        if conn is not None:
            await conn.close()


async def deliver(service: Service, settings: Settings, url: str) -> None:
    """The worker's main: the single-worker lock, then a small pool, one HTTP client, the listener, and the loop."""
    lock = await single_worker_lock(service, url)
    if lock is None:
        return
    service.set_detail(standby=False)
    keeping = asyncio.create_task(_keep_lock(service, url, lock))
    keeping.add_done_callback(service.watch("single-worker lock"))
    try:
        await _deliver(service, settings, url)
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)


async def _deliver(service: Service, settings: Settings, url: str) -> None:
    async with AsyncConnectionPool(url, min_size=2, max_size=10, open=False,
                                   kwargs={"autocommit": True}) as pool, \
            egress.client(settings.webhook_allow_hosts, settings.webhook_timeout_s) as client:
        worker = DeliveryWorker(service, settings, pool, Sender(settings, client))
        listening = asyncio.create_task(_listen(service, url, worker))
        listening.add_done_callback(service.watch("listener"))
        running = asyncio.create_task(worker.run())
        running.add_done_callback(service.watch("delivery loop"))
        await service.until_stopped()
        worker.wake.set()
        await asyncio.gather(running, return_exceptions=True)
        listening.cancel()
