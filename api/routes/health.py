"""Health: really probes the database and the broker, and reports every service's heartbeat."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from core.broker import probe_broker
from core.runtime import HEARTBEAT_S

router = APIRouter(tags=["health"])

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


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 when the database, the broker and every service are up; 503 otherwise, with each one's state."""
    database, services = await run_in_threadpool(_probe_database, request.app.state.pool)
    host, port = request.app.state.settings.mqtt_host_port
    started = time.perf_counter()
    broker_up = await run_in_threadpool(probe_broker, host, port, 2.0)
    broker = {"status": "up" if broker_up else "down", "address": f"{host}:{port}",
              "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    healthy = (database["status"] == "up" and broker_up
               and all(service["status"] in ("up", "stopped") for service in services))
    return JSONResponse({"status": "ok" if healthy else "degraded", "database": database, "broker": broker,
                         "services": services}, status_code=200 if healthy else 503)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when this API process can serve: the database and the broker answer (the services are /healthz's
    business: a load balancer must not take the API out because a worker is down)."""
    database = await run_in_threadpool(_database_answers, request.app.state.pool)
    host, port = request.app.state.settings.mqtt_host_port
    broker = "ok" if await run_in_threadpool(probe_broker, host, port, 2.0) else f"{host}:{port} does not answer"
    ready = database == "ok" and broker == "ok"
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": {"database": database,
                                                                                 "broker": broker}},
                        status_code=200 if ready else 503)


def _database_answers(pool) -> str:
    try:
        with pool.connection(timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:  # any failure means the database is not usable
        return str(exc).strip()[:300] or type(exc).__name__
    return "ok"


def _probe_database(pool) -> tuple[dict, list[dict]]:
    started = time.perf_counter()
    try:
        with pool.connection(timeout=3) as conn:
            version = conn.execute("select max(version) from schema_migration").fetchone()[0]
            server = conn.execute("show server_version").fetchone()[0]
            rows = conn.execute(_SERVICES, {"forget": FORGET_AFTER_S}).fetchall()
    except Exception as exc:  # any failure means the database is not usable
        return {"status": "down", "error": str(exc).strip()[:300]}, []
    database = {"status": "up", "server_version": server, "schema_version": version,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    return database, [_service(*row) for row in rows]


def _service(name, kind, host, pid, state, detail, counters, started_at, beat_at, silent_s) -> dict:
    if state == "running" and silent_s > STALE_AFTER_S:
        status = "stale"
    else:
        status = {"running": "up", "failed": "failed", "stopped": "stopped"}[state]
    return {"name": name, "kind": kind, "status": status, "host": host, "pid": pid, "detail": detail,
            "counters": counters, "started_at": started_at.isoformat(), "beat_at": beat_at.isoformat(),
            "silent_s": round(silent_s, 1)}
