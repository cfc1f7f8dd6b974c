"""The broker's doors, kept in step with the ledger.

Who may log in is mosquitto's password file (hashes from the ledger); what a login may do is the
dynamic-security plugin (``core.dynsec``):

- a device (pole or terminal) logs in as its city code under client id = its code, publishes only on
  its own channels and subscribes only to its own commands (one role per device: mosquitto 2.0's
  plugin has no ``%u`` in its rules);
- platform services log in as service accounts with the roles they need (``SERVICE_ROLES``), which no
  device has; the broker sync logs in as ``ADMIN_USER``, whose secret never leaves ``ganzhi up``.

``keep_in_step`` LISTENs on ``ganzhi_ledger`` and applies each change at once: a new login is created
in the plugin before its password is written, a login that goes (retired, unknown) is disabled in the
plugin (refused and disconnected at once; its line leaves the password file when the file is next written from
the ledger alone, at a start). So every password in the file belongs to a client whose client id the plugin
checks. On start and after a lost
connection it compares the whole ledger with what the broker has. A large change (thousands of devices) goes to
the plugin in small messages, the newest changes first (``SAVE_BUDGET``).

Mosquitto 2.0 learns a password hash only from its password file, re-read on SIGHUP, and a re-read checks
the password of every connected login again, in its one thread (the plugin takes passwords in clear only,
and reads its own file only at start). So the file is written (a new login appended, a replaced one
rewritten whole) and re-read only when a password comes or changes, never when one goes, and device hashes
are cheap to check (``registry.credentials``). Figures: docs/capacity.md section 5.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import psycopg

from core import db, dynsec
from core.broker import DYNSEC_FILE, LocalBroker, SharedBroker, hand_to_broker_user
from core.runtime import Outage, Service
from devices.topics import PREFIX, Channel, command_filter, device_topics, subscription
from registry import credentials

log = logging.getLogger(__name__)

CHANNEL = "ganzhi_ledger"
ADMIN_USER = "ganzhi-broker-sync"
RETRY_S = 1.0
OUTAGE = "outage (database or broker)"
"""The component named in the sync's heartbeat while it cannot reach the database or the broker."""
BATCH_WAIT_S = 0.02
"""After a first notification, how long to gather the ones that follow it into one change."""
IDLE_CHECK_S = 30.0
"""Without a change for this long, the database and the broker are asked whether they answer (``_both_answer``)."""
PROBE_TIMEOUT_S = 10.0
"""How long the database has to answer; psycopg then cancels the query and waits up to 5 s more for the cancel
before closing the connection (psycopg >= 3.3; before, a cancel over a silent link waited forever): a silent link
is noticed 30–50 s after the last change."""
SAVE_BUDGET = 50_000
"""Device entries the plugin may write per control message. Mosquitto 2.0.11's plugin writes its whole file (every
device, ≈ 0.9 KB each) after each command, in the broker's one thread: m new devices on top of k cost ≈ 2mk + m²
entries. A change is sent in messages within this budget (at least one device each): each is answered within
seconds, and the broker serves its other clients between two of them."""


def _ingest_role() -> dynsec.Role:
    feeds = [Channel.telemetry, Channel.status]
    filters = [subscription(c, shared) for c in feeds for shared in (True, False)]
    return dynsec.Role("ganzhi-ingest", (*(dynsec.Acl("subscribePattern", f) for f in filters),
                                         *(dynsec.Acl("publishClientReceive", f"{PREFIX}/+/{c}") for c in feeds)))


def _fire_role() -> dynsec.Role:
    frames = f"{PREFIX}/+/{Channel.frame}"
    return dynsec.Role("ganzhi-fire", (dynsec.Acl("subscribePattern", frames),
                                       dynsec.Acl("publishClientReceive", frames)))


SERVICE_ROLES = {role.name: role for role in (_ingest_role(), _fire_role(), dynsec.admin_role(ADMIN_USER))}
PLATFORM_ROLES = ("ganzhi-ingest", "ganzhi-fire")
"""The platform's service account (ingest workers and the fire worker) has these."""


def device_role(code: str) -> dynsec.Role:
    own = command_filter(code)
    return dynsec.Role(f"device-{code}", (*(dynsec.Acl("publishClientSend", t) for t in device_topics(code)),
                                          dynsec.Acl("subscribePattern", own),
                                          dynsec.Acl("publishClientReceive", own)))


