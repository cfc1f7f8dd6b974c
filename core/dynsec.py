"""Mosquitto's dynamic-security plugin: its starting configuration and its control topic.

The plugin (shipped with mosquitto 2.0) checks subscriptions as well as publications, binds a login
to one client id, and applies a change sent on ``$CONTROL/dynamic-security/v1`` at once, kicking a
client it disables. Mosquitto 2.0 takes a client's password there only in clear, so here the plugin
holds no passwords: a client without one is authenticated by the broker's ``password_file``
(hashes, re-read on SIGHUP) after the plugin has checked its client id. Anything the plugin does not
grant is denied (``defaultACLAccess`` all false but unsubscribe).
"""

from __future__ import annotations

import asyncio
import glob
import json
import uuid
from dataclasses import dataclass, field

import aiomqtt

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so", "/usr/lib/mosquitto/mosquitto_dynamic_security.so")
"""Where distributions install the plugin (Debian: /usr/lib/x86_64-linux-gnu)."""
HARMLESS = ("Role already exists", "Client already exists")
"""Answers to a repeated create: the broker already has what was asked."""
TIMEOUT_S = 10.0


def plugin_path() -> str | None:
    """The installed plugin, if any."""
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class Acl:
    kind: str
    """publishClientSend, publishClientReceive, subscribePattern, unsubscribePattern..."""
    topic: str
    allow: bool = True

    def document(self) -> dict:
        return {"acltype": self.kind, "topic": self.topic, "allow": self.allow}


@dataclass(frozen=True)
class Role:
    name: str
    acls: tuple[Acl, ...]

    def document(self) -> dict:
        return {"rolename": self.name, "acls": [acl.document() for acl in self.acls]}


@dataclass(frozen=True)
class Client:
    username: str
    roles: tuple[str, ...]
    clientid: str | None = None
    """When set, the login is refused under any other client id."""

    def document(self) -> dict:
        document = {"username": self.username, "roles": [{"rolename": r} for r in self.roles]}
        return document | ({"clientid": self.clientid} if self.clientid else {})


def configuration(roles: list[Role], clients: list[Client]) -> dict:
    """The plugin's configuration file: everything not granted is denied."""
    return {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                                 "unsubscribe": True},
            "clients": [c.document() for c in clients], "groups": [], "roles": [r.document() for r in roles]}


def admin_role(name: str) -> Role:
    """What the login that sends control commands needs."""
    return Role(name, (Acl("publishClientSend", f"{CONTROL_TOPIC}"), Acl("subscribePattern", RESPONSE_TOPIC),
                       Acl("publishClientReceive", RESPONSE_TOPIC)))


def create(role: Role, client: Client) -> list[dict]:
    return [{"command": "createRole"} | role.document(), {"command": "createClient"} | client.document()]


def enable(username: str) -> dict:
    return {"command": "enableClient", "username": username}


def disable(username: str) -> dict:
    """Refuses the login from now on and disconnects it if connected."""
    return {"command": "disableClient", "username": username}


class ControlError(RuntimeError):
    """The plugin refused a command, or did not answer."""


@dataclass
class Control:
    """A login on the control topic: ``async with Control(...) as control: await control.send([...])``."""

    host: str
    port: int
    username: str
    password: str
    _client: aiomqtt.Client | None = field(default=None, init=False)

    async def __aenter__(self) -> Control:
        self._client = aiomqtt.Client(self.host, self.port, identifier=self.username, username=self.username,
                                      password=self.password, protocol=aiomqtt.ProtocolVersion.V5)
        await self._client.__aenter__()
        await self._client.subscribe(RESPONSE_TOPIC, qos=1)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.__aexit__(*exc)

    async def usernames(self) -> list[str]:
        """Every login the plugin has (enabled or not)."""
        responses = await self.send([{"command": "listClients", "verbose": False, "count": -1}])
        return list(responses[0].get("data", {}).get("clients", []))

    async def send(self, commands: list[dict]) -> list[dict]:
        """Send the commands as one message, wait for the plugin's answer to each and return the answers."""
        if not commands:
            return []
        batch = uuid.uuid4().hex
        await self._client.publish(CONTROL_TOPIC, json.dumps(
            {"commands": [c | {"correlationData": batch} for c in commands]}), qos=1)
        async with asyncio.timeout(TIMEOUT_S):
            async for message in self._client.messages:
                responses = json.loads(message.payload).get("responses", [])
                if responses and responses[0].get("correlationData") == batch:
                    _check(responses)
                    return responses
        raise ControlError("the broker closed the control connection")


def _check(responses: list[dict]) -> None:
    failed = [f"{r.get('command')}: {r['error']}" for r in responses if r.get("error") not in (None, *HARMLESS)]
    if failed:
        raise ControlError("; ".join(failed))
