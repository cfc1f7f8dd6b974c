"""The telemetry payload (JSON over MQTT), decoded into our own frozen types at the edge.

    {"ts": "2026-11-27T08:00:00+08:00" | 1795766400000,
     "readings": [{"code": "23120221000001R", "metric": "w01009", "value": 7.9, "ts": ..., "flag": "N"}]}

``ts`` is RFC 3339 with a zone, or epoch milliseconds. A reading's ``code`` may be left out
when the publisher is the terminal itself; its ``ts`` defaults to the message's; ``flag`` is
an HJ 212 data flag. A payload that breaks this shape is refused whole (``PayloadError``);
whether each reading fits the ledger is decided downstream.

Every payload is first decoded by msgspec straight into ``Reading`` structs, the types and limits
checked in C (the ingest hot path: one pass, no intermediate dicts). A payload that this strict
decoder refuses, or that it cannot judge exactly (an integer beyond 64 bits, a time given as text),
goes through the second decoder below, which accepts what the format allows and otherwise says
precisely what is wrong. The fast decoder accepts nothing the second would refuse.

Hard limits, so that what comes out is safe for any code and for PostgreSQL: at most
``MAX_PAYLOAD_BYTES``, nesting no deeper than the shape above (deeper JSON is refused, not
recursed into), values finite and within ``MAX_VALUE``, times within 2000…9999, codes and
metric names from a small character set (no NUL, no control characters).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated

import msgspec
import orjson
from msgspec import Meta

MAX_PAYLOAD_BYTES = 256 * 1024
_LONG_NUMBER = re.compile(rb"\d{19}")
"""19 digits in a row: maybe an integer beyond 64 bits (or a long fraction: parsed the same by both)."""
MAX_READINGS = 2_000
FLAGS = frozenset("NFMSDCTB")
"""HJ 212-2017 data flags: N normal, F stopped, M maintenance, S manual, D fault, C calibration, T over range,
B communication lost."""
MAX_VALUE = 1e15
"""Larger magnitudes are no measurement; beyond about 1e308 they would not even be a float."""
CODE = re.compile(r"[0-9A-Za-z]{1,32}")
"""A device code: a city code such as 23120221000001R (letters and digits)."""
METRIC = re.compile(r"[0-9A-Za-z_][0-9A-Za-z_.:-]{0,63}")
"""A metric key: a catalogue key (a34004, methane_lel) or an HJ 212 aggregate (w01001:avg:hour)."""
_EARLIEST_MS = 946_684_800_000  # 2000-01-01: smaller epoch numbers are seconds or garbage
_LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime can hold


class PayloadError(ValueError):
    """A payload that is not valid telemetry; the message says what is wrong."""


class Reading(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One reading. The annotations are also the fast decoder's checks of types and ranges (msgspec applies them
    when decoding, not when a reading is made in code); ``ts_ms`` is ``None`` only inside ``decode_telemetry``."""

    code: str | None = None
    metric: str
    ts_ms: Annotated[int, Meta(ge=_EARLIEST_MS, le=_LATEST_MS)] | None = msgspec.field(default=None, name="ts")
    value: Annotated[float, Meta(ge=-MAX_VALUE, le=MAX_VALUE)]
    flag: str | None = None


class _Message(msgspec.Struct, gc=False):
    readings: Annotated[list[Reading], Meta(min_length=1, max_length=MAX_READINGS)]
    ts: Annotated[int, Meta(ge=_EARLIEST_MS, le=_LATEST_MS)] | None = None


_FAST = msgspec.json.Decoder(_Message)
_FLAGS = {flag: flag for flag in FLAGS} | {flag.lower(): flag for flag in FLAGS}
_GOOD_CODES: set[str] = set()
_GOOD_METRICS: set[str] = set()
"""Codes and metric keys seen to match their pattern: the same few come again and again (a regex per field
cost more than the whole decode). Each set is emptied when it reaches ``_GOOD_MAX``."""
_GOOD_MAX = 1 << 16


