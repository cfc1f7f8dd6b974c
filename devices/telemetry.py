"""The telemetry payload (JSON over MQTT), decoded into our own frozen types at the edge.

    {"ts": "2026-11-27T08:00:00+08:00" | 1795766400000,
     "readings": [{"code": "23120221000001R", "metric": "w01009", "value": 7.9, "ts": ..., "flag": "N"}]}

``ts`` is RFC 3339 with a zone, or epoch milliseconds. A reading's ``code`` may be left out
when the publisher is the terminal itself; its ``ts`` defaults to the message's; ``flag`` is
an HJ 212 data flag. A payload that breaks this shape is refused whole (``PayloadError``);
whether each reading fits the ledger is decided downstream.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS = 2_000
FLAGS = frozenset("NFMSDCTB")
"""HJ 212-2017 data flags: N normal, F stopped, M maintenance, S manual, D fault, C calibration, T over range,
B communication lost."""
_EARLIEST_MS = 946_684_800_000  # 2000-01-01: smaller epoch numbers are seconds or garbage


class PayloadError(ValueError):
    """A payload that is not valid telemetry; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Reading:
    code: str | None
    metric: str
    ts_ms: int
    value: float
    flag: str | None


def decode_telemetry(payload: bytes) -> list[Reading]:
    """The readings of one message; raises ``PayloadError`` for anything malformed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload is {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise PayloadError("payload must be a JSON object with 'readings'")
    items = body.get("readings")
    if not isinstance(items, list) or not items:
        raise PayloadError("'readings' must be a non-empty list")
    if len(items) > MAX_READINGS:
        raise PayloadError(f"{len(items)} readings in one message, more than {MAX_READINGS}")
    default_ts = parse_time(body["ts"], "ts") if body.get("ts") is not None else None
    return [_reading(item, i, default_ts) for i, item in enumerate(items)]


def _reading(item: object, index: int, default_ts: int | None) -> Reading:
    # On the hot path (every reading of every message): exact type checks, no helper calls when all is well.
    if type(item) is not dict:
        raise PayloadError(f"readings[{index}] must be an object")
    metric = item.get("metric")
    if type(metric) is not str or not metric:
        raise PayloadError(f"readings[{index}].metric must be a non-empty string")
    value = item.get("value")
    kind = type(value)
    if not ((kind is float and math.isfinite(value)) or kind is int):
        raise PayloadError(f"readings[{index}].value must be a finite number, got {value!r}")
    code = item.get("code")
    if code is not None and type(code) is not str:
        raise PayloadError(f"readings[{index}].code must be a string")
    raw_ts = item.get("ts")
    ts = default_ts if raw_ts is None else parse_time(raw_ts, f"readings[{index}].ts")
    if ts is None:
        raise PayloadError(f"readings[{index}] has no ts and the message has none either")
    flag = item.get("flag")
    if flag is not None:
        if type(flag) is not str or flag.upper() not in FLAGS:
            raise PayloadError(f"readings[{index}].flag must be one of {''.join(sorted(FLAGS))}, got {flag!r}")
        flag = flag.upper()
    return Reading(code, metric, ts, float(value), flag)


def parse_time(value: object, where: str) -> int:
    """Epoch milliseconds from RFC 3339 text (with a zone) or an epoch-milliseconds number."""
    if isinstance(value, bool):
        raise PayloadError(f"{where} must be RFC 3339 text or epoch milliseconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < _EARLIEST_MS:
            raise PayloadError(f"{where} = {value!r} is not epoch milliseconds (seconds are not accepted)")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise PayloadError(f"{where} = {value!r} is not RFC 3339 time") from exc
        if parsed.tzinfo is None:
            raise PayloadError(f"{where} = {value!r} has no time zone (add Z or +08:00)")
        return int(parsed.timestamp() * 1000)
    raise PayloadError(f"{where} must be RFC 3339 text or epoch milliseconds")


def encode_telemetry(readings: list[dict], ts_ms: int | None = None) -> bytes:
    """A telemetry payload, as devices and simulators send it."""
    body: dict = {"readings": readings}
    if ts_ms is not None:
        body["ts"] = ts_ms
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
