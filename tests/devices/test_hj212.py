"""HJ 212-2017 framing against the standard's own packets and verified public vectors."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import hj212

# standards.md §1.5: the standard's example and reply packets, CRCs verified.
EXAMPLE = (b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
           b"CP=&&RtdInterval=30&&1C80\r\n")
REPLIES = [
    b"##0094QN=20160801085857223;ST=91;CN=9011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&QnRtn=1&&1B00\r\n",
    b"##0095QN=20160801085857223;ST=91;CN=9012;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&ExeRtn=1&&6240\r\n",
    b"##0087QN=20160801085857223;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&3240\r\n",
]
MINUTE = (b"##0325QN=20160801085000001;ST=32;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&"
          b"DataTime=20160801084000;w00000-Cou=10.5,w00000-Min=16.4,w00000-Avg=17.5,w00000-Max=20.1,"
          b"w00000-Flag=N;w01001-Min=7.1,w01001-Avg=7.5,w01001-Max=7.8,w01001-Flag=N;w01018-Cou=10.5,"
          b"w01018-Min=40.1,w01018-Avg=40.1,w01018-Max=40.1,w01018-Flag=N&&6180\r\n")
REALTIME_NO_QN = (b"##0321ST=32;CN=2011;PW=123456;MN=DM000001;CP=&&DataTime=20191223165100;w01001-Rtd=15.294,"
                  b"w01001-Flag=N;w01006-Rtd=12.122,w01006-Flag=N;w01010-Rtd=21.639,w01010-Flag=N;w01014-Rtd=92.088,"
                  b"w01014-Flag=N;w21003-Rtd=78.741,w21003-Flag=N;w21011-Rtd=92.488,w21011-Flag=N;w01019-Rtd=51.248,"
                  b"w01019-Flag=N;w01003-Rtd=3.262,w01003-Flag=N&&A141\r\n")
OLD_2005 = (b"ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817000;B01-Rtd=36.91;"
            b"011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&")
OLD_2005_B = (b"ST=32;CN=2011;PW=123456;MN=0873HHMZWSLH02;CP=&&DataTime=20160103133030;060-Rtd=3.0943,060-Flag=N;"
              b"011-Rtd=18.0412,011-Flag=N;001-Rtd=8.2137,001-Flag=N;B01-Rtd=10.9890,B01-Flag=N&&")


@pytest.mark.parametrize("frame", [EXAMPLE, *REPLIES, MINUTE, REALTIME_NO_QN])
def test_crc_of_the_standards_packets(frame):
    segment = frame[6:-6]
    assert f"{hj212.crc16(segment):04X}" == frame[-6:-2].decode()


def test_crc_of_public_vectors_and_not_modbus():
    assert hj212.crc16(OLD_2005) == 0x4980
    assert hj212.crc16(OLD_2005_B) == 0xA9C1
    segment = EXAMPLE[6:-6]
    assert hj212.crc16(segment) == 0x1C80  # CRC-16/MODBUS would give 0759


def test_decode_and_encode_round_trip_the_standards_example():
    packet = hj212.decode(EXAMPLE)
    assert (packet.qn, packet.st, packet.cn, packet.pw, packet.mn, packet.flag) == (
        "20160801085857223", "32", "1062", "100000", "010000A8900016F000169DC0", 5)
    assert packet.wants_reply and packet.version_2017
    assert packet.values() == {"RtdInterval": "30"}
    assert hj212.encode(packet) == EXAMPLE
    for frame in REPLIES:
        assert hj212.encode(hj212.decode(frame)) == frame


def test_replies_match_the_standards_tables():
    request = hj212.decode(MINUTE)
    request_pw = hj212.Packet(**{**request.__dict__, "qn": "20160801085857223"})
    assert hj212.request_answer(request_pw, hj212.READY) == REPLIES[0]
    assert hj212.data_answer(request_pw) == REPLIES[2]


def test_minute_data_values_at_the_start_of_the_period():
    values = hj212.data_values(hj212.decode(MINUTE))
    beijing = dt.timezone(dt.timedelta(hours=8))
    assert values.observed == dt.datetime(2016, 8, 1, 8, 40, tzinfo=beijing)
    got = {(v.factor, v.kind): (v.value, v.flag) for v in values.values}
    assert got[("w00000", "Cou")] == (10.5, "N")
    assert got[("w01001", "Avg")] == (7.5, "N")
    assert got[("w01018", "Max")] == (40.1, "N")
    assert len(got) == 11 and values.unreadable == []


def test_tolerant_input_2005_codes_missing_qn_and_flag_lowercase_crc():
    frame = b"##%04d%s%04x\r\n" % (len(OLD_2005_B), OLD_2005_B, hj212.crc16(OLD_2005_B))
    packet = hj212.decode(frame)
    assert packet.qn is None and packet.flag is None and not packet.wants_reply
    factors = {v.factor for v in hj212.data_values(packet).values}
    assert factors == {"w21003", "w01018", "w01001", "w00000"}
    realtime = hj212.data_values(hj212.decode(REALTIME_NO_QN))
    assert realtime.observed.hour == 16 and len(realtime.values) == 8


@pytest.mark.parametrize(
    ("frame", "message", "qn_rtn"),
    [
        (EXAMPLE[:-6] + b"1C81\r\n", "does not match", hj212.CRC_ERROR),
        (EXAMPLE.replace(b"##0101", b"##0100"), "length field", None),
        (b"##0010hello12\r\n", "not a frame", None),
        (b"##0009ST=32;CP=&&&&" + b"%04X\r\n" % hj212.crc16(b"ST=32;CP=&&&&"), "length field", None),
    ],
)
def test_bad_frames(frame, message, qn_rtn):
    with pytest.raises(hj212.FrameError, match=message) as caught:
        hj212.decode(frame)
    assert caught.value.qn_rtn == qn_rtn


def test_missing_fields_get_the_standards_reply_codes():
    for segment, code in ((b"ST=32;CN=2011;PW=1;CP=&&&&", hj212.MN_ERROR), (b"ST=32;MN=X;CP=&&&&", hj212.CN_ERROR)):
        frame = b"##%04d%s%04X\r\n" % (len(segment), segment, hj212.crc16(segment))
        with pytest.raises(hj212.FrameError) as caught:
            hj212.decode(frame)
        assert caught.value.qn_rtn == code


def test_splitter_several_frames_per_read_and_one_frame_over_reads():
    splitter = hj212.Splitter()
    frames, garbage = splitter.feed(b"noise" + EXAMPLE + MINUTE[:50])
    assert frames == [EXAMPLE] and garbage == [b"noise"]
    for i in range(50, len(MINUTE), 7):
        frames, _ = splitter.feed(MINUTE[i:i + 7])
    assert frames == [MINUTE] and splitter.pending == 0
    frames, garbage = splitter.feed(b"##9999" + EXAMPLE)  # over-length header skipped, next frame found
    assert frames == [EXAMPLE] and garbage == [b"##", b"9999"]


def test_time_answer_sets_the_loggers_clock():
    at = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    answer = hj212.decode(hj212.time_answer(hj212.decode(EXAMPLE), at))
    assert (answer.cn, answer.values()["SystemTime"]) == ("1012", "20261127080000")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1500))
def test_fuzz_decode_never_fails_otherwise(data):
    with contextlib.suppress(hj212.FrameError):
        hj212.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8), st.integers(min_value=1, max_value=64))
def test_fuzz_splitter_keeps_every_byte_and_finds_embedded_frames(noise, chunk):
    stream = b"".join(part.replace(b"#", b"") + EXAMPLE for part in noise)
    splitter = hj212.Splitter()
    frames, garbage = [], []
    for i in range(0, len(stream), chunk):
        got, junk = splitter.feed(stream[i:i + chunk])
        frames += got
        garbage += junk
    assert frames == [EXAMPLE] * len(noise)
    assert sum(map(len, frames)) + sum(map(len, garbage)) + splitter.pending == len(stream)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[0-9]{17}", fullmatch=True), st.sampled_from(["2011", "2051", "2061", "2031"]),
       st.from_regex(r"[0-9A-F]{24}", fullmatch=True), st.lists(st.floats(0, 1e6, allow_nan=False), max_size=12))
def test_encode_decode_round_trip(qn, cn, mn, numbers):
    cp = "DataTime=20261127080000;" + ";".join(f"w01001-Rtd={n},w01001-Flag=N" for n in numbers)
    packet = hj212.Packet(qn=qn, st="32", cn=cn, pw="123456", mn=mn, flag=5, cp=cp.rstrip(";"))
    assert hj212.decode(hj212.encode(packet)) == packet


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_table_crc_equals_the_standards_bitwise_algorithm(data):
    crc = 0xFFFF
    for byte in data:  # Appendix A, literally
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            check = crc & 1
            crc >>= 1
            if check:
                crc ^= 0xA001
    assert hj212.crc16(data) == crc


def test_a_pw_cut_by_a_boundary_is_hidden_with_what_came_before():
    """A garbage letter flushed after ``…;PW`` or ``…;P`` starts the next with ``=secret;`` or ``W=secret;``: read
    alone, that is no PW field; read after ``open_field`` of what came before, it is."""
    for before, after in ((b"junk;PW", b"=123456;QN=1"), (b"junk; P", b"W=123456;QN=1"), (b"junk;PW=12", b"3456;QN=1"),
                          (b"##0040 PW ", b"= 123456")):
        assert b"3456" in hj212.redact_pw(after)  # alone it is not a PW
        redacted = hj212.redact_pw(after, hj212.open_field(hj212.open_field(before[:3]) + before[3:]))
        assert b"3456" not in redacted and redacted.endswith((b"***;QN=1", b"***")), redacted
    assert hj212.open_field(b"junk;QN=1") == b"" and hj212.open_field(b"junk;PWX") == b""
    assert hj212.redact_pw(b"=1;QN=2", hj212.open_field(b"x;QN")) == b"=1;QN=2"
