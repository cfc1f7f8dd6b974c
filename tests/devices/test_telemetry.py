"""The telemetry payload codec and the topic scheme."""

from __future__ import annotations

import json

import pytest

from devices import Channel, PayloadError, Topic, TopicError, decode_telemetry, encode_telemetry
from devices.telemetry import MAX_PAYLOAD_BYTES
from devices.topics import command_filter, device_topics, subscription

T0 = 1_795_737_600_000  # 2026-11-27T00:00:00Z


def _payload(**body) -> bytes:
    return json.dumps(body).encode()


def test_message_time_is_the_default_and_rfc3339_is_accepted():
    readings = decode_telemetry(_payload(ts=T0, readings=[
        {"metric": "w01009", "value": 7.9},
        {"code": "23120221000001R", "metric": "w21003", "value": 1, "ts": "2026-11-27T08:00:05+08:00", "flag": "m"},
    ]))
    assert readings[0].ts_ms == T0 and readings[0].code is None and readings[0].value == 7.9
    assert readings[1].ts_ms == T0 + 5_000
    assert readings[1].flag == "M" and isinstance(readings[1].value, float)


def test_round_trip_with_the_encoder():
    body = encode_telemetry([{"metric": "a34004", "value": 35}], T0)
    assert decode_telemetry(body)[0].ts_ms == T0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{nope", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (_payload(ts=T0), "non-empty list"),
        (_payload(ts=T0, readings=[]), "non-empty list"),
        (_payload(ts=T0, readings=[{"metric": "a34004", "value": "35"}]), r"readings\[0\].value must be a finite"),
        (_payload(ts=T0, readings=[{"metric": "a34004", "value": True}]), "finite number"),
        (_payload(ts=T0, readings=[{"value": 35}]), "metric must be a metric key"),
        (_payload(readings=[{"metric": "a34004", "value": 35}]), "has no ts"),
        (_payload(ts=1_795_737_600, readings=[{"metric": "a34004", "value": 35}]), "seconds are not accepted"),
        (_payload(ts="2026-11-27 08:00", readings=[{"metric": "a34004", "value": 35}]), "no time zone"),
        (_payload(ts="yesterday", readings=[{"metric": "a34004", "value": 35}]), "not RFC 3339"),
        (_payload(ts=T0, readings=[{"metric": "a34004", "value": 35, "flag": "X"}]), "flag must be one of"),
        (_payload(ts=T0, readings=[{"metric": "a34004", "value": 35, "code": 7}]), "code must be a device code"),
        (_payload(ts=T0, readings=[{"metric": "a34004", "value": 1}] * 2001), "more than 2000"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "more than"),
        # poison that once raised OverflowError / ValueError / RecursionError past these checks (issue 10)
        (b'{"readings":[{"metric":"a34004","value":' + b"9" * 310 + b"}]}", "integer of 310 digits"),
        (b'{"readings":[{"metric":"a34004","value":' + b"9" * 5000 + b"}]}", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
        (b'{"ts":1795737600000,"readings":[{"metric":"a34004","value":NaN}]}', "NaN"),
        (b'{"ts":1795737600000,"readings":[{"metric":"a34004","value":1e999}]}', "finite number"),
        (_payload(ts=1e300, readings=[{"metric": "a34004", "value": 35}]), "not epoch milliseconds"),
        (_payload(ts=T0, readings=[{"metric": "a34\u0000004", "value": 35}]), "metric must be a metric key"),
        (_payload(ts=T0, readings=[{"metric": "a34004", "value": 35, "code": "2312\u0000"}]), "device code"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(payload, message):
    with pytest.raises(PayloadError, match=message):
        decode_telemetry(payload)


def test_topics():
    topic = Topic.parse("ganzhi/v1/23120221000001R/telemetry")
    assert (topic.code, topic.channel) == ("23120221000001R", Channel.telemetry)
    assert str(topic) == "ganzhi/v1/23120221000001R/telemetry"
    for bad in ("ganzhi/v1/x/commands", "other/v1/x/telemetry", "ganzhi/v1/telemetry", "ganzhi/v1/a\x00b/telemetry"):
        with pytest.raises(TopicError):
            Topic.parse(bad)
    assert subscription(Channel.telemetry) == "$share/ganzhi-ingest/ganzhi/v1/+/telemetry"
    assert "ganzhi/v1/23120221000001R/telemetry" in device_topics("23120221000001R")
    assert command_filter("23120221000001R") == "ganzhi/v1/23120221000001R/command/#"
