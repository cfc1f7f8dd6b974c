"""Health: really probes the database and the broker."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from core.broker import probe_broker

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 when the database and the broker answer, 503 otherwise, with each one's state."""
    database = await run_in_threadpool(_probe_database, request.app.state.pool)
    host, port = request.app.state.settings.mqtt_host_port
    started = time.perf_counter()
    broker_up = await run_in_threadpool(probe_broker, host, port, 2.0)
    broker = {"status": "up" if broker_up else "down", "address": f"{host}:{port}",
              "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    healthy = database["status"] == "up" and broker_up
    return JSONResponse({"status": "ok" if healthy else "degraded", "database": database, "broker": broker},
                        status_code=200 if healthy else 503)


def _probe_database(pool) -> dict:
    started = time.perf_counter()
    try:
        with pool.connection(timeout=3) as conn:
            version = conn.execute("select max(version) from schema_migration").fetchone()[0]
            server = conn.execute("show server_version").fetchone()[0]
    except Exception as exc:  # any failure means the database is not usable
        return {"status": "down", "error": str(exc).strip()[:300]}
    return {"status": "up", "server_version": server, "schema_version": version,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
