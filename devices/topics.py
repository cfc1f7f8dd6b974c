"""The MQTT topic scheme: ``ganzhi/v1/{code}/{channel}``.

``{code}`` is the publishing terminal's or pole's city code; it is also the device's broker user
name and client id, so the broker lets each device publish only under its own code, and subscribe
only to its own commands, ``ganzhi/v1/{code}/command/#`` (sent by the platform, never by devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from devices.telemetry import CODE

PREFIX = "ganzhi/v1"
SHARE_GROUP = "ganzhi-ingest"


class Channel(StrEnum):
    telemetry = "telemetry"
    """JSON readings, QoS 1."""
    status = "status"
    """Retained ``online`` / ``offline``; ``offline`` is the last will."""
    frame = "frame"
    """Camera images, binary JPEG, for the fire worker."""


COMMAND = "command"
"""The platform-to-device channel: ``ganzhi/v1/{code}/command/...``."""


class TopicError(ValueError):
    """A topic outside the scheme."""


@dataclass(frozen=True)
class Topic:
    code: str
    channel: Channel

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != PREFIX:
            raise TopicError(f"topic {topic!r} is not {PREFIX}/{{code}}/{{channel}}")
        if not CODE.fullmatch(parts[2]):
            raise TopicError(f"topic {topic!r} does not name a device code (letters and digits)")
        try:
            channel = Channel(parts[3])
        except ValueError as exc:
            raise TopicError(f"topic {topic!r} has unknown channel {parts[3]!r}") from exc
        return cls(parts[2], channel)

    def __str__(self) -> str:
        return f"{PREFIX}/{self.code}/{self.channel}"


def subscription(channel: Channel, shared: bool = True) -> str:
    """The filter the ingest workers subscribe to; shared so that N workers split the load."""
    plain = f"{PREFIX}/+/{channel}"
    return f"$share/{SHARE_GROUP}/{plain}" if shared else plain


def device_topics(code: str) -> list[str]:
    """Every topic a device may publish on: its own channels."""
    return [str(Topic(code, channel)) for channel in Channel]


def command_filter(code: str) -> str:
    """The only filter a device may subscribe to: its own commands."""
    return f"{PREFIX}/{code}/{COMMAND}/#"
