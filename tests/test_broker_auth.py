"""The broker's doors against a real mosquitto whose logins follow the ledger (`ganzhi up`'s broker sync):
devices publish only as themselves, subscribe only to their own commands, cannot take another client's
session, and ledger changes reach the broker within a second."""

from __future__ import annotations

import asyncio
import errno
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core import dynsec
from core.broker import BrokerMissing, LocalBroker
from devices import encode_telemetry
from ganzhi import broker_auth
from ganzhi.benchkit import free_port
from registry import credentials, demo, service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import terminal_in
from tests.mqtt import SERVICE_PASSWORD, AuthBroker, Session, WorkerThread, can_log_in, give_secret, publish, wait_until
from tests.netfault import SilencingProxy

ACTOR = Actor("test")
NOT_AUTHORIZED = 0x87
AT_ONCE_S = 1.0


def _device(conn, db_url, auth_broker, name: str = "中兴大街空气微站") -> str:
    code = service.create_terminal(conn, terminal_in(name), ACTOR)
    conn.commit()
    give_secret(db_url, code)
    auth_broker.sync()
    return code


def _readings(db_url: str, code: str) -> int:
    with psycopg.connect(db_url) as c:
        return c.execute("select count(*) from reading r join terminal t on t.id = r.terminal_id "
                         "where t.code = %s", (code,)).fetchone()[0]


def _first_login(auth_broker, code: str, secret: str) -> float:
    """Seconds until the device's first successful login."""
    started = time.monotonic()
    wait_until(lambda: can_log_in(auth_broker.address, code, secret), timeout_s=5, interval_s=0.02)
    return time.monotonic() - started


def test_a_device_cannot_take_a_share_of_the_ingest_subscription(conn, db_url, auth_broker):
    code = _device(conn, db_url, auth_broker)
    other = _device(conn, db_url, auth_broker, "另一个空气微站")
    with WorkerThread(db_url, auth_broker), Session(auth_broker.address, code, "s3cret") as thief:
        for stolen in ("$share/ganzhi-ingest/ganzhi/v1/+/telemetry", "$share/ganzhi-ingest/#", "ganzhi/v1/+/telemetry",
                       f"ganzhi/v1/{other}/telemetry", f"ganzhi/v1/{other}/command/#", "#", "$CONTROL/#"):
            assert thief.subscribe(stolen) == NOT_AUTHORIZED, stolen
        assert thief.subscribe(f"ganzhi/v1/{code}/command/#") == 1  # its own commands: granted
        now_ms = int(time.time() * 1000)
        messages = [(f"ganzhi/v1/{other}/telemetry", encode_telemetry([{"metric": "a34004", "value": n}],
                                                                      ts_ms=now_ms - n * 1000)) for n in range(60)]
        assert set(publish(auth_broker.address, other, "s3cret", messages)) == {0}
        wait_until(lambda: _readings(db_url, other) == 60)  # every one stored: none went to the device


def test_a_device_cannot_take_over_a_service_or_another_device_session(conn, db_url, auth_broker):
    code = _device(conn, db_url, auth_broker)
    other = _device(conn, db_url, auth_broker, "另一个空气微站")
    with WorkerThread(db_url, auth_broker, client_id="ganzhi-ingest-1") as worker:
        for client_id in ("ganzhi-ingest-1", other, "ganzhi-broker-sync", f"{code}-2"):
            assert not can_log_in(auth_broker.address, code, "s3cret", client_id), client_id
        assert can_log_in(auth_broker.address, code, "s3cret")  # under its own code
        time.sleep(0.3)
        assert worker._connected.is_set()  # its session was never taken


def test_devices_have_no_service_rights_and_the_service_account_no_control(conn, db_url, auth_broker):
    code = _device(conn, db_url, auth_broker)
    with Session(auth_broker.address, code, "s3cret") as device:
        assert device.subscribe("ganzhi/v1/+/frame") == NOT_AUTHORIZED  # the fire worker's right
    codes = publish(auth_broker.address, code, "s3cret", [(f"ganzhi/v1/{code}/command/reboot", b"{}"),
                                                          ("$CONTROL/dynamic-security/v1", b"{}")])
    assert codes == [NOT_AUTHORIZED, NOT_AUTHORIZED]
    with Session(auth_broker.address, "ganzhi-ingest", SERVICE_PASSWORD, "svc-test") as platform:
        assert platform.subscribe("$share/ganzhi-ingest/ganzhi/v1/+/telemetry") == 1
        assert platform.subscribe("ganzhi/v1/+/frame") == 1
        assert platform.subscribe("$CONTROL/dynamic-security/#") == NOT_AUTHORIZED