def device_client(code: str) -> dynsec.Client:
    return dynsec.Client(code, (f"device-{code}",), clientid=code)


@dataclass(frozen=True)
class Account:
    """A service login: its secret (in clear, held in memory only) and its roles."""

    name: str
    secret: str
    roles: tuple[str, ...]
    clientid: str | None = None


def platform_accounts(service_user: str, service_secret: str, admin_secret: str | None = None) -> list[Account]:
    """The platform's service account, and the broker sync's when the broker is to follow the ledger."""
    accounts = [Account(service_user, service_secret, PLATFORM_ROLES)]
    if admin_secret is not None:
        accounts.append(Account(ADMIN_USER, admin_secret, (ADMIN_USER,), clientid=ADMIN_USER))
    return accounts


@dataclass
class BrokerAuth:
    """The broker's files in ``directory`` and what the broker has been told since they were written."""

    directory: Path
    accounts: list[Account]
    logins: dict[str, str] = field(default_factory=dict)
    """code → hash of the devices that can log in now."""
    known: set[str] = field(default_factory=set)
    """Devices the plugin has a client for (those not in ``logins`` are disabled)."""
    written: dict[str, str] | None = None
    """code → hash of the devices in the password file (those gone since keep their line until the file is
    rewritten whole: the plugin refuses them); None when this process has not written the file."""

    @property
    def admin(self) -> Account:
        return next(a for a in self.accounts if a.name == ADMIN_USER)

    def write_files(self, conn: psycopg.Connection) -> int:
        """Both files from the ledger, before the broker starts; returns the number of device logins."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logins = credentials.broker_logins(conn)
        self.known = set(self.logins)
        roles = [*SERVICE_ROLES.values(), *(device_role(code) for code in self.logins)]
        clients = [dynsec.Client(a.name, a.roles, a.clientid) for a in self.accounts]
        clients += [device_client(code) for code in self.logins]
        _write(self.directory / DYNSEC_FILE, json.dumps(dynsec.configuration(roles, clients)))
        self.write_passwords()
        return len(self.logins)

    def write_passwords(self, logins: dict[str, str] | None = None) -> None:
        """The whole password file: the service accounts and every device that may log in (``logins``, by default
        those that may now)."""
        logins = self.logins if logins is None else logins
        services = {a.name: a.secret for a in self.accounts}
        _write(self.directory / "passwd", credentials.password_file(logins, services))
        self.written = dict(logins)
        hand_to_broker_user(self.directory)

    def unwritten(self, came: dict[str, str]) -> dict[str, str]:
        """Of the passwords that came or changed, those the file does not hold yet."""
        if self.written is None:
            return came
        return {code: secret_hash for code, secret_hash in came.items() if self.written.get(code) != secret_hash}

    def write_changes(self, unwritten: dict[str, str], logins: dict[str, str]) -> None:
        """Append the lines of devices new to the file (a cost of the change, not of the ledger); rewrite it whole
        when a device's line changes (a replaced secret), since mosquitto's file has one line per login: with what
        it held and ``logins`` (a resync in small messages has not reached every device yet: dropping their lines
        would refuse them until it does; a line of a device gone stays, the plugin refuses it), or with ``logins``
        alone when what the file holds is not known (never written, or a write that failed, perhaps half way)."""
        if self.written is None:
            self.write_passwords(logins)
            return
        if any(code in self.written for code in unwritten):
            self.write_passwords(self.written | logins)
            return
        with (self.directory / "passwd").open("a") as file:
            file.write(credentials.password_lines(unwritten))
        self.written |= unwritten

    def commands(self, wanted: dict[str, str | None]) -> list[dict]:
        """The plugin commands that bring the broker to ``wanted`` (code → hash, or None for no login)."""
        commands: list[dict] = []
        for code, secret_hash in sorted(wanted.items()):
            if secret_hash is not None and code not in self.known:
                commands += dynsec.create(device_role(code), device_client(code))
            elif secret_hash is not None and code not in self.logins:
                commands.append(dynsec.enable(code))
            elif secret_hash is None and code in self.logins:
                commands.append(dynsec.disable(code))
        return commands

    def applied(self, wanted: dict[str, str | None]) -> dict[str, str]:
        """The device logins once ``wanted`` is applied."""
        logins = {code: secret_hash for code, secret_hash in self.logins.items() if code not in wanted}
        return logins | {code: secret_hash for code, secret_hash in wanted.items() if secret_hash is not None}


def write_files(conn: psycopg.Connection, directory: Path, accounts: list[Account]) -> BrokerAuth:
    """The broker's files for a broker about to start (also for one you run yourself)."""
    auth = BrokerAuth(directory, accounts)
    auth.write_files(conn)
    return auth


