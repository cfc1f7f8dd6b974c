"""Observability of real services: /metrics scraped over HTTP from a running `ganzhi ingest` and `ganzhi
analytics` (counters moved by what was published), /healthz and /readyz per service, JSON log lines that carry
the terminal code and the alert id, and the API's /metrics (token) and /readyz."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from core.runtime import Service, serve_endpoint
from core.settings import Settings
from devices import encode_telemetry
from ganzhi.benchkit import free_port
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from tests.factories import terminal_in
from tests.mqtt import SERVICE_PASSWORD, give_secret, publish, wait_until

TOKEN = "metrics-token-for-tests"


def scrape(url: str, token: str | None = TOKEN) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics page: (name, labels) → value."""
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10)
    response.raise_for_status()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Spawned:
    """A `ganzhi` service in a process of its own, with its metrics endpoint and JSON logs on stderr."""

    def __init__(self, args: list[str], db_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = dict(os.environ, DATABASE_URL=db_url, GANZHI_METRICS_PORT=str(self.port),
                           GANZHI_METRICS_TOKEN=TOKEN, GANZHI_LOG_FORMAT="json", GANZHI_LOG_LEVEL="INFO", **env)
        self.process = subprocess.Popen([sys.executable, "-m", "ganzhi", *args], env=environment,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=10)
        except httpx.TransportError:
            return None

    def wait_ready(self) -> None:
        wait_until(lambda: (r := self.get("/readyz")) is not None and r.status_code == 200, timeout_s=60)

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(30)
        self._reader.join(10)
        self.process.stderr.close()
        return code

    def logs(self) -> list[dict]:
        """Every line as JSON: a line that is not JSON fails the test."""
        return [json.loads(line) for line in self.lines if line.strip()]


def test_an_ingest_worker_counts_what_was_published_on_its_metrics_endpoint(conn, db_url, auth_broker):
    code = service.create_terminal(conn, terminal_in(), Actor("test"))
    conn.commit()
    give_secret(db_url, code)
    auth_broker.sync()
    host, port = auth_broker.address
    worker = Spawned(["ingest", "--client-id", "obs-ingest"], db_url, MQTT_URL=f"mqtt://{host}:{port}",
                     GANZHI_MQTT_PASSWORD=SERVICE_PASSWORD)
    try:
        worker.wait_ready()
        assert worker.get("/healthz").json()["status"] == "ok"
        assert httpx.get(f"{worker.url}/metrics", timeout=10).status_code == 401  # the token is set: asked for
        before = scrape(worker.url)
        now = int(time.time() * 1000)
        good = [encode_telemetry([{"metric": "a34004", "value": 30 + i}, {"metric": "a34002", "value": 50 + i}],
                                 now - 1000 * i) for i in range(5)]
        messages = [(f"ganzhi/v1/{code}/telemetry", p) for p in [*good, good[0], b"{not json"]]
        publish(auth_broker.address, code, "s3cret", messages)
        wait_until(lambda: value(scrape(worker.url), "ganzhi_ingest_readings_repeated_total") - value(
            before, "ganzhi_ingest_readings_repeated_total") >= 2, timeout_s=30)
        after = scrape(worker.url)
    finally:
        exit_code = worker.stop()
    assert exit_code == 0

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Exact for this terminal; the shared subscription may also hand this worker messages left in the broker
    # by earlier tests (from terminals gone from the ledger since: dead letters of unknown publishers).
    others = moved("ganzhi_ingest_dead_letters_total", reason="unknown_publisher")
    assert moved("ganzhi_ingest_messages_total") == 7 + others
    assert moved("ganzhi_ingest_readings_stored_total") == 10
    assert moved("ganzhi_ingest_readings_repeated_total") == 2  # the message sent twice is stored once
    assert moved("ganzhi_ingest_dead_letters_total", reason="payload") == 1
    assert moved("ganzhi_ingest_lag_seconds_count") == 6  # one observation per message with readings
    assert moved("ganzhi_ingest_batch_size_sum") == 7 + others
    assert value(after, "ganzhi_ingest_inflight") == 0  # everything acknowledged
    assert value(after, "process_cpu_seconds_total") > 0
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from reading").fetchone()[0] == 10
    logs = worker.logs()
    assert any("connected" in line["message"] for line in logs)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in logs)


