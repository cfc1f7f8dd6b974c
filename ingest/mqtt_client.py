"""paho with larger socket reads: the ingest worker's MQTT client.

paho reads each packet with at least three ``recv`` calls (the command byte, the length bytes one by
one, then the rest), and after each select() wake-up handles about one packet. Under load that is
three system calls and a select() per message. This client reads up to ``READ_SIZE`` bytes at a time
into a buffer of its own, hands paho its bytes from there, and keeps handling packets while the buffer
holds any. Acknowledging, paho wakes its network thread and sends one PUBACK per call: ``ack_many``
queues a committed batch's PUBACKs as one write (the same bytes on the wire, still only after the
commit). With MQTT 5, paho builds a ``Properties`` object for every PUBLISH, and building one (its
lookup tables made anew, then cleared attribute by attribute) cost more than the rest of the
receive path; ``FastProperties`` is the same class with those tables made once, and
``BufferedClient`` decodes PUBLISH packets with it: paho's own ``_handle_publish`` and ``decode_publish``
(their code objects, unchanged) bound to globals that name ``FastProperties``, so no other paho client in
the process is affected and a message costs nothing more. It also hands a message to ``on_message`` without
first walking paho's trie of per-topic callbacks when there are none. A packet whose bytes are all in the
buffer goes to paho's handler at once, without paho's byte-by-byte state machine (a ``recv`` call per field),
and a received message is a ``ReceivedMessage``: paho's, with the ``MQTTMessageInfo`` (a lock and a condition,
for tracking a message one publishes) made only if asked for. Everything else (sessions, shared
subscriptions, reconnects, packets split across reads) is paho's own code, unchanged.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Iterable
from types import FunctionType, SimpleNamespace

import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

READ_SIZE = 256 * 1024
_TABLES = {name: getattr(Properties(PacketTypes.PUBLISH), name) for name in ("types", "names", "properties")}
"""Read-only lookup tables, the same for every packet type."""
_OWN = {"packetType", *_TABLES}


class FastProperties(Properties):
    """paho's ``Properties`` with its lookup tables (the same for every packet type) built once, not per packet."""

    def __init__(self, packetType: int) -> None:  # noqa: N803 (paho's name)
        self.__dict__.update(_TABLES, packetType=packetType)

    def clear(self) -> None:
        """Remove the properties set; paho's own asks for every known name whether it is set."""
        for name in [name for name in self.__dict__ if name not in _OWN]:
            delattr(self, name)


def _rebound(function: FunctionType, **names: object) -> FunctionType:
    """paho's ``function``, its code unchanged, finding ``names`` where it looks up its module's globals."""
    rebound = FunctionType(function.__code__, {**function.__globals__, **names}, function.__name__,
                           function.__defaults__, function.__closure__)
    rebound.__kwdefaults__, rebound.__qualname__ = function.__kwdefaults__, function.__qualname__
    return rebound


_INFO = paho.MQTTMessage.__dict__["info"]
"""The slot paho keeps a message's ``MQTTMessageInfo`` in."""


class ReceivedMessage(paho.MQTTMessage):
    """paho's message, its ``info`` made on first use: a received message never needs it, and making one (a
    ``threading.Condition`` each) cost more than the rest of the message."""

    __slots__ = ()

    def __init__(self, mid: int = 0, topic: bytes = b"") -> None:  # paho's fields, in paho's order, but ``info``
        self.timestamp = 0.0
        self.state = paho.mqtt_ms_invalid
        self.dup = False
        self.mid = mid
        self._topic = topic
        self.payload = b""
        self.qos = 0
        self.retain = False
        self.properties = None

    @property
    def info(self) -> paho.MQTTMessageInfo:
        try:
            return _INFO.__get__(self)
        except AttributeError:
            _INFO.__set__(self, paho.MQTTMessageInfo(self.mid))
            return _INFO.__get__(self)


_PACKET = SimpleNamespace(**{**vars(paho_packet), "decode_publish": paho_packet.convert_exception(
    _rebound(inspect.unwrap(paho_packet.decode_publish), Properties=FastProperties))})
"""paho's packet decoders, with a ``decode_publish`` that builds a received PUBLISH's ``FastProperties``."""


_NO_PACKET = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1, "remaining_length": 0,
              "packet": bytearray(), "to_process": 0, "pos": 0}
"""paho's ``_in_packet`` between packets (the list and bytearray are made anew for each)."""


class BufferedClient(paho.Client):
    """A ``paho.Client`` whose socket reads are ``READ_SIZE`` bytes (see the module's docstring)."""

    _handle_publish = _rebound(paho.Client._handle_publish, _packet=_PACKET, MQTTMessage=ReceivedMessage)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_at = 0
        self._read_socket: object | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_socket is not self._sock:  # a new connection: bytes of the old one are no use
            self._read_buffer, self._read_at, self._read_socket = b"", 0, self._sock
        if self._read_at >= len(self._read_buffer):
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError when nothing came: paho's "again"
            if not data:
                return data  # the connection closed
            self._read_buffer, self._read_at = data, 0
        chunk = self._read_buffer[self._read_at:self._read_at + bufsize]
        self._read_at += len(chunk)
        return chunk

    def _packet_read(self) -> MQTTErrorCode:
        """A packet wholly in the buffer goes straight to paho's handler; anything else (a packet split across
        reads, or the first of a read) takes paho's own way."""
        whole = self._whole_packet()
        if whole is None:
            return super()._packet_read()
        self._in_packet = {**_NO_PACKET, "command": whole[0], "packet": whole[1], "have_remaining": 1,
                           "remaining_count": [], "remaining_length": len(whole[1])}
        try:
            rc = self._packet_handle()
        except paho_packet.MalformedPacket as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {**_NO_PACKET, "remaining_count": [], "packet": bytearray()}
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        return rc

    def _whole_packet(self) -> tuple[int, bytes] | None:
        """(command, the bytes after the fixed header) of the next packet, taken from the buffer, if paho is
        between packets and the buffer holds all of it."""
        if self._in_packet["command"] or not self._buffered():
            return None
        buffer, at = self._read_buffer, self._read_at
        length, shift, end = 0, 0, len(buffer)
        for index in range(at + 1, min(at + 5, end)):  # the remaining length: at most four 7-bit bytes
            length |= (buffer[index] & 127) << shift
            shift += 7
            if buffer[index] < 128:
                start = index + 1
                if start + length > end:
                    return None
                self._read_at = start + length
                return buffer[at], buffer[start:start + length]
        return None  # its length is not all in the buffer (or malformed: paho's own way says so)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        """paho's, without matching each topic against per-topic callbacks when none were added: its trie walk
        (a generator per topic level) cost more than the rest of handing a message over."""
        if self._on_message_filtered._root._children:  # message_callback_add was used: paho's own way
            super()._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def ack_many(self, messages: Iterable[tuple[int, int]]) -> None:
        """Acknowledge (mid, qos) pairs: QoS 1 PUBACKs in one packet write, QoS 2 one by one (paho's own)."""
        pubacks = bytearray()
        for mid, qos in messages:
            if qos == 1:
                pubacks += struct.pack("!BBH", paho.PUBACK, 2, mid)  # MQTT 5 too: success needs no reason code
            elif qos == 2:
                self.ack(mid, qos)
        if pubacks:
            self._packet_queue(paho.PUBACK, bytes(pubacks), 0, 1)

    def _buffered(self) -> bool:
        return self._read_socket is self._sock and self._read_at < len(self._read_buffer)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's, repeated while the buffer holds bytes: select() does not see them, the socket is drained."""
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._buffered():
            rc = super().loop_read(max_packets)
        return rc
