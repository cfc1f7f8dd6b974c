"""The API's own metrics: requests by route and status, their latency, and the database pool.

``GET /metrics`` answers only a caller with ``GANZHI_METRICS_TOKEN`` as its bearer token, and only when
that setting is set (denied by default: the API is public, its metrics are not). Prometheus sends the
token with ``authorization: {credentials_file: ...}`` in its scrape config.
"""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.metrics import Metrics

router = APIRouter(include_in_schema=False)  # for Prometheus, not for the API's clients


class _Requests:
    """ASGI middleware (not BaseHTTPMiddleware: the live stream must pass through unbuffered)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.requests = metrics.counter("http_requests", "HTTP requests by method, route and status",
                                        ["method", "route", "status"])
        self.seconds = metrics.histogram("http_request_seconds", "time to the response's first byte, by route",
                                         labels=["method", "route"])

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                self.seconds.labels(scope["method"], _route(scope)).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.requests.labels(scope["method"], _route(scope), str(status[0])).inc()


def _route(scope) -> str:
    """The route's template (``/api/v1/terminals/{code}``), never the raw path: labels must stay few."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class _PoolCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self):
        stats = self.app.state.pool.get_stats()
        for key, doc in (("pool_size", "connections the pool holds"), ("pool_available", "idle connections"),
                         ("requests_waiting", "requests waiting for a connection")):
            family = GaugeMetricFamily(f"ganzhi_api_db_{key}", doc)
            family.add_metric([], stats.get(key, 0))
            yield family


def install(app: FastAPI) -> None:
    """Count every request and serve /metrics."""
    metrics = Metrics()
    metrics.registry.register(_PoolCollector(app))
    app.state.metrics = metrics
    app.add_middleware(_Requests, metrics=metrics)
    app.include_router(router)


@router.get("/metrics")
def prometheus_metrics(request: Request) -> Response:
    secret = request.app.state.settings.metrics_token
    if secret is None:
        raise HTTPException(404, "metrics are off: set GANZHI_METRICS_TOKEN and scrape with it as a bearer token")
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        raise HTTPException(401, "/metrics needs GANZHI_METRICS_TOKEN as a bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return Response(request.app.state.metrics.text(), media_type=CONTENT_TYPE_LATEST)
