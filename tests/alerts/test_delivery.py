"""The delivery worker as a process against real receivers: at least once, in order per alert, signed,
isolated per endpoint, across a kill -9 and a PostgreSQL restart; SMS to the local double; pausing of an
endpoint failing too long."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from alerts import webhooks
from alerts.delivery import deliver
from core.embedded import EmbeddedPostgres
from core.runtime import Service
from core.settings import Settings
from ganzhi.bench_delivery import NEXT_SEVERITY
from ganzhi.benchkit import free_port
from ganzhi.database import prepare
from registry import service
from registry.changes import Actor
from tests.alerts.receiver import Receiver, reset_delivery, start_worker
from tests.factories import terminal_in


@pytest.fixture
def db(db_url: str, conn) -> Iterator[str]:
    """The session database, with no endpoints; its ledger and alerts are emptied after the test (``conn``)."""
    reset_delivery(db_url)
    yield db_url
    reset_delivery(db_url)


def _subscribe(url: str, target: str, channel: str = "webhook", **filters) -> dict:
    with psycopg.connect(url) as c:
        return webhooks.create(c, department="sthjj", channel=channel, target=target,
                               families=filters.get("families"), severities=filters.get("severities"),
                               division=None, created_by="test")


def _alerts(url: str, count: int, changes: int, pause: float = 0.0) -> list[int]:
    """``count`` alerts of 生态环境局, each opened then changed ``changes`` times, interleaved; all feed ids."""
    with psycopg.connect(url) as c:
        codes = [service.create_terminal(c, terminal_in(f"投递站{n}", department="sthjj"), Actor("setup"))
                 for n in range(count)]
        start = c.execute("select coalesce(max(id), 0) from alert_feed").fetchone()[0]
        ids = [c.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'gb3838:w01009', 'river', 'warning', 'environment', 'sthjj', division_code, now(), '0'
              from terminal where code = %s returning id
            """, (code,)).fetchone()[0] for code in codes]
    with psycopg.connect(url, autocommit=True) as c:
        for _ in range(changes):
            for alert in ids:
                c.execute(NEXT_SEVERITY, (alert,))
            time.sleep(pause)
        return [row[0] for row in c.execute("select id from alert_feed where id > %s and kind = 'alert' "
                                            "order by id", (start,))]