def test_a_credential_issued_works_within_a_second(conn, db_url, auth_broker):
    code = service.create_terminal(conn, terminal_in(), ACTOR)
    secret = credentials.issue(conn, code, ACTOR)
    conn.commit()
    assert _first_login(auth_broker, code, secret) < AT_ONCE_S
    with Session(auth_broker.address, code, secret) as old:
        replaced = credentials.issue(conn, code, ACTOR)
        conn.commit()
        assert old.disconnected.wait(AT_ONCE_S)  # the old secret's connection ends with it
    assert _first_login(auth_broker, code, replaced) < AT_ONCE_S
    assert not can_log_in(auth_broker.address, code, secret)


def test_a_retired_terminal_is_refused_and_disconnected_within_a_second(conn, db_url, auth_broker):
    code = _device(conn, db_url, auth_broker)
    with Session(auth_broker.address, code, "s3cret") as session:
        service.update_terminal(conn, code, TerminalPatch(status="retired"), ACTOR)
        conn.commit()
        retired = time.monotonic()
        assert session.disconnected.wait(AT_ONCE_S)
    assert time.monotonic() - retired < AT_ONCE_S
    assert not can_log_in(auth_broker.address, code, "s3cret")


def test_the_broker_catches_up_after_losing_the_ledger_connection(conn, db_url, auth_broker):
    code = service.create_terminal(conn, terminal_in(), ACTOR)
    conn.commit()
    with psycopg.connect(db_url, autocommit=True) as admin:
        killed = admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                               "where application_name = 'ganzhi-broker-sync' and datname = current_database()")
        assert killed.fetchall()
    secret = credentials.issue(conn, code, ACTOR)  # while the sync is not listening
    conn.commit()
    assert _first_login(auth_broker, code, secret) < 5



@pytest.fixture
def busy_broker(prepared_database) -> Iterator[AuthBroker]:
    """A ledger and a broker of their own: after a change of thousands the broker stays busy for tens of seconds,
    undoing it when the ledger is emptied, and the session's broker must be ready for the next test at once."""
    root = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-busy-"))
    root.chmod(0o755)
    local = AuthBroker.start(prepared_database(), root)
    yield local
    local.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_credential_issued_during_a_change_of_thousands_does_not_wait_for_all_of_it(busy_broker):
    """`ganzhi ledger demo` commits thousands of device secrets at once, and mosquitto 2.0.11's plugin rewrites its
    whole file after every command: the broker needs minutes for such a change. The sync sent it as one message,
    timed out after 10 s waiting for the answer (the broker busy in its one thread) and, after each reconnection,
    sent all of it again; a credential issued meanwhile waited behind it (test_observability after test_cli). Now a
    change goes in small messages, the newest first, each one's progress kept."""
    with psycopg.connect(busy_broker.db_url) as conn:
        demo.load(conn, ACTOR, "a-secret-of-our-own-" * 2)
        conn.commit()
        bulk = set(credentials.broker_logins(conn))
        wait_until(lambda: busy_broker.auth.known & bulk, timeout_s=600, interval_s=0.05)  # the change is under way
        code = service.create_terminal(conn, terminal_in("演示之后登记的空气微站"), ACTOR)
        secret = credentials.issue(conn, code, ACTOR)
        conn.commit()
    wait_until(lambda: can_log_in(busy_broker.address, code, secret), timeout_s=600, interval_s=0.05)
    assert not bulk <= busy_broker.auth.known, "the new credential waited for the whole change"


def test_a_database_link_that_goes_silent_is_noticed_and_replaced(prepared_database, monkeypatch):
    """A firewall between the sync and the database forgets the LISTEN connection's flow: no error, only silence.
    The sync waited for notifications forever and a credential issued after that never reached the broker."""
    monkeypatch.setattr(broker_auth, "IDLE_CHECK_S", 0.5)
    monkeypatch.setattr(broker_auth, "PROBE_TIMEOUT_S", 1.0)
    ledger = prepared_database()
    root = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-silent-"))
    root.chmod(0o755)
    server = conninfo_to_dict(ledger)
    with SilencingProxy(int(server.get("port") or 5432), str(server.get("host") or "127.0.0.1")) as proxy:
        through_proxy = make_conninfo(ledger, host="127.0.0.1", port=proxy.port)
        local = AuthBroker.start(through_proxy, root)
        try:
            with psycopg.connect(ledger) as conn:
                first = service.create_terminal(conn, terminal_in(), ACTOR)
                first_secret = credentials.issue(conn, first, ACTOR)
                conn.commit()
                wait_until(lambda: can_log_in(local.address, first, first_secret), timeout_s=10)  # it listens
                assert proxy.silence() >= 1
                code = service.create_terminal(conn, terminal_in("断链之后登记的空气微站"), ACTOR)
                secret = credentials.issue(conn, code, ACTOR)
                conn.commit()
            wait_until(lambda: can_log_in(local.address, code, secret), timeout_s=30, interval_s=0.2)
        finally:
            local.stop()
            shutil.rmtree(root, ignore_errors=True)


