"""Mosquitto's password and ACL files, enforced by the amqtt fallback broker.

When mosquitto is not installed, `ganzhi up` runs amqtt in-process; these plugins give it the
same logins and topic rules as mosquitto, read from the same files: ``user:$7$…`` PBKDF2-SHA512
lines, and ACL lines ``user NAME`` / ``topic read|write|readwrite FILTER`` / ``pattern … FILTER``
(with ``%u`` for the user name). Files are re-read when they change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session


class _Cached:
    """A file parsed again only when its modification time changes."""

    def __init__(self, path: str, parse) -> None:
        self.path = Path(path)
        self.parse = parse
        self.mtime: float | None = None
        self.value = None

    def get(self):
        mtime = self.path.stat().st_mtime if self.path.exists() else None
        if mtime != self.mtime:
            self.value = self.parse(self.path.read_text() if mtime is not None else "")
            self.mtime = mtime
        return self.value


def verify(secret: str, stored: str) -> bool:
    """Check a secret against a mosquitto ``$7$iterations$salt$hash`` line value."""
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        computed = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _passwords(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


@dataclass(frozen=True)
class _Rules:
    patterns: list[tuple[str, str]]
    users: dict[str, list[tuple[str, str]]]


def _acl(text: str) -> _Rules:
    rules = _Rules([], {})
    user = None
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user" and len(words) == 2:
            user = words[1]
            rules.users.setdefault(user, [])
        elif words[0] == "pattern" and len(words) == 3:
            rules.patterns.append((words[1], words[2]))
        elif words[0] == "topic" and len(words) == 3 and user is not None:
            rules.users[user].append((words[1], words[2]))
    return rules


def matches(topic: str, topic_filter: str) -> bool:
    """MQTT filter matching with ``+`` and ``#``."""
    parts, wanted = topic.split("/"), topic_filter.split("/")
    for i, level in enumerate(wanted):
        if level == "#":
            return True
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
    return len(parts) == len(wanted)


class PasswordFileAuth(BaseAuthPlugin):
    """Admits only users of the password file, with their secret."""

    def __init__(self, context) -> None:
        super().__init__(context)
        self._file = _Cached(self.context.config.password_file, _passwords)

    async def authenticate(self, *, session: Session) -> bool | None:
        stored = self._file.get().get(session.username or "")
        return bool(stored and session.password and verify(session.password, stored))

    @dataclass
    class Config:
        password_file: str = field(default="passwd")


class AclFileTopics(BaseTopicPlugin):
    """Lets each user publish and subscribe only where the ACL file says."""

    def __init__(self, context) -> None:
        super().__init__(context)
        self._file = _Cached(self.context.config.acl_file, _acl)

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool:
        if session is None or topic is None or not session.username:
            return False
        wanted = "write" if action == Action.PUBLISH else "read"
        rules: _Rules = self._file.get()
        allowed = [(access, f.replace("%u", session.username)) for access, f in rules.patterns]
        allowed += rules.users.get(session.username, [])
        return any(access in (wanted, "readwrite") and matches(topic, f) for access, f in allowed)

    @dataclass
    class Config:
        acl_file: str = field(default="acl")
