"""decode_telemetry parses with orjson and falls back to the standard parser for what orjson refuses: every
payload must get the same outcome (the same readings, or the same reason) as with the standard parser alone."""

from __future__ import annotations

import json
from unittest import mock

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
    """The outcome when orjson refuses everything: the standard parser alone, as before."""
    with mock.patch("devices.telemetry.orjson.loads", side_effect=orjson.JSONDecodeError("refused", "", 0)):
        return _outcome(payload)


@settings(max_examples=500, deadline=None)
@given(_PAYLOADS)
def test_every_payload_gets_the_standard_parsers_outcome(payload):
    assert _outcome(payload) == _standard_outcome(payload)


def test_what_only_the_standard_parser_takes_is_judged_as_before():
    big = b'{"readings":[{"metric":"a34004","value":' + b"9" * 30 + b"}]}"  # beyond 64 bits: orjson refuses
    with pytest.raises(PayloadError, match="must be a finite number"):  # a value out of range, not "not JSON"
        decode_telemetry(big)
    lone = b'{"ts":1795737600000,"readings":[{"metric":"a34004","value":1,"flag":"\\ud800"}]}'
    with pytest.raises(PayloadError, match="flag must be one of"):
        decode_telemetry(lone)