def test_no_secret_is_kept_in_clear(conn, db_url, auth_broker):
    code = service.create_terminal(conn, terminal_in(), ACTOR)
    secret = credentials.issue(conn, code, ACTOR)
    conn.commit()
    auth_broker.sync()
    passwd = auth_broker.auth.directory / "passwd"
    assert secret not in passwd.read_text() and SERVICE_PASSWORD not in passwd.read_text()
    assert "\nganzhi-ingest:$7$101$" in passwd.read_text()  # a service secret may be a person's choice: 101 rounds
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    with psycopg.connect(db_url) as c:
        stored = c.execute("select secret_hash from device_credential where code = %s", (code,)).fetchone()[0]
    assert stored.startswith("$7$1$") and secret not in stored  # one round: re-checked cheaply on every re-read


def test_a_password_file_write_that_fails_half_way_locks_no_device_out(conn, db_url, auth_broker, monkeypatch):
    """The disk fills up while a new device's line is appended: half a line, no newline. The sync retries with
    the whole file rewritten atomically (it used to note the device as done: locked out until a full rewrite, and
    the next device's line joined the half one)."""
    append = broker_auth.BrokerAuth.write_changes
    failed: list[dict[str, str]] = []

    def disk_full_once(auth: broker_auth.BrokerAuth, unwritten: dict[str, str], *logins: dict[str, str]) -> None:
        if failed:
            return append(auth, unwritten, *logins)
        failed.append(unwritten)
        with (auth.directory / "passwd").open("a") as file:
            file.write(credentials.password_lines(unwritten)[:12])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(broker_auth.BrokerAuth, "write_changes", disk_full_once)
    first = _device(conn, db_url, auth_broker, "写盘失败时的空气微站")
    assert failed, "the failing write was not exercised"
    assert _first_login(auth_broker, first, "s3cret") < 5
    second = _device(conn, db_url, auth_broker, "之后登记的空气微站")
    assert _first_login(auth_broker, second, "s3cret") < 5
    assert _first_login(auth_broker, first, "s3cret") < 5


class _CountingBroker:
    def __init__(self) -> None:
        self.reloads = 0

    def reload(self) -> None:
        self.reloads += 1


class _RecordingControl:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, commands: list[dict]) -> list[dict]:
        self.sent += commands
        return []


def test_a_login_that_goes_does_not_make_the_broker_re_check_every_password(tmp_path):
    """A re-read of the password file re-checks every connected login (minutes at 10^6): a login that goes is
    refused and disconnected by the plugin alone; only a password that comes or changes is re-read."""
    auth = broker_auth.BrokerAuth(tmp_path, broker_auth.platform_accounts("svc", "x"), logins={"A": "h"}, known={"A"})
    broker, control = _CountingBroker(), _RecordingControl()
    asyncio.run(broker_auth.apply(auth, control, broker, {"A": None}))
    assert control.sent == [dynsec.disable("A")] and broker.reloads == 0
    asyncio.run(broker_auth.apply(auth, control, broker, {"A": "h2"}))
    assert control.sent[-1] == dynsec.enable("A") and broker.reloads == 1
    assert "A:h2" in (tmp_path / "passwd").read_text()


def test_a_new_login_is_appended_to_the_password_file_and_one_back_with_its_line_needs_no_re_read(tmp_path):
    auth = broker_auth.BrokerAuth(tmp_path, broker_auth.platform_accounts("svc", "x"), logins={"A": "h"}, known={"A"})
    auth.write_passwords()
    (tmp_path / "passwd").write_text((tmp_path / "passwd").read_text() + "# what this process wrote\n")
    broker, control = _CountingBroker(), _RecordingControl()
    asyncio.run(broker_auth.apply(auth, control, broker, {"B": "hb"}))
    assert (tmp_path / "passwd").read_text().endswith("# what this process wrote\nB:hb\n") and broker.reloads == 1
    asyncio.run(broker_auth.apply(auth, control, broker, {"B": None}))
    asyncio.run(broker_auth.apply(auth, control, broker, {"B": "hb"}))  # back, its line still in the file
    assert control.sent[-1] == dynsec.enable("B") and broker.reloads == 1
    asyncio.run(broker_auth.apply(auth, control, broker, {"B": "hb2"}))  # replaced: one line per login, rewritten
    lines = (tmp_path / "passwd").read_text().splitlines()
    assert "B:hb2" in lines and "B:hb" not in lines and broker.reloads == 2


def test_without_mosquitto_there_is_no_broker_and_a_clear_message(tmp_path, monkeypatch):
    """No in-process fallback: amqtt could not check subscriptions nor bind client ids."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no mosquitto on it
    with pytest.raises(BrokerMissing, match="apt-get install mosquitto"):
        asyncio.run(LocalBroker(tmp_path / "data", free_port(), auth_dir=tmp_path / "auth").start())