def _write(path: Path, text: str) -> None:
    """Replace atomically, so the broker never reads half a file; readable by its owner only."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    temporary.chmod(0o600)
    os.replace(temporary, path)


async def apply(auth: BrokerAuth, control: dynsec.Control, broker: LocalBroker | SharedBroker,
                wanted: dict[str, str | None]) -> None:
    """Tell the plugin first (it creates, enables and disables clients at once, closing a disabled one's
    session); then, only when the password file lacks a password that came or changed, write it there and make
    mosquitto re-read the file (the re-read also ends the session of a replaced password)."""
    await control.send(auth.commands(wanted))
    auth.known |= {code for code, secret_hash in wanted.items() if secret_hash is not None}
    logins = auth.applied(wanted)
    unwritten = auth.unwritten({code: h for code, h in logins.items() if auth.logins.get(code) != h})
    if unwritten:
        try:
            await asyncio.to_thread(auth.write_changes, unwritten, logins)
            broker.reload()
        except BaseException:  # disk full, no rights, cancelled: the file's end is not known, nor what was re-read
            auth.written = None  # so the next write rewrites it whole (atomically), and the broker re-reads it
            raise
    auth.logins = logins  # only now: a change not written stays a difference for the next resync
    if wanted:
        log.info("broker logins: %s", _summary(wanted))


def _summary(wanted: dict[str, str | None], named: int = 10) -> str:
    if len(wanted) <= named:
        return ", ".join(f"{code} {'in' if h else 'out'}" for code, h in sorted(wanted.items()))
    coming = sum(1 for h in wanted.values() if h)
    return f"{coming} in or changed, {len(wanted) - coming} out"


async def differences(conn: psycopg.AsyncConnection, auth: BrokerAuth) -> dict[str, str | None]:
    """The whole ledger compared with what the broker has (on start, after a lost connection, after a truncate)."""
    cursor = await conn.execute(credentials.LOGINS)
    ledger = dict(await cursor.fetchall())
    wanted: dict[str, str | None] = {code: None for code in auth.logins} | ledger
    return {code: secret_hash for code, secret_hash in wanted.items() if auth.logins.get(code) != secret_hash}


def per_message(auth: BrokerAuth) -> int:
    """How many devices one control message may change: the m of 2mk + m² = ``SAVE_BUDGET``."""
    known = len(auth.known)
    return max(1, math.isqrt(known * known + SAVE_BUDGET) - known)


def take(pending: dict[str, str | None], count: int) -> dict[str, str | None]:
    """The ``count`` changes put in ``pending`` last (a device just issued a credential goes before a backlog)."""
    return {code: pending.pop(code) for code in list(reversed(pending))[:count]}


async def adopt(conn: psycopg.AsyncConnection, auth: BrokerAuth, control: dynsec.Control,
                broker: LocalBroker | SharedBroker) -> None:
    """A broker this sync did not write the files for (a container deployment's own service, perhaps restarted
    from its saved plugin file): learn which device logins the plugin has and disable those the ledger no longer
    has; write the password file whole, once, with the ledger's secret of every device the plugin still has, and
    have it re-read (the resync that follows goes in small messages: a file holding only the first message's
    devices would refuse every other device until its own message came); the resync then creates or enables
    the rest."""
    services = {a.name for a in auth.accounts}
    devices = {name for name in await control.usernames() if name not in services}
    cursor = await conn.execute(credentials.LOGINS)
    ledger = dict(await cursor.fetchall())
    await control.send([dynsec.disable(code) for code in sorted(devices - set(ledger))])
    auth.known, auth.logins, auth.written = devices, {}, None
    await asyncio.to_thread(auth.write_passwords, {code: ledger[code] for code in devices & set(ledger)})
    broker.reload()
    log.info("broker has %d device logins; %d of them no longer in the ledger were disabled",
             len(devices), len(devices - set(ledger)))


async def keep_in_step(url: str, auth: BrokerAuth, broker: LocalBroker | SharedBroker, host: str = "127.0.0.1",
                       *, adopting: bool = False, service: Service | None = None) -> None:
    """Apply every ledger change to the broker as it is committed, until cancelled. LISTEN first, then
    compare the whole ledger, then follow the notifications; after any failure, all of it again
    (``adopting``: a broker of its own, whose plugin state is read first, see ``adopt``). While it fails, its
    ``service``'s heartbeat says so (``_report``)."""
    outage = Outage("broker sync (database or broker)", log)
    try:
        while True:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    conn = await stack.enter_async_context(await psycopg.AsyncConnection.connect(
                        url, autocommit=True, application_name=ADMIN_USER, **db.LINK))
                    control = await stack.enter_async_context(
                        dynsec.Control(host, broker.port, ADMIN_USER, auth.admin.secret))
                    await conn.execute(f"listen {CHANNEL}")
                    if adopting:
                        await adopt(conn, auth, control, broker)
                    await _follow(conn, auth, control, broker, lambda: (outage.recovered(), _report(service, None)))
            except (psycopg.Error, aiomqtt.MqttError, dynsec.ControlError, TimeoutError, OSError) as exc:
                outage.failed(exc)
                _report(service, f"{type(exc).__name__}: {str(exc).strip()}")
            await asyncio.sleep(RETRY_S)
    finally:
        _report(service, None)  # stopped, not failed


