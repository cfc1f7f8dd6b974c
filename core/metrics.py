"""Metrics of one service, in the Prometheus text format, and the small HTTP endpoint that serves them.

Every service owns a registry of its own: tests run several services in one process, and each
must count only its own work. The same metrics feed the heartbeat row (totals of every counter,
shown by the API's /healthz), so there is one way to count. Code below the services that counts
for the whole process (alerts opened by ``alerts.service``, the process's CPU and memory) uses
prometheus_client's global registry, which every endpoint serves too.

The endpoint serves ``/metrics`` (Prometheus), ``/healthz`` (the process lives and no component
died) and ``/readyz`` (every dependency answers: the database, the broker where one is used). It is
off unless ``GANZHI_METRICS_PORT`` is set, listens on ``GANZHI_METRICS_HOST`` (127.0.0.1 by
default), and asks for ``GANZHI_METRICS_TOKEN`` as a bearer token on /metrics when that is set.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

PREFIX = "ganzhi_"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds, from a fast commit to a slow webhook."""
SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10_000)

Check = Callable[[], str | None]
"""A readiness check: None when the dependency answers, else why not."""


class Metrics:
    """The metrics of one service: declared by its modules, counted by them, read by the endpoint and the
    heartbeat. Names get the ``ganzhi_`` prefix; counters get ``_total`` from prometheus_client."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters: dict[str, Counter] = {}

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
        metric = Counter(PREFIX + name, doc, tuple(labels), registry=self.registry)
        self._counters[name] = metric
        return metric

    def histogram(self, name: str, doc: str, buckets: Iterable[float] = LATENCY_BUCKETS,
                  labels: Iterable[str] = ()) -> Histogram:
        return Histogram(PREFIX + name, doc, tuple(labels), buckets=tuple(buckets), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, doc, tuple(labels), registry=self.registry)

    def totals(self) -> dict[str, float]:
        """Each counter's total over its labels, by declared name (for the heartbeat row and the stop line)."""
        totals = {}
        for name, metric in self._counters.items():
            value = sum(sample.value for family in metric.collect() for sample in family.samples
                        if sample.name.endswith("_total"))
            totals[name] = int(value) if value == int(value) else value
        return totals

    def text(self) -> bytes:
        """The service's metrics, then the process's (CPU seconds, memory, alerts opened, ...)."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)


def totals_line(totals: dict[str, float]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(totals.items()) if value)


class Endpoint:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one service, served from a thread of its own."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict], checks: Callable[[], dict[str, Check]],
                 host: str, port: int, token: str | None = None) -> None:
        self.metrics, self.health, self.checks, self.token = metrics, health, checks, token
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics endpoint", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Endpoint:
        self._thread.start()
        log.info("metrics, healthz and readyz on http://%s:%d", *self._server.server_address[:2])
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Run every check; a check that raises counts as failed with its error."""
        results = {}
        for name, check in self.checks().items():
            try:
                problem = check()
            except Exception as exc:  # a probe failing in any way means not ready
                problem = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            results[name] = "ok" if problem is None else problem
        return all(value == "ok" for value in results.values()), results

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            if not self.endpoint.authorized(self.headers.get("Authorization")):
                self._send(401, b"a bearer token (GANZHI_METRICS_TOKEN) is required\n", "text/plain")
                return
            self._send(200, self.endpoint.metrics.text(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            health = self.endpoint.health()
            self._json(200 if health.get("status") == "ok" else 503, health)
        elif path == "/readyz":
            ready, checks = self.endpoint.ready()
            self._json(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})
        else:
            self._send(404, b"not found: /metrics, /healthz or /readyz\n", "text/plain")

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body, default=str).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Scrapes every few seconds are not worth a log line."""
