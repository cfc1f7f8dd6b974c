"""A local MQTT broker for embedded runs, and the broker health probe.

Mosquitto with the project's configuration. There is no in-process fallback: amqtt (the only
pip-installable broker) has no shared subscriptions, speaks MQTT 3.1.1 only and cannot check who
subscribes to what, so a broker without mosquitto would be a broker without doors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from core import dynsec
from core.lifeline import dying_with_parent, guarded

log = logging.getLogger(__name__)

_CONFIG_TEMPLATE = Path(__file__).with_name("mosquitto.conf")
DYNSEC_FILE = "dynamic-security.json"


class BrokerMissing(RuntimeError):
    """Mosquitto, or its dynamic-security plugin, is not installed."""


class LocalBroker:
    """Owns one local mosquitto: ``await start()``, ``reload()``, ``await stop()``.

    With ``auth_dir`` holding ``passwd`` and ``dynamic-security.json``, the broker admits only the
    users of the password file (re-read on ``reload()``) and lets them connect, publish and subscribe
    only as the dynamic-security plugin says (changed at once through its control topic).
    """

    def __init__(self, data_dir: Path, port: int, bind: str = "127.0.0.1", auth_dir: Path | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.bind = bind
        self.auth_dir = auth_dir.resolve() if auth_dir else None
        self._process: subprocess.Popen | None = None

    @property
    def exit_code(self) -> int | None:
        """None while mosquitto (or its guard) runs or before it was started; else how it ended."""
        return None if self._process is None else self._process.poll()

    def reload(self) -> None:
        """Make mosquitto re-read its password file (SIGHUP)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    async def start(self) -> None:
        self._start_mosquitto()
        if not await asyncio.to_thread(wait_for_broker, "127.0.0.1", self.port, 10.0):
            await self.stop()
            raise RuntimeError(f"mosquitto did not accept connections on port {self.port}")
        log.info("mosquitto listening on %s:%d", self.bind, self.port)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop mosquitto; killed after ``grace_s``. A broker busy in its plugin hears SIGTERM only when the
        command at hand is done, and the guard would outlive a kill of its own: the kill goes to their group."""
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, grace_s)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto did not stop within %.0f s of SIGTERM: killed", grace_s)
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.killpg(self._process.pid, signal.SIGKILL)
                await asyncio.to_thread(self._process.wait, 10)
            self._process = None
        log.info("broker stopped")

    def _start_mosquitto(self) -> None:
        binary = require_mosquitto()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "mosquitto.conf"
        config.write_text(write_mosquitto_config(self.port, self.data_dir, self.bind, self.auth_dir))
        hand_to_broker_user(self.data_dir)
        if self.auth_dir:
            hand_to_broker_user(self.auth_dir)
        # mosquitto drops to its own user when started as root, which clears a death signal: a guard holds it.
        # A session of its own: Ctrl-C in the terminal reaches only its starter, which stops the clients first.
        self._process = subprocess.Popen(guarded([binary, "-c", str(config)]), stdin=subprocess.DEVNULL,
                                         preexec_fn=dying_with_parent(), start_new_session=True)


class SharedBroker:
    """A mosquitto this process did not start but can signal: in a container deployment the broker sync shares
    the broker container's process namespace (compose ``pid: "service:mosquitto"``) and runs as its user."""

    def __init__(self, port: int, process_name: str = "mosquitto", proc: Path = Path("/proc")) -> None:
        self.port = port
        self.process_name = process_name
        self.proc = proc

    def reload(self) -> None:
        """SIGHUP every visible process of that name, so it re-reads its password file."""
        pids = [int(entry.name) for entry in self.proc.iterdir() if entry.name.isdigit() and _comm(entry) ==
                self.process_name]
        if not pids:
            raise ProcessLookupError(f"no {self.process_name!r} process is visible to signal: share the broker's "
                                     "process namespace (compose: pid: \"service:mosquitto\")")
        for pid in pids:
            os.kill(pid, signal.SIGHUP)


def _comm(entry: Path) -> str | None:
    try:
        return (entry / "comm").read_text().strip()
    except OSError:  # the process ended meanwhile
        return None


def require_mosquitto() -> str:
    """The mosquitto binary, or a clear error saying how to install it."""
    binary = shutil.which("mosquitto")
    if binary is None:
        raise BrokerMissing("mosquitto is not installed: install it (Debian/Ubuntu: apt-get install mosquitto) "
                            "or point MQTT_URL at a broker you run")
    return binary


def require_dynsec() -> str:
    plugin = dynsec.plugin_path()
    if plugin is None:
        raise BrokerMissing("mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is not installed: "
                            "it comes with mosquitto 2.0 or later (Debian/Ubuntu: apt-get install mosquitto)")
    return plugin


def hand_to_broker_user(data_dir: Path) -> None:
    """Started as root, mosquitto drops to the ``mosquitto`` user, which must own its persistence files."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in [data_dir, *data_dir.iterdir()]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def write_mosquitto_config(port: int, data_dir: Path, bind: str = "127.0.0.1", auth_dir: Path | None = None) -> str:
    """The project's mosquitto configuration for a listener on ``bind:port``."""
    auth = "allow_anonymous true"
    if auth_dir is not None:
        auth = _auth_lines(auth_dir, require_dynsec())
    return _fill(port, bind, data_dir, auth)


def write_broker_config(data_dir: Path, auth_dir: Path, plugin: str, tls_dir: Path | None = None) -> str:
    """The same configuration for a broker of its own (a container): MQTT on 1883 on every address, with the
    ledger's logins, and MQTT over TLS on 8883 when ``tls_dir`` holds server.crt and server.key. Paths are as
    the broker sees them."""
    text = _fill(1883, "0.0.0.0", data_dir, _auth_lines(auth_dir, plugin))
    if tls_dir is not None:
        text += f"listener 8883 0.0.0.0\ncertfile {tls_dir}/server.crt\nkeyfile {tls_dir}/server.key\n"
    return text


def _auth_lines(auth_dir: Path, plugin: str) -> str:
    return (f"allow_anonymous false\npassword_file {auth_dir}/passwd\nplugin {plugin}\n"
            f"plugin_opt_config_file {auth_dir}/{DYNSEC_FILE}")


def _fill(port: int, bind: str, data_dir: Path, auth: str) -> str:
    text = _CONFIG_TEMPLATE.read_text()
    for key, value in (("{port}", str(port)), ("{bind}", bind), ("{data_dir}", str(data_dir)), ("{auth}", auth)):
        text = text.replace(key, value)
    return text


def probe_broker(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when the broker answers an MQTT CONNECT with a CONNACK (any reason code)."""
    answered = False

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        nonlocal answered
        answered = True

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="ganzhi-health-probe")
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=5)
    except OSError:
        return False
    try:
        loops = max(1, int(timeout_s / 0.05))
        for _ in range(loops):
            client.loop(timeout=0.05)
            if answered:
                return True
        return False
    finally:
        client.disconnect()


def wait_for_broker(host: str, port: int, timeout_s: float) -> bool:
    """Probe until the broker answers or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe_broker(host, port, 1.0):
            return True
        time.sleep(0.1)
    return False
