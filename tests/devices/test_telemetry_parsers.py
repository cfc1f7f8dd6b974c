"""decode_telemetry decodes with msgspec first and otherwise parses with orjson, falling back to the standard
parser for what orjson refuses: every payload must get the same outcome (the same readings, or the same reason)
as with the standard parser alone."""

from __future__ import annotations

import json
from unittest import mock

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.telemetry import PayloadError, decode_telemetry

_SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_READING = st.fixed_dictionaries({"metric": st.sampled_from(["a34004", "w01001", "bad metric"]),
                                  "value": _SCALARS}, optional={"ts": _SCALARS, "flag": _SCALARS, "code": _SCALARS})
_PAYLOADS = (st.binary(max_size=200)
             | _VALUES.map(lambda v: json.dumps({"readings": [v]}).encode())
             | st.lists(_READING, min_size=1, max_size=5).map(
                 lambda r: json.dumps({"ts": 1795737600000, "readings": r}).encode()))


def _outcome(payload: bytes) -> tuple[str, object]:
    try:
        return "stored", decode_telemetry(payload)
    except PayloadError as exc:
        return "refused", str(exc)


def _standard_outcome(payload: bytes) -> tuple[str, object]:
    """The outcome when msgspec and orjson refuse everything: the standard parser alone, as before."""
    refusing = mock.Mock(decode=mock.Mock(side_effect=msgspec.DecodeError("refused")))
    with mock.patch("devices.telemetry.orjson.loads", side_effect=orjson.JSONDecodeError("refused", "", 0)), \
            mock.patch("devices.telemetry._FAST", refusing):
        return _outcome(payload)


@settings(max_examples=1500, deadline=None)
@given(_PAYLOADS)
def test_every_payload_gets_the_standard_parsers_outcome(payload):
    assert _outcome(payload) == _standard_outcome(payload)


_ABSENT = object()
_VALID = {"code": "23120221000001R", "metric": "a34004", "value": 7.5, "ts": 1795737600001, "flag": "N"}
_VARIANTS = {  # each field of a valid reading, and values just off (or only the standard parser's to take)
    "code": [_ABSENT, None, "", "a b", "x" * 32, "x" * 33, 5, "23120221000001R\n"],
    "metric": [_ABSENT, "w01001:avg:hour", "a34004\n", "", "_x", "x" * 65, 7],
    "value": [_ABSENT, None, 7, -1e15, 1e15, 1.5e15, -1.5e15, True, "7", 2**63, 2**70, 1e400],
    "ts": [_ABSENT, None, 1795737600001.5, 946_684_800_000, 946_684_799_999, 253_402_300_799_999,
           253_402_300_800_000, True, "2026-11-27T08:00:00+08:00", "2026-11-27T08:00:00", 5],
    "flag": [_ABSENT, None, "n", "B", "x", "NN", "\u017f", "", 1],
}
_MESSAGE_TS = [_ABSENT, None, 1795737600000, 1.7957376e12, "2026-11-27T08:00:00Z", False, 5]


def _payload(reading: dict, ts: object) -> bytes:
    body = {"readings": [{k: v for k, v in reading.items() if v is not _ABSENT}]}
    if ts is not _ABSENT:
        body["ts"] = ts
    return json.dumps(body).encode()


@pytest.mark.parametrize("payload", [
    *(_payload(_VALID | {field: value}, 1795737600000) for field, values in _VARIANTS.items() for value in values),
    *(_payload(_VALID | {"ts": _ABSENT}, ts) for ts in _MESSAGE_TS),
    *(_payload(_VALID | {"ts": reading_ts}, ts) for ts in _MESSAGE_TS for reading_ts in (None, 1795737600001)),
    b'{"readings":[]}', b'{"readings":{}}', b'[]',
    b'{"readings":[{"metric":"a34004","value":1,"value":2,"ts":1795737600000}]}',
    b'{"readings":[' + b'{"metric":"a34004","value":1,"ts":1795737600000},' * 2000 + b'{"metric":"a34004","value":1}]}',
])
def test_the_fast_decoder_agrees_field_by_field(payload):
    assert _outcome(payload) == _standard_outcome(payload)


def test_what_only_the_standard_parser_takes_is_judged_as_before():
    big = b'{"readings":[{"metric":"a34004","value":' + b"9" * 30 + b"}]}"  # beyond 64 bits: orjson refuses
    with pytest.raises(PayloadError, match="must be a finite number"):  # a value out of range, not "not JSON"
        decode_telemetry(big)
    lone = b'{"ts":1795737600000,"readings":[{"metric":"a34004","value":1,"flag":"\\ud800"}]}'
    with pytest.raises(PayloadError, match="flag must be one of"):
        decode_telemetry(lone)
