"""Health: really probes the database and the broker, and reports every service's heartbeat."""

from __future__ import annotations

import datetime as dt
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.broker import probe_broker
from core.runtime import HEARTBEAT_S

router = APIRouter(tags=["health"])


class DatabaseHealth(BaseModel):
    status: Literal["up", "down"]
    server_version: str | None = Field(default=None, description="PostgreSQL's; only when up")
    schema_version: int | None = Field(default=None, description="the newest migration applied; only when up")
    latency_ms: float | None = Field(default=None, description="the probe's round trips; only when up")
    error: str | None = Field(default=None, description="why it is down; only when down")


class BrokerHealth(BaseModel):
    status: Literal["up", "down"]
    address: str = Field(description="host:port probed")
    latency_ms: float


class ServiceFailure(BaseModel):
    component: str = Field(description="the part of the service that died")
    reason: str


class ServiceHealth(BaseModel):
    name: str
    kind: str = Field(description="ingest, rules, fire, dispatch-sweep, ...")
    status: Literal["up", "stale", "failed", "stopped"] = Field(
        description="stale: running but silent for three heartbeats (hung, killed or cut off)")
    host: str
    pid: int
    detail: dict[str, ServiceFailure | str | int | float | bool | None] = Field(
        description="facts the service states about itself (shard, members, standby, ...); `failed`, when it died")
    counters: dict[str, int | float] = Field(description="each of its counters' totals, by name")
    started_at: dt.datetime
    beat_at: dt.datetime = Field(description="its last heartbeat")
    silent_s: float = Field(description="seconds since its last heartbeat")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: DatabaseHealth
    broker: BrokerHealth
    services: list[ServiceHealth] = Field(description="every service heard from in the last ten minutes")


class ReadyChecks(BaseModel):
    database: str = Field(description="ok, or why the database cannot be used")
    broker: str = Field(description="ok, or that the broker does not answer")


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    checks: ReadyChecks


def _answer(body: BaseModel, ok: bool) -> JSONResponse:
    """The body as built (a field left out stays out), 200 or 503."""
    return JSONResponse(body.model_dump(mode="json", exclude_unset=True), status_code=200 if ok else 503)


STALE_AFTER_S = 3 * HEARTBEAT_S
"""A service that missed three heartbeats is stale: hung, killed, or cut off from the database."""
FORGET_AFTER_S = 600
"""A service silent for longer is gone (retired, renamed) and no longer judged."""

_SERVICES = """
select name, kind, host, pid, state, detail, counters, started_at, beat_at,
       extract(epoch from now() - beat_at)::float8 as silent_s
  from service_heartbeat
 where beat_at > now() - make_interval(secs => %(forget)s)
 order by kind, name
"""


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "degraded"}})
async def healthz(request: Request) -> JSONResponse:
    """200 when the database, the broker and every service are up; 503 otherwise, with each one's state."""
    database, services = await run_in_threadpool(_probe_database, request.app.state.pool)
    host, port = request.app.state.settings.mqtt_host_port
    started = time.perf_counter()
    broker_up = await run_in_threadpool(probe_broker, host, port, 2.0)
    broker = BrokerHealth(status="up" if broker_up else "down", address=f"{host}:{port}",
                          latency_ms=round((time.perf_counter() - started) * 1000, 1))
    healthy = (database.status == "up" and broker_up
               and all(service.status in ("up", "stopped") for service in services))
    return _answer(Health(status="ok" if healthy else "degraded", database=database, broker=broker,
                          services=services), healthy)


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready, "description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """200 when this API process can serve: the database and the broker answer (the services are /healthz's
    business: a load balancer must not take the API out because a worker is down)."""
    database = await run_in_threadpool(_database_answers, request.app.state.pool)
    host, port = request.app.state.settings.mqtt_host_port
    broker = "ok" if await run_in_threadpool(probe_broker, host, port, 2.0) else f"{host}:{port} does not answer"
    ready = database == "ok" and broker == "ok"
    return _answer(Ready(status="ready" if ready else "not ready",
                         checks=ReadyChecks(database=database, broker=broker)), ready)


def _database_answers(pool) -> str:
    try:
        with pool.connection(timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:  # any failure means the database is not usable
        return str(exc).strip()[:300] or type(exc).__name__
    return "ok"


def _probe_database(pool) -> tuple[DatabaseHealth, list[ServiceHealth]]:
    started = time.perf_counter()
    try:
        with pool.connection(timeout=3) as conn:
            version = conn.execute("select max(version) from schema_migration").fetchone()[0]
            server = conn.execute("show server_version").fetchone()[0]
            rows = conn.execute(_SERVICES, {"forget": FORGET_AFTER_S}).fetchall()
    except Exception as exc:  # any failure means the database is not usable
        return DatabaseHealth(status="down", error=str(exc).strip()[:300]), []
    database = DatabaseHealth(status="up", server_version=server, schema_version=version,
                              latency_ms=round((time.perf_counter() - started) * 1000, 1))
    return database, [_service(*row) for row in rows]


def _service(name, kind, host, pid, state, detail, counters, started_at, beat_at, silent_s) -> ServiceHealth:
    if state == "running" and silent_s > STALE_AFTER_S:
        status = "stale"
    else:
        status = {"running": "up", "failed": "failed", "stopped": "stopped"}[state]
    return ServiceHealth(name=name, kind=kind, status=status, host=host, pid=pid, detail=detail, counters=counters,
                         started_at=started_at, beat_at=beat_at, silent_s=round(silent_s, 1))
