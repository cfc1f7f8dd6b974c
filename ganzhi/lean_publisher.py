"""A lean MQTT 5 QoS 1 publisher for the benchmarks: Eclipse's libmosquitto (the C client library that ships
with mosquitto's clients), called through ctypes.

The ingest benchmark simulates many gateways on the box it measures, so every microsecond a publisher spends
is taken from the broker, the workers and PostgreSQL. paho, message by message, cost 55–60 µs of CPU per
QoS 1 message unpaced and ≈ 110 µs paced (a Python packet, a wake-up of its network thread and a
``Semaphore`` per message). Here the packet is built, written and its PUBACK read in C, in libmosquitto's own
thread, which holds no GIL while it does so; Python makes one ``mosquitto_publish`` call per message and
counts each PUBACK in a callback (with its reason code: a PUBACK that refuses the message is counted as
refused, not as delivered). That thread is a Python thread running ``mosquitto_loop_forever`` rather than
libmosquitto's own (``mosquitto_loop_start``): a ctypes callback on a thread Python does not know makes and
drops a thread state on every call, which cost 10 µs per PUBACK, more than the rest of a message.
It is the real protocol to the real broker: one connection per gateway, MQTT 5, QoS 1, a window of
unacknowledged messages.

libmosquitto is Debian's ``libmosquitto1`` (a dependency of ``mosquitto-clients``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

MOSQ_OPT_PROTOCOL_VERSION = 1
MQTT_PROTOCOL_V5 = 5
_SUCCESS = 0
_REASON_REFUSED = 0x80
"""MQTT 5 reason codes from 0x80 up are failures (0x10, no matching subscribers, is a success)."""

_ON_CONNECT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
_ON_PUBLISH_V5 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_void_p)


class PublisherError(RuntimeError):
    """libmosquitto refused a call, or the broker refused the connection."""


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("mosquitto")
    if name is None:
        raise PublisherError("libmosquitto is not installed (apt-get install libmosquitto1)")
    lib = ctypes.CDLL(name)
    p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures = {
        "mosquitto_lib_init": [],
        "mosquitto_new": [s, ctypes.c_bool, p],
        "mosquitto_int_option": [p, i, i],
        "mosquitto_username_pw_set": [p, s, s],
        "mosquitto_max_inflight_messages_set": [p, ctypes.c_uint],
        "mosquitto_connect_callback_set": [p, _ON_CONNECT],
        "mosquitto_publish_v5_callback_set": [p, _ON_PUBLISH_V5],
        "mosquitto_connect": [p, s, i, i],
        "mosquitto_threaded_set": [p, ctypes.c_bool],
        "mosquitto_loop_forever": [p, i, i],
        "mosquitto_publish": [p, p, s, i, s, i, ctypes.c_bool],
        "mosquitto_disconnect": [p],
        "mosquitto_destroy": [p],
        "mosquitto_strerror": [i],
    }
    for function, argtypes in signatures.items():
        getattr(lib, function).argtypes = argtypes
        getattr(lib, function).restype = ctypes.c_int
    lib.mosquitto_new.restype = p
    lib.mosquitto_strerror.restype = s
    lib.mosquitto_destroy.restype = None
    lib.mosquitto_lib_init()
    return lib


_lib: ctypes.CDLL | None = None


def _mosquitto() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = _library()
    return _lib


class LeanPublisher:
    """One MQTT 5 connection publishing QoS 1; ``acked`` and ``refused`` count the PUBACKs as they come."""

    def __init__(self, client_id: str, username: str | None = None, password: str | None = None,
                 window: int = 500) -> None:
        self._lib = _mosquitto()
        self.window = window
        self.published = 0
        self.acked = 0
        """PUBACKs with a success reason code (written only by libmosquitto's thread)."""
        self.refused = 0
        """PUBACKs with a failure reason code (e.g. 0x87: not authorised to publish there)."""
        self._connack: int | None = None
        self._connected = threading.Event()
        self._loop: threading.Thread | None = None
        # The callbacks must outlive the client: libmosquitto keeps only their addresses.
        self._on_connect = _ON_CONNECT(self._connect_answered)
        self._on_publish = _ON_PUBLISH_V5(self._puback)
        self._mosq = self._lib.mosquitto_new(client_id.encode(), True, None)
        if not self._mosq:
            raise PublisherError("mosquitto_new failed")
        self._check(self._lib.mosquitto_int_option(self._mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5))
        self._check(self._lib.mosquitto_threaded_set(self._mosq, True))  # a publish wakes the loop thread
        self._check(self._lib.mosquitto_max_inflight_messages_set(self._mosq, window))
        if username is not None:
            self._check(self._lib.mosquitto_username_pw_set(
                self._mosq, username.encode(), None if password is None else password.encode()))
        self._lib.mosquitto_connect_callback_set(self._mosq, self._on_connect)
        self._lib.mosquitto_publish_v5_callback_set(self._mosq, self._on_publish)

    @property
    def in_flight(self) -> int:
        return self.published - self.acked - self.refused

    def connect(self, host: str, port: int, keepalive: int = 60, timeout_s: float = 30) -> None:
        self._check(self._lib.mosquitto_connect(self._mosq, host.encode(), port, keepalive))
        # ctypes lets go of the GIL for the call: the loop runs in C until ``close`` (it reconnects by itself).
        self._loop = threading.Thread(target=self._lib.mosquitto_loop_forever, args=(self._mosq, -1, 1),
                                      name="libmosquitto", daemon=True)
        self._loop.start()
        try:
            if not self._connected.wait(timeout_s):
                raise PublisherError(f"no CONNACK from {host}:{port} in {timeout_s:.0f} s")
            if self._connack != _SUCCESS:
                raise PublisherError(f"the broker refused the connection (reason code {self._connack})")
        except PublisherError:
            self.close()  # the loop thread would go on reconnecting with a client nobody closes
            raise

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Queue one QoS 1 PUBLISH (libmosquitto's thread writes it); the caller keeps ``in_flight`` within
        ``window`` (beyond it libmosquitto would hold messages back, and their publish times would be wrong)."""
        rc = self._lib.mosquitto_publish(self._mosq, None, topic, len(payload), payload, 1, False)
        if rc != _SUCCESS:
            self._check(rc)
        self.published += 1

    def wait_acknowledged(self, timeout_s: float, poll_s: float = 0.001) -> bool:
        """Until every message published has its PUBACK (True), or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
        return True

    def close(self) -> None:
        if self._mosq is None:
            return
        self._lib.mosquitto_disconnect(self._mosq)  # the loop writes DISCONNECT, then returns
        if self._loop is not None:
            self._loop.join(30)
            if self._loop.is_alive():  # freeing the client under a running loop would crash the process
                raise PublisherError("libmosquitto's loop did not stop within 30 s; the client is left allocated")
        self._lib.mosquitto_destroy(self._mosq)
        self._mosq = None

    def _connect_answered(self, mosq, userdata, rc: int) -> None:
        self._connack = rc
        self._connected.set()

    def _puback(self, mosq, userdata, mid: int, reason_code: int, properties) -> None:
        if reason_code >= _REASON_REFUSED:
            self.refused += 1
        else:
            self.acked += 1

    def _check(self, rc: int) -> None:
        if rc != _SUCCESS:
            raise PublisherError(f"libmosquitto: {self._lib.mosquitto_strerror(rc).decode()}")
