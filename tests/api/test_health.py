"""/healthz really probes the database and the broker."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from api.app import create_app
from core.settings import Settings
from ganzhi.benchkit import free_port


def test_healthy_with_database_and_broker(http):
    response = http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "up" and body["database"]["schema_version"] >= 2
    assert body["broker"]["status"] == "up"


def test_degraded_when_the_broker_is_down(db_url):
    port = free_port()
    dead_broker = f"mqtt://127.0.0.1:{free_port()}"
    settings = Settings(database_url=db_url, mqtt_url=dead_broker, http_port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db_url), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.status_code == 503
        assert response.json()["broker"]["status"] == "down"
        assert response.json()["database"]["status"] == "up"
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["info"]["title"] == "Ganzhi 感知"
    finally:
        server.should_exit = True
        thread.join(10)