def _wait_delivered(url: str, webhook_id: int, expected: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            done = c.execute("select count(*) from webhook_delivery where webhook_id = %s and status = 'delivered'",
                             (webhook_id,)).fetchone()[0]
            if done >= expected:
                return
            time.sleep(0.2)
    raise AssertionError(f"{done} of {expected} delivered to webhook {webhook_id} in {seconds} s")


def _assert_in_order(receiver: Receiver) -> None:
    for alert, ids in receiver.first_receipts_per_alert().items():
        assert ids == sorted(ids), f"alert {alert} arrived out of order: {ids}"


def test_nothing_lost_or_reordered_across_kill_9_of_the_worker(db: str):
    receiver = Receiver(fail_rate=0.2)
    hook = _subscribe(db, receiver.start())
    receiver.secret = hook["secret"]
    worker = start_worker(db)
    try:
        made: list[int] = []
        writer = threading.Thread(target=lambda: made.extend(_alerts(db, 10, 12, pause=0.1)))
        writer.start()
        time.sleep(1.5)
        worker.send_signal(signal.SIGKILL)  # mid-stream, with deliveries sent but perhaps not yet marked
        worker.wait(10)
        writer.join()
        worker = start_worker(db)
        _wait_delivered(db, hook["id"], len(made), 120)
    finally:
        worker.terminate()
        worker.wait(20)
        receiver.stop()
    assert len(made) == 10 * 13
    assert receiver.ids() == set(made)  # nothing lost (duplicates allowed: at least once, same key)
    times = [(dt.datetime.fromisoformat(e["at"]), e["at"]) for e in receiver.received]
    assert all(at.isoformat() == text and at.tzinfo is not None for at, text in times)  # RFC 3339, an offset
    _assert_in_order(receiver)
    assert receiver.bad_signatures == 0


def test_a_dead_or_slow_endpoint_delays_no_other(db: str):
    healthy, dead, slow = Receiver(), Receiver(dead=True), Receiver(delay=1.5)
    hooks = [_subscribe(db, r.start()) for r in (healthy, dead, slow)]
    for receiver, hook in zip((healthy, dead, slow), hooks, strict=True):
        receiver.secret = hook["secret"]
    worker = start_worker(db)
    try:
        made = _alerts(db, 5, 3)
        began = time.monotonic()
        _wait_delivered(db, hooks[0]["id"], len(made), 30)
        took = time.monotonic() - began
    finally:
        worker.terminate()
        worker.wait(20)
        for receiver in (healthy, dead, slow):
            receiver.stop()
    assert took < 15, f"the healthy endpoint waited {took:.1f} s behind the others"  # slow alone would take 30 s
    assert healthy.ids() == set(made) and not dead.received
    _assert_in_order(healthy)
    _assert_in_order(slow)


def test_an_endpoint_failing_too_long_is_paused(db: str):
    dead = Receiver(dead=True)
    hook = _subscribe(db, dead.start())
    worker = start_worker(db, GANZHI_WEBHOOK_PAUSE_AFTER_S="1")
    try:
        _alerts(db, 1, 0)
        deadline = time.monotonic() + 30
        with psycopg.connect(db, autocommit=True) as c:
            while c.execute("select paused_at from webhook where id = %s", (hook["id"],)).fetchone()[0] is None:
                assert time.monotonic() < deadline, "the failing endpoint was not paused"
                time.sleep(0.2)
            row = c.execute("select status, attempts, last_status from webhook_delivery where webhook_id = %s",
                            (hook["id"],)).fetchone()
    finally:
        worker.terminate()
        worker.wait(20)
        dead.stop()
    assert row[0] == "pending" and row[1] >= 2 and row[2] == 503


def test_sms_goes_to_the_local_gateway_double_once(db: str):
    hook = _subscribe(db, "+8613800000000", channel="sms")
    worker = start_worker(db)
    try:
        made = _alerts(db, 2, 1)
        _wait_delivered(db, hook["id"], len(made), 30)
    finally:
        worker.terminate()
        worker.wait(20)
    with psycopg.connect(db) as c:
        texts = c.execute("select phone, body from sms_outbox order by id").fetchall()
    assert len(texts) == len(made) and all(phone == "+8613800000000" and "【感知】" in body for phone, body in texts)


def test_webhook_url_checks_refuse_internal_addresses():
    for url in ("http://127.0.0.1/x", "http://10.1.2.3/", "http://169.254.169.254/latest", "http://[::1]/",
                "http://224.0.0.1/", "http://0.0.0.0/", "http://localhost:8080/", "ftp://example.com/",
                "http://user:pw@example.com/"):
        with pytest.raises(webhooks.TargetRefused):
            webhooks.check_url(url, [])
    webhooks.check_url("http://127.0.0.1:9/x", ["127.0.0.1"])  # the explicit allow-list (tests)
    webhooks.check_url("https://8.8.8.8/hook", [])


def test_nothing_lost_or_reordered_across_a_postgresql_restart():
    """On a server of its own: stopped and started under the worker, which waits the outage out."""
    data_dir = Path(tempfile.mkdtemp(prefix="ganzhi-pg-delivery-"))
    data_dir.chmod(0o755)  # the embedded server runs as its own user
    server = EmbeddedPostgres(data_dir / "pgdata", free_port())
    url = server.start()
    receiver = Receiver(fail_rate=0.1, delay=0.1)
    worker = None
    try:
        prepare(url, Settings(database_url=None))
        hook = _subscribe(url, receiver.start())
        receiver.secret = hook["secret"]
        worker = start_worker(url)
        made = _alerts(url, 5, 6, pause=0.05)
        _wait_delivered(url, hook["id"], 3, 60)  # mid-stream
        with psycopg.connect(url) as c:
            delivered = c.execute("select count(*) from webhook_delivery where status = 'delivered'").fetchone()[0]
        before_restart = len(made)
        server.stop()
        time.sleep(2)
        server.start()
        made += _alerts(url, 5, 6)
        _wait_delivered(url, hook["id"], len(made), 120)
        assert worker.poll() is None, "the worker died with the database instead of waiting for it"
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        receiver.stop()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert delivered < before_restart, "the restart came after the deliveries: it tested nothing"
    assert receiver.ids() == set(made)
    _assert_in_order(receiver)


REBINDING = "hooks.rebind.example"


class _RebindingDns:
    """``socket.getaddrinfo`` as a rebinding attacker's DNS answers for ``REBINDING`` (TTL 0): a public address
    the first time, 127.0.0.1 every time after. Other names resolve as usual."""

    def __init__(self, real) -> None:
        self.real = real
        self.answers: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        if host not in (REBINDING, REBINDING.encode()):
            return self.real(host, port, *args, **kwargs)
        address = "2001:4860:4860::8888" if not self.answers else "127.0.0.1"
        self.answers.append(address)
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port), 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]