def test_a_rule_worker_logs_json_with_terminal_and_alert_id_and_counts_evaluations(conn, db_url):
    code = service.create_terminal(conn, terminal_in("甲烷观测", "methane_detector"), Actor("test"))
    conn.commit()
    rules = Spawned(["analytics", "--name", "rules-obs"], db_url)
    try:
        rules.wait_ready()
        before = scrape(rules.url)
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        conn.commit()
        with psycopg.connect(db_url) as c:
            Writer().write(c, Batch(readings=[Accepted(terminal_id, code, "methane_lel", int(time.time() * 1000),
                                                       60.0, None)]))
        wait_until(lambda: conn.execute("select count(*) from alert").fetchone()[0] == 1 and not conn.commit(),
                   timeout_s=30)
        alert_id = conn.execute("select id from alert").fetchone()[0]
        conn.commit()
        wait_until(lambda: value(scrape(rules.url), "ganzhi_rules_evaluations_total") > value(
            before, "ganzhi_rules_evaluations_total"))
        after = scrape(rules.url)
    finally:
        assert rules.stop() == 0
    opened = sum(v for (name, _), v in after.items() if name == "ganzhi_alerts_opened_total")
    assert opened == 1
    assert value(after, "ganzhi_rules_lag_seconds_count") >= 1
    lines = [line for line in rules.logs() if line.get("alert_id") == alert_id]
    assert lines and lines[0]["terminal"] == code and "opened" in lines[0]["message"]


def test_readyz_is_503_while_the_database_is_unreachable(db_url):
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    down = Service("test", "test without a database", unreachable)
    endpoint = serve_endpoint(down, Settings(metrics_port=0))
    up = Service("test", "test with its database", db_url)
    up.add_check("broker", lambda: "not connected to the broker")
    endpoint_up = serve_endpoint(up, Settings(metrics_port=0))
    try:
        response = httpx.get(f"http://127.0.0.1:{endpoint.port}/readyz", timeout=10)
        assert response.status_code == 503
        assert response.json()["checks"]["database"] != "ok"
        assert httpx.get(f"http://127.0.0.1:{endpoint.port}/healthz", timeout=10).status_code == 200  # alive
        checks = httpx.get(f"http://127.0.0.1:{endpoint_up.port}/readyz", timeout=10).json()["checks"]
        assert checks == {"database": "ok", "broker": "not connected to the broker"}
        down.state = "failed"  # a component died: not healthy any more
        assert httpx.get(f"http://127.0.0.1:{endpoint.port}/healthz", timeout=10).status_code == 503
    finally:
        endpoint.close()
        endpoint_up.close()


@pytest.fixture(scope="module")
def api_with_token(db_url: str, broker: tuple[str, int]) -> Iterator[str]:
    port = free_port()
    settings = Settings(database_url=db_url, mqtt_url=f"mqtt://{broker[0]}:{broker[1]}", http_port=port,
                        metrics_token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db_url), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_api_metrics_need_the_token_and_count_requests_by_route(api_url, api_with_token):
    assert httpx.get(f"{api_url}/metrics", timeout=10).status_code == 404  # no token set: no metrics
    assert httpx.get(f"{api_with_token}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{api_with_token}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10
                     ).status_code == 401
    before = scrape(api_with_token)
    for _ in range(3):
        httpx.get(f"{api_with_token}/api/v1/terminals/231202-0001", timeout=10)  # 401: no credentials
    after = scrape(api_with_token)
    route = {"method": "GET", "route": "/api/v1/terminals/{code}", "status": "401"}
    assert value(after, "ganzhi_http_requests_total", **route) - value(before, "ganzhi_http_requests_total",
                                                                       **route) == 3
    assert value(after, "ganzhi_api_db_pool_size") >= 1


def test_api_readyz_probes_the_database_and_the_broker(api_url):
    response = httpx.get(f"{api_url}/readyz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
