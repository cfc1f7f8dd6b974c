"""Webhook subscriptions over HTTP: who may make them, URL checks, the delivery log and replay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from tests.alerts.receiver import Receiver, reset_delivery, start_worker
from tests.alerts.test_delivery import _alerts, _subscribe, _wait_delivered
from tests.conftest import TLS, account_token


@pytest.fixture
def steward(api_url: str, db_url: str) -> Iterator[httpx.Client]:
    reset_delivery(db_url)  # no endpoints left by other tests (the rights matrix makes some)
    token = account_token(db_url, f"hook-steward-{dt.datetime.now().timestamp()}", ["steward_admin"], "sthjj")
    with httpx.Client(verify=TLS, base_url=api_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client
    reset_delivery(db_url)


def test_only_stewards_of_the_department_subscribe(api_url: str, db_url: str, steward: httpx.Client):
    operator = account_token(db_url, "hook-operator", ["operator"], "sthjj")
    other = account_token(db_url, "hook-steward-zjj", ["steward_admin"], "zjj")
    body = {"url": "https://8.8.8.8/hook", "families": ["river"]}
    made = steward.post("/api/v1/webhooks", json=body)
    assert made.status_code == 201 and made.json()["secret"].startswith("gzw_")
    assert "secret" not in steward.get("/api/v1/webhooks").json()["data"][0]
    assert httpx.post(f"{api_url}/api/v1/webhooks", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {operator}"}).status_code == 403
    assert httpx.post(f"{api_url}/api/v1/webhooks", json={**body, "department": "sthjj"}, timeout=30,
                      headers={"Authorization": f"Bearer {other}"}).status_code == 403
    hook = made.json()["id"]
    assert httpx.get(f"{api_url}/api/v1/webhooks/{hook}/deliveries", timeout=30,
                     headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert steward.delete(f"/api/v1/webhooks/{hook}").status_code == 204
    assert steward.get("/api/v1/webhooks").json()["data"] == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/", "http://localhost/", "http://10.0.0.5/",
                                 "http://169.254.169.254/latest/meta-data", "http://[fd00::1]/", "file:///etc/passwd",
                                 "http://[::ffff:127.0.0.1]/", "http://[::127.0.0.1]/", "http://[64:ff9b::a00:5]/",
                                 "http://[2002:7f00:1::]/"])
def test_internal_urls_are_refused(steward: httpx.Client, url: str):
    response = steward.post("/api/v1/webhooks", json={"url": url})
    assert response.status_code == 422 and "url" in response.text


def test_delivery_log_and_replay_of_a_time_range(db_url: str, steward: httpx.Client):
    reset_delivery(db_url)
    receiver = Receiver()  # on 127.0.0.1, which the API refuses: subscribed directly, sent by the allow-list
    hook = _subscribe(db_url, receiver.start())
    receiver.secret = hook["secret"]
    worker = start_worker(db_url)
    try:
        began = dt.datetime.now(dt.UTC)
        made = _alerts(db_url, 2, 2)
        _wait_delivered(db_url, hook["id"], len(made), 30)
        log = steward.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
        assert [row["event_id"] for row in log] == sorted(made, reverse=True)
        assert all(row["status"] == "delivered" and row["last_status"] == 204 for row in log)
        replayed = steward.post(f"/api/v1/webhooks/{hook['id']}/replay",
                                json={"from": began.isoformat(), "to": dt.datetime.now(dt.UTC).isoformat()})
        assert replayed.status_code == 202 and replayed.json()["queued"] == len(made)
        _wait_delivered(db_url, hook["id"], 2 * len(made), 30)
    finally:
        worker.terminate()
        worker.wait(20)
        receiver.stop()
    assert [event["id"] for event in receiver.received] == made + made
    assert [event["replay"] for event in receiver.received] == [False] * len(made) + [True] * len(made)