def test_a_name_rebinding_to_loopback_between_check_and_connect_reaches_nothing(db: str, monkeypatch):
    """The delivery worker (in this process, so that its DNS answers can be the attacker's) must never connect
    to the local receiver the name turns into, at any attempt."""
    receiver = Receiver()
    port = urlsplit(receiver.start()).port
    dns = _RebindingDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    hook = _subscribe(db, f"http://{REBINDING}:{port}/hook")  # its check at creation would have passed too
    settings = Settings(database_url=db, webhook_allow_hosts=[], webhook_retry_base_s=0.2, webhook_retry_cap_s=0.5,
                        webhook_timeout_s=2)
    service = Service("deliver", "test rebinding", db)
    worker = threading.Thread(target=asyncio.run, args=(deliver(service, settings, db),))
    worker.start()
    try:
        _alerts(db, 1, 0)
        deadline = time.monotonic() + 60
        with psycopg.connect(db, autocommit=True) as c:
            while True:
                row = c.execute("select status, attempts, last_error from webhook_delivery where webhook_id = %s",
                                (hook["id"],)).fetchone()
                if (row and (row[0] == "delivered" or row[1] >= 3)) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        service.request_stop()
        worker.join(30)
        receiver.stop()
    assert not receiver.received, "a webhook reached the loopback address its name was rebound to"
    assert row is not None and row[0] == "pending" and row[1] >= 3, row
    assert "internal addresses (127.0.0.1)" in row[2]
    assert dns.answers[0] != "127.0.0.1" and "127.0.0.1" in dns.answers  # the attacker's DNS was asked again


def _department_disabled(url: str, code: str, disabled: bool) -> None:
    with psycopg.connect(url) as c:
        c.execute("update department set disabled_at = case when %(d)s then now() end where code = %(code)s",
                  {"d": disabled, "code": code})


def test_a_disabled_departments_endpoints_wait_and_resume_when_it_is_enabled(db: str):
    """Paused, not deleted: no delivery is made for it while disabled, the queued ones wait, then go."""
    with psycopg.connect(db) as c:
        c.execute("insert into department (code, name, name_en, bureau) values ('tjj', '绥化市统计局', "
                  "'Statistics Bureau', 'other') on conflict do nothing")
        c.execute("insert into sharing_grant (steward_code, grantee_code, granted_by) values ('sthjj', 'tjj', 'test')")
        paused = webhooks.create(c, department="tjj", channel="webhook", target=(tjj := Receiver()).start(),
                                 families=None, severities=None, division=None, created_by="test")
    tjj.secret = paused["secret"]
    control = Receiver()
    hook = _subscribe(db, control.start())
    control.secret = hook["secret"]
    queued = _alerts(db, 2, 1)
    with psycopg.connect(db) as c:  # queued for tjj before it is disabled (the worker is not running)
        c.execute(*webhooks.fan_out_statement({"id": paused["id"], "department": "tjj"}, min(queued) - 1, max(queued)))
    _department_disabled(db, "tjj", True)
    worker = start_worker(db)
    try:
        while_disabled = _alerts(db, 2, 1)
        _wait_delivered(db, hook["id"], len(queued) + len(while_disabled), 30)
        assert not tjj.received
        _department_disabled(db, "tjj", False)
        _wait_delivered(db, paused["id"], len(queued), 30)
    finally:
        _department_disabled(db, "tjj", False)
        worker.terminate()
        worker.wait(20)
        tjj.stop()
        control.stop()
    assert tjj.ids() == set(queued) and control.ids() == set(queued + while_disabled)
    with psycopg.connect(db) as c:
        assert c.execute("select count(*) from webhook_delivery where webhook_id = %s",
                         (paused["id"],)).fetchone()[0] == len(queued)
