"""The broker's logins follow the ledger: a new credential works within one sync, a retired device
stops working, and no secret is ever written in clear."""

from __future__ import annotations

import time

import psycopg
import pytest

from devices import encode_telemetry
from ganzhi import broker_auth
from registry import credentials, service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import terminal_in
from tests.mqtt import SERVICE_PASSWORD, SERVICE_USER, publish

RELOAD_S = 0.3
"""mosquitto re-reads its files on SIGHUP in its main loop, a moment later."""


def test_ledger_changes_reach_the_broker(conn, db_url, auth_broker):
    services = {SERVICE_USER: SERVICE_PASSWORD}
    directory = auth_broker.broker.auth_dir
    version = broker_auth._sync_once(db_url, directory, services, auth_broker.broker, None)
    code = service.create_terminal(conn, terminal_in(), Actor("test"))
    secret = credentials.issue(conn, code, Actor("test"))
    conn.commit()
    payload = [(f"ganzhi/v1/{code}/telemetry", encode_telemetry([{"metric": "a34004", "value": 1}]))]
    with pytest.raises(ConnectionRefusedError):
        publish(auth_broker.address, code, secret, payload)  # not in the broker's files yet

    version = broker_auth._sync_once(db_url, directory, services, auth_broker.broker, version)
    time.sleep(RELOAD_S)
    assert publish(auth_broker.address, code, secret, payload)[0] < 0x80  # accepted (0x10: no subscriber yet)

    service.update_terminal(conn, code, TerminalPatch(status="retired"), Actor("test"))
    conn.commit()
    broker_auth._sync_once(db_url, directory, services, auth_broker.broker, version)
    time.sleep(RELOAD_S)
    with pytest.raises(ConnectionRefusedError):
        publish(auth_broker.address, code, secret, payload)

    passwd = (directory / "passwd").read_text()
    assert secret not in passwd and SERVICE_PASSWORD not in passwd
    with psycopg.connect(db_url) as c:
        stored = c.execute("select secret_hash from device_credential where code = %s", (code,)).fetchone()[0]
    assert stored.startswith("$7$101$") and secret not in stored