def _report(service: Service | None, outage: str | None) -> None:
    """The sync's outage in its heartbeat, so /healthz shows it (failed, with the reason; the platform is degraded:
    ledger changes do not reach the broker), or its end."""
    if service is None:
        return
    failed = service.detail.get("failed")
    if outage is not None:
        service.state = "failed"
        service.detail["failed"] = {"component": OUTAGE, "reason": outage[:300]}
    elif isinstance(failed, dict) and failed.get("component") == OUTAGE:  # not a supervisor's death
        service.state = "running"
        del service.detail["failed"]


async def _follow(conn: psycopg.AsyncConnection, auth: BrokerAuth, control: dynsec.Control,
                  broker: LocalBroker | SharedBroker, healthy: Callable[[], object]) -> None:
    """Bring the broker to the ledger a message at a time (``per_message``), taking in the notifications that
    came meanwhile between two messages: what changed last goes first, and each message's progress is kept
    (``apply``), so a change of thousands neither stalls the broker for minutes nor makes the next wait for it."""
    pending = await differences(conn, auth)
    while True:
        if pending:
            await apply(auth, control, broker, take(pending, per_message(auth)))
        healthy()
        notes = [] if pending else [note async for note in conn.notifies(timeout=IDLE_CHECK_S, stop_after=1)]
        if not notes and not pending:
            await _both_answer(conn, control)
        notes += [note async for note in conn.notifies(timeout=BATCH_WAIT_S if notes else 0, stop_after=10_000)]
        codes = _codes(notes)
        if codes is None:
            pending = await differences(conn, auth)
        elif codes:
            cursor = await conn.execute(credentials.LOGINS_OF, {"codes": codes})
            found = dict(await cursor.fetchall())
            for code in codes:  # to the end: the newest first
                pending.pop(code, None)
                if auth.logins.get(code) != found.get(code):
                    pending[code] = found.get(code)


async def _both_answer(conn: psycopg.AsyncConnection, control: dynsec.Control) -> None:
    """After ``IDLE_CHECK_S`` without a change: the database and the broker must still answer. A link that died
    without a word would otherwise keep the sync waiting for notifications that never come, and a broker that
    restarted would be noticed only at the next change; either raises here, and the sync starts afresh."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await conn.execute("select 1")
    except TimeoutError:
        raise TimeoutError(f"the database did not answer within {PROBE_TIMEOUT_S:g} s") from None
    await control.send([{"command": "getDefaultACLAccess"}])  # answered within dynsec.TIMEOUT_S or raises


def _codes(notes: list) -> list[str] | None:
    """The devices the notifications name; None when one names none (a truncate) or cannot be read: then
    the whole ledger is compared."""
    codes = set()
    for note in notes:
        try:
            code = json.loads(note.payload).get("code")
        except (ValueError, AttributeError):
            code = None
        if not isinstance(code, str):
            log.info("%s notification %r names no device; comparing the whole ledger", CHANNEL, note.payload[:200])
            return None
        codes.add(code)
    return sorted(codes)
