"""A local MQTT broker for embedded runs, and the broker health probe.

Mosquitto with the project's configuration when the binary exists; otherwise an
in-process amqtt broker (MQTT 3.1.1 only, no shared subscriptions: see stack notes).
"""

from __future__ import annotations

import asyncio
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

from core.lifeline import dying_with_parent, guarded

log = logging.getLogger(__name__)

_CONFIG_TEMPLATE = Path(__file__).with_name("mosquitto.conf")


class LocalBroker:
    """Owns one local broker: ``await start()``, ``reload()``, ``await stop()``.

    With ``auth_dir`` holding ``passwd`` and ``acl`` files, the broker admits only those users and
    lets them publish and subscribe only where the ACL says: mosquitto re-reads the files on
    ``reload()``, amqtt (through ``core.amqtt_plugins``) whenever they change.
    """

    def __init__(self, data_dir: Path, port: int, bind: str = "127.0.0.1", auth_dir: Path | None = None,
                 kind: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.bind = bind
        self.auth_dir = auth_dir.resolve() if auth_dir else None
        self.kind: str | None = kind
        """mosquitto or amqtt; left out, mosquitto when installed."""
        self._process: subprocess.Popen | None = None
        self._amqtt = None

    @staticmethod
    def available_kind() -> str:
        """The broker ``start`` will run: mosquitto (MQTT 5) or amqtt (MQTT 3.1.1)."""
        return "mosquitto" if shutil.which("mosquitto") else "amqtt"

    @property
    def mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def reload(self) -> None:
        """Make mosquitto re-read its password and ACL files (SIGHUP)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.kind = self.kind or self.available_kind()
        if self.kind == "mosquitto":
            self._start_mosquitto(shutil.which("mosquitto"))
        else:
            await self._start_amqtt()
        if not await asyncio.to_thread(wait_for_broker, "127.0.0.1", self.port, 10.0):
            await self.stop()
            raise RuntimeError(f"the {self.kind} broker did not accept connections on port {self.port}")
        log.info("%s broker listening on 127.0.0.1:%d", self.kind, self.port)

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await asyncio.to_thread(self._process.wait, 10)
            self._process = None
        if self._amqtt is not None:
            await self._amqtt.shutdown()
            self._amqtt = None
        log.info("broker stopped")

    def _start_mosquitto(self, binary: str) -> None:
        config = self.data_dir / "mosquitto.conf"
        config.write_text(write_mosquitto_config(self.port, self.data_dir, self.bind, self.auth_dir))
        hand_to_broker_user(self.data_dir)
        if self.auth_dir:
            hand_to_broker_user(self.auth_dir)
        # mosquitto drops to its own user when started as root, which clears a death signal: a guard holds it.
        self._process = subprocess.Popen(guarded([binary, "-c", str(config)]), stdin=subprocess.DEVNULL,
                                         preexec_fn=dying_with_parent())

    async def _start_amqtt(self) -> None:
        from amqtt.broker import Broker

        plugins: dict = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        if self.auth_dir is not None:
            plugins = {"core.amqtt_plugins.PasswordFileAuth": {"password_file": str(self.auth_dir / "passwd")},
                       "core.amqtt_plugins.AclFileTopics": {"acl_file": str(self.auth_dir / "acl")}}
        self._amqtt = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{self.bind}:{self.port}"}},
                              "plugins": plugins})
        await self._amqtt.start()


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
        auth = f"allow_anonymous false\npassword_file {auth_dir}/passwd\nacl_file {auth_dir}/acl"
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