def decode_telemetry(payload: bytes) -> list[Reading]:
    """The readings of one message; raises ``PayloadError`` for anything malformed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    # No scan for integers beyond 64 bits here: msgspec refuses them where they matter (a time, a value beyond
    # MAX_VALUE), and the second decoder then judges them exactly.
    try:
        message = _FAST.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        pass  # the second decoder says why, or accepts what this one does not take (a time as text)
    else:
        if _completed(message):
            return message.readings
    return _decode_checked(payload)


def _completed(message: _Message) -> bool:
    """Check codes, metric keys and flags, give each reading the message's time where it has none and flags in
    capitals; False when a reading is not right (the second decoder says why)."""
    default_ts = message.ts
    for reading in message.readings:
        if reading.metric not in _GOOD_METRICS and not _good(_GOOD_METRICS, METRIC, reading.metric):
            return False
        code = reading.code
        if code is not None and code not in _GOOD_CODES and not _good(_GOOD_CODES, CODE, code):
            return False
        if reading.ts_ms is None:
            if default_ts is None:
                return False
            msgspec.structs.force_setattr(reading, "ts_ms", default_ts)
        flag = reading.flag
        if flag is not None:
            upper = _FLAGS.get(flag)
            if upper is None:
                return False
            if upper is not flag:
                msgspec.structs.force_setattr(reading, "flag", upper)
    return True


def _good(known: set[str], pattern: re.Pattern, text: str) -> bool:
    if not pattern.fullmatch(text):
        return False
    if len(known) >= _GOOD_MAX:
        known.clear()
    known.add(text)
    return True


def _decode_checked(payload: bytes) -> list[Reading]:
    """The second decoder: the standard parsers and a check of every field, with a precise reason."""
    if _LONG_NUMBER.search(payload):  # orjson turns integers beyond 64 bits into floats: judge them exactly
        body = _loads(payload)
    else:
        try:
            body = orjson.loads(payload)  # strict JSON, in C: the hot path
        except orjson.JSONDecodeError:
            body = _loads(payload)  # what orjson refuses, the standard parser accepts or explains
    if not isinstance(body, dict):
        raise PayloadError("payload must be a JSON object with 'readings'")
    items = body.get("readings")
    if not isinstance(items, list) or not items:
        raise PayloadError("'readings' must be a non-empty list")
    if len(items) > MAX_READINGS:
        raise PayloadError(f"{len(items)} readings in one message, more than {MAX_READINGS}")
    default_ts = parse_time(body["ts"], "ts") if body.get("ts") is not None else None
    return [_reading(item, i, default_ts) for i, item in enumerate(items)]


def _loads(payload: bytes) -> object:
    """The standard parser, for payloads orjson refuses: it says why precisely (NaN, nesting, not UTF-8), and
    takes what orjson does not but the platform judges later itself (an integer beyond 64 bits, a lone
    surrogate), so both parsers lead to the same verdict."""
    try:
        return json.loads(payload, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise PayloadError("payload nests deeper than telemetry ever does") from exc
    except PayloadError:
        raise
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of thousands of digits
        raise PayloadError(f"payload is not JSON: {exc}") from exc


def _reading(item: object, index: int, default_ts: int | None) -> Reading:
    # On the hot path (every reading of every message): exact type checks, no helper calls when all is well.
    if type(item) is not dict:
        raise PayloadError(f"readings[{index}] must be an object")
    metric = item.get("metric")
    if type(metric) is not str or not METRIC.fullmatch(metric):
        raise PayloadError(f"readings[{index}].metric must be a metric key (letters, digits, _ . : -), "
                           f"got {_shown(metric)}")
    value = item.get("value")
    kind = type(value)
    if not ((kind is float or kind is int) and -MAX_VALUE <= value <= MAX_VALUE):  # NaN fails both comparisons
        raise PayloadError(f"readings[{index}].value must be a finite number within ±{MAX_VALUE:g}, "
                           f"got {_shown(value)}")
    code = item.get("code")
    if code is not None and (type(code) is not str or not CODE.fullmatch(code)):
        raise PayloadError(f"readings[{index}].code must be a device code (letters and digits), got {_shown(code)}")
    raw_ts = item.get("ts")
    ts = default_ts if raw_ts is None else parse_time(raw_ts, f"readings[{index}].ts")
    if ts is None:
        raise PayloadError(f"readings[{index}] has no ts and the message has none either")
    flag = item.get("flag")
    if flag is not None:
        if type(flag) is not str or flag.upper() not in FLAGS:
            raise PayloadError(f"readings[{index}].flag must be one of {''.join(sorted(FLAGS))}, got {_shown(flag)}")
        flag = flag.upper()
    return Reading(code=code, metric=metric, ts_ms=ts, value=float(value), flag=flag)


def parse_time(value: object, where: str) -> int:
    """Epoch milliseconds from RFC 3339 text (with a zone) or an epoch-milliseconds number."""
    if isinstance(value, bool):
        raise PayloadError(f"{where} must be RFC 3339 text or epoch milliseconds")
    if isinstance(value, int | float):
        if not _EARLIEST_MS <= value <= _LATEST_MS:  # NaN fails the comparison too
            raise PayloadError(f"{where} = {_shown(value)} is not epoch milliseconds (seconds are not accepted)")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise PayloadError(f"{where} = {_shown(value)} is not RFC 3339 time") from exc
        if parsed.tzinfo is None:
            raise PayloadError(f"{where} = {_shown(value)} has no time zone (add Z or +08:00)")
        return int(parsed.timestamp() * 1000)
    raise PayloadError(f"{where} must be RFC 3339 text or epoch milliseconds")


def _refuse_constant(name: str) -> float:
    raise PayloadError(f"payload has {name}, which is not a number")


def _shown(value: object) -> str:
    """A value for a reason: its repr, cut short (an attacker's value can be kilobytes long)."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def encode_telemetry(readings: list[dict], ts_ms: int | None = None) -> bytes:
    """A telemetry payload, as devices and simulators send it."""
    body: dict = {"readings": readings}
    if ts_ms is not None:
        body["ts"] = ts_ms
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
