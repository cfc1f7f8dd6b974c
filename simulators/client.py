"""The simulated devices' MQTT client: aiomqtt's, made quiet when a run stops or the broker goes first.

A fleet is ~1,600 clients in one event loop; two gaps in aiomqtt (2.x) each cost one asyncio traceback per
client when they all lose the broker at once (Ctrl-C in `ganzhi up`'s terminal stops mosquitto with the rest):

- aiomqtt records a connection the broker dropped in a future that its ``__aexit__`` does not read when the
  session is already over: asyncio logs "Future exception was never retrieved" when it is collected. Here the
  context manager reads it (the session has already seen the loss as an ``MqttError`` from its next publish).
- paho asks for the socket's writer from the event loop, but aiomqtt defers the registration with
  ``call_soon_threadsafe``; when the connection closes in between, the deferred ``add_writer`` meets a closed
  descriptor ("Exception in callback ... add_writer ... Bad file descriptor"), or worse, a new socket that
  reuses its number. Here the deferred registration first checks that the socket is still the open one.

paho's own per-client error lines ("failed to receive on socket") go to a logger kept at CRITICAL: the fleet
counts its failures and logs the broker's loss once (``simulators.run``).
"""

from __future__ import annotations

import logging
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

QUIET = logging.getLogger("simulators.device_mqtt")
QUIET.setLevel(logging.CRITICAL)


class DeviceClient(aiomqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("logger", QUIET)
        super().__init__(*args, **kwargs)

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            lost = self._disconnected
            if lost.done() and not lost.cancelled():
                lost.exception()  # read: the loss reached the session already (see the module's docstring)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def writable() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # a broken connection, as aiomqtt's own callback treats it
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            if client.socket() is sock and sock.fileno() != -1:  # still this connection's socket, still open
                self._loop.add_writer(sock.fileno(), writable)

        self._loop.call_soon_threadsafe(register)
