"""Webhook fan-out through the endpoint's department's rights, to a real local receiver: an endpoint of 住建局
(zjj) gets no environmental alert of 生态环境局 (sthjj), and gets those routed to it or granted to it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from alerts import webhooks
from registry import service
from registry.changes import Actor
from tests.alerts.receiver import Receiver, reset_delivery, start_worker
from tests.factories import river_station, terminal_in


@pytest.fixture
def db(db_url: str, conn) -> Iterator[str]:
    reset_delivery(db_url)
    yield db_url
    reset_delivery(db_url)
    with psycopg.connect(db_url) as c:
        c.execute("delete from sharing_grant where grantee_code = 'zjj'")


def _alert(c: psycopg.Connection, code: str, bureau: str, family: str) -> int:
    return c.execute(
        """
        insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                           observed_start, detail)
        select id, 'test:' || %s, %s, 'warning', %s, department_code, division_code, now(), 'test'
          from terminal where code = %s returning id
        """, (family, family, bureau, code)).fetchone()[0]


def _fanned_out(url: str, webhook_id: int, expected: int, seconds: float) -> None:
    """The fan-out has read the whole feed, and every delivery it made for the endpoint (``expected`` at least)
    is delivered: a leaked one would be among them."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            read, end, done, waiting = c.execute(
                "select (select feed_id from webhook_cursor), (select max(id) from alert_feed), "
                "count(*) filter (where status = 'delivered'), count(*) filter (where status <> 'delivered') "
                "from webhook_delivery where webhook_id = %s", (webhook_id,)).fetchone()
            if read >= end and done >= expected and not waiting:
                return
            time.sleep(0.2)
    raise AssertionError(f"fan-out at {read} of {end}, {done} of {expected} delivered in {seconds} s")


def test_an_endpoint_of_the_housing_bureau_gets_routed_and_granted_alerts_only(db: str):
    receiver = Receiver()
    with psycopg.connect(db) as c:
        hook = webhooks.create(c, department="zjj", channel="webhook", target=receiver.start(), families=None,
                               severities=None, division=None, created_by="test")
        setup = Actor("setup")
        river = service.create_terminal(c, river_station(department="sthjj"), setup)
        air = service.create_terminal(c, terminal_in("推送空气站", department="sthjj"), setup)
        c.execute("insert into sharing_grant (steward_code, grantee_code, kind, granted_by) "
                  "values ('sthjj', 'zjj', 'air_sensor', 'setup')")
        _alert(c, river, "environment", "river")  # sthjj's, environmental: not 住建局's
        routed = _alert(c, river, "housing", "water")  # the housing bureau's: routed to 住建局
        granted = _alert(c, air, "steward", "device")  # on a terminal granted to 住建局
    worker = start_worker(db)
    try:
        _fanned_out(db, hook["id"], 2, 60)
    finally:
        worker.terminate()
        worker.wait(30)
        receiver.stop()
    assert {event["alert_id"] for event in receiver.received} == {routed, granted}
