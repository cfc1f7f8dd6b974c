"""`ganzhi broker sync` against a real mosquitto it did not start (a container deployment's broker): it
reads the plugin's logins, disables those the ledger dropped while it was away, admits the ones added,
and makes the broker re-read its password file by signalling it."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from core.broker import LocalBroker, SharedBroker
from ganzhi import broker_auth
from ganzhi.benchkit import free_port
from registry import service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import terminal_in
from tests.mqtt import ADMIN_PASSWORD, SERVICE_PASSWORD, SERVICE_USER, Session, can_log_in, give_secret, wait_until

ACTOR = Actor("test")


def _fake_proc(root: Path, pid: int) -> Path:
    """A /proc that shows only our own broker, so no other mosquitto on the machine is signalled."""
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "comm").write_text("mosquitto\n")
    return root


@pytest.fixture
def ledger(prepared_database):
    return prepared_database()


def _terminal(url: str, name: str) -> str:
    with psycopg.connect(url) as conn:
        code = service.create_terminal(conn, terminal_in(name), ACTOR)
        conn.commit()
    give_secret(url, code)
    return code


@contextlib.contextmanager
def _broker_of_its_own(ledger: str) -> Iterator[tuple[tuple[str, int], Callable[[], None]]]:
    """A mosquitto started from the ledger's files (`ganzhi broker config`, then the container's own broker), and
    how to start a sync that adopts it (stopped with the broker)."""
    accounts = broker_auth.platform_accounts(SERVICE_USER, SERVICE_PASSWORD, ADMIN_PASSWORD)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-mqtt-adopt-"))
    root.chmod(0o755)
    with psycopg.connect(ledger) as conn:
        broker_auth.write_files(conn, root / "auth", accounts)
    broker = LocalBroker(root / "data", free_port(), auth_dir=root / "auth")
    asyncio.run(broker.start())
    stopping = threading.Event()

    def start_sync() -> None:
        mosquitto = next(p for p in psutil.Process(broker._process.pid).children(recursive=True)
                         if p.name() == "mosquitto")
        shared = SharedBroker(broker.port, proc=_fake_proc(root / "proc", mosquitto.pid))
        threading.Thread(target=asyncio.run, daemon=True,
                         args=(_sync(ledger, root, accounts, shared, stopping),)).start()

    try:
        yield ("127.0.0.1", broker.port), start_sync
    finally:
        stopping.set()
        asyncio.run(broker.stop())


def test_the_sync_adopts_a_broker_it_did_not_start(ledger):
    kept, dropped = _terminal(ledger, "中兴大街空气微站"), _terminal(ledger, "另一个空气微站")
    with _broker_of_its_own(ledger) as (address, start_sync):
        with Session(address, dropped, "s3cret") as session:
            # While no sync runs: one terminal retired, one added.
            with psycopg.connect(ledger) as conn:
                service.update_terminal(conn, dropped, TerminalPatch(status="retired"), ACTOR)
                conn.commit()
            added = _terminal(ledger, "新装水质站")
            assert not can_log_in(address, added, "s3cret")
            start_sync()
            assert session.disconnected.wait(10)  # the plugin disabled it: refused and disconnected
        wait_until(lambda: can_log_in(address, added, "s3cret"), timeout_s=10)
        assert can_log_in(address, kept, "s3cret")
        assert not can_log_in(address, dropped, "s3cret")


def test_an_adopted_brokers_devices_stay_logged_in_through_a_resync_in_small_messages(ledger, monkeypatch):
    """A resync after adopting goes a device per message here (as at 10,000 devices): the first message's
    password file must not hold only its own device, or the re-read refuses and disconnects all the others."""
    kept = [_terminal(ledger, f"空气微站{n}") for n in range(3)]
    monkeypatch.setattr(broker_auth, "per_message", lambda auth: 1)
    with _broker_of_its_own(ledger) as (address, start_sync), contextlib.ExitStack() as sessions:
        connected = [sessions.enter_context(Session(address, code, "s3cret")) for code in kept]
        added = _terminal(ledger, "新装水质站")
        start_sync()
        wait_until(lambda: can_log_in(address, added, "s3cret"), timeout_s=10)
        assert [session.disconnected.is_set() for session in connected] == [False] * len(kept)


async def _sync(url: str, root: Path, accounts, shared: SharedBroker, stopping: threading.Event) -> None:
    task = asyncio.create_task(broker_auth.keep_in_step(url, broker_auth.BrokerAuth(root / "auth", accounts),
                                                        shared, adopting=True))
    await asyncio.to_thread(stopping.wait)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_broker_not_visible_is_a_clear_error(tmp_path):
    with pytest.raises(ProcessLookupError, match="service:mosquitto"):
        SharedBroker(1883, proc=tmp_path).reload()

