"""The HJ 212 gateway over real TCP into real PostgreSQL, with the standard's own packets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import psycopg
import pytest

from core.runtime import Service
from devices import hj212
from ganzhi.benchkit import free_port
from ingest.hj212_gateway import GatewayConfig, Hj212Gateway
from registry import service
from registry.changes import Actor
from tests.factories import terminal_in
from tests.mqtt import wait_until

MN = "010000A8900016F000169DC0"
SEWAGE = {"plant": "北林区污水处理厂", "grade": "1A", "build_year": 2012}


def _frame(segment: str) -> bytes:
    data = segment.encode()
    return b"##%04d%s%04X\r\n" % (len(data), data, hj212.crc16(data))


def _now_time(minutes_ago: int = 0) -> str:
    """Beijing time as DataTime, ``minutes_ago`` minutes back."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 8 * 3600 - 60 * minutes_ago))


class _GatewayThread:
    def __init__(self, db_url: str) -> None:
        self.service = Service("hj212", "hj212 test", db_url)
        self.gateway = Hj212Gateway(GatewayConfig(db_url, "127.0.0.1", free_port(), retention_days=400,
                                                  batch_wait_s=0.02), self.service)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            ready = asyncio.Event()
            serving = asyncio.create_task(self.gateway.serve(ready))
            await ready.wait()
            self.ready.set()
            await serving

        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()

    def __enter__(self) -> _GatewayThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.service.request_stop()
        self.thread.join(10)

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.gateway.config.port), timeout=10,
                                        source_address=(source, 0))


def _answers(sock: socket.socket, count: int) -> list[hj212.Packet]:
    splitter, packets = hj212.Splitter(), []
    while len(packets) < count:
        frames, _ = splitter.feed(sock.recv(4096))
        packets += [hj212.decode(f) for f in frames]
    return packets


@pytest.fixture
def logger(conn):
    code = service.create_terminal(conn, terminal_in("北林区污水处理厂总排口", "sewage_outlet_analyser", attrs=SEWAGE,
                                                     protocol="hj212", mn=MN, pw="123456"), Actor("test"))
    conn.commit()
    return code


def _minute_packet(data_time: str, flag: str = "N", pw: str = "123456", mn: str = MN) -> bytes:
    return _frame(f"QN=20160801085000001;ST=32;CN=2051;PW={pw};MN={mn};Flag=5;CP=&&DataTime={data_time};"
                  f"w00000-Cou=10.5,w00000-Min=16.4,w00000-Avg=17.5,w00000-Max=20.1,w00000-Flag={flag};"
                  f"w01001-Min=7.1,w01001-Avg=7.5,w01001-Max=7.8,w01001-Flag={flag}&&")


def test_minute_data_is_stored_apart_and_answered_after_commit(db_url, logger):
    data_time = _now_time()[:12] + "00"
    with _GatewayThread(db_url) as gw, gw.connect() as sock:
        sock.sendall(_minute_packet(data_time))
        answer = _answers(sock, 1)[0]
    assert (answer.cn, answer.qn, answer.st) == ("9014", "20160801085000001", "91")
    with psycopg.connect(db_url) as c:
        rows = dict(c.execute("select metric, value from reading").fetchall())
        flags = {f for (f,) in c.execute("select flag from reading")}
    assert rows == {"w00000:cou:min": 10.5, "w00000:min:min": 16.4, "w00000:avg:min": 17.5, "w00000:max:min": 20.1,
                    "w01001:min:min": 7.1, "w01001:avg:min": 7.5, "w01001:max:min": 7.8}
    assert flags == {"N"}


def test_realtime_2005_style_frames_in_one_read_and_split_over_reads(db_url, logger):
    minute = _now_time(2)[:12]
    first = _frame(f"ST=32;CN=2011;PW=123456;MN={MN};CP=&&DataTime={minute}00;060-Rtd=1.8,060-Flag=M;001-Rtd=7.2&&")
    second = _frame(f"QN=1;ST=32;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&DataTime={minute}30;w21003-Rtd=1.9&&")
    with _GatewayThread(db_url) as gw, gw.connect() as sock:
        sock.sendall(first + second[:20])
        time.sleep(0.2)
        sock.sendall(second[20:])
        assert _answers(sock, 1)[0].cn == "9014"  # only the second asked for an answer (Flag=5)
        wait_until(lambda: gw.gateway.counters["readings_stored"] >= 3)
    with psycopg.connect(db_url) as c:
        rows = c.execute("select metric, value, flag from reading order by ts, metric").fetchall()
    assert rows == [("w01001", 7.2, None), ("w21003", 1.8, "M"), ("w21003", 1.9, None)]


@pytest.mark.parametrize(
    ("frame", "qn_rtn", "reason"),
    [
        (_minute_packet("20260101000000", pw="654321"), hj212.PW_ERROR, "wrong PW"),
        (_minute_packet("20260101000000", mn="010000A8900016F000169DC1"), hj212.MN_ERROR, "is not a logger"),
        (_minute_packet("20260101000000")[:-6] + b"0000\r\n", hj212.CRC_ERROR, "does not match"),
    ],
)
def test_bad_logins_and_crc_get_the_standards_reply_and_a_dead_letter(db_url, logger, frame, qn_rtn, reason):
    with _GatewayThread(db_url) as gw, gw.connect() as sock:
        sock.sendall(frame)
        answer = _answers(sock, 1)[0]
        assert (answer.cn, answer.values()["QnRtn"]) == ("9011", str(qn_rtn))
        sock.sendall(_minute_packet(_now_time()[:12] + "00"))  # the same connection goes on
        assert _answers(sock, 1)[0].cn == "9014"
    with psycopg.connect(db_url) as c:
        letters = [r for (r,) in c.execute("select reason from dead_letter")]
    assert len(letters) == 1 and reason in letters[0]


def test_garbage_and_over_length_do_not_disturb_other_connections(db_url, logger):
    with _GatewayThread(db_url) as gw, gw.connect() as bad, gw.connect() as good:
        bad.sendall(b"GET / HTTP/1.1\r\n\r\n##9999" + b"x" * 3000)
        good.sendall(_minute_packet(_now_time()[:12] + "00"))
        assert _answers(good, 1)[0].cn == "9014"
        bad.close()  # a connection's garbage is one dead letter, kept when it closes
        wait_until(lambda: gw.gateway.counters["dead_letters"] >= 1)
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from reading").fetchone()[0] == 7
        letters = c.execute("select reason, payload_size from dead_letter").fetchall()
    assert len(letters) == 1  # one per connection, not one per few bytes
    assert "bytes outside any HJ 212 frame" in letters[0][0] and letters[0][1] == 18 + 6 + 3000


def test_time_calibration_is_answered(db_url, logger):
    request = _frame(f"QN=20261127080000001;ST=32;CN=1013;PW=123456;MN={MN};Flag=5;CP=&&&&")
    with _GatewayThread(db_url) as gw, gw.connect() as sock:
        sock.sendall(request)
        notify, set_time = _answers(sock, 2)
    assert notify.cn == "9013"
    assert set_time.cn == "1012" and len(set_time.values()["SystemTime"]) == 14


def test_values_outside_range_or_future_are_dead_lettered_with_the_rest_stored(db_url, logger):
    now = _now_time()
    frame = _frame(f"QN=2;ST=32;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&DataTime={now};w01001-Rtd=19.5;"
                   f"w21003-Rtd=2.1;w99999-Rtd=1&&")
    with _GatewayThread(db_url) as gw, gw.connect() as sock:
        sock.sendall(frame)
        assert _answers(sock, 1)[0].cn == "9014"
    with psycopg.connect(db_url) as c:
        stored = [m for (m,) in c.execute("select metric from reading")]
        reason, count = c.execute("select reason, stored from dead_letter").fetchone()
    assert stored == ["w21003"] and count == 1
    assert "outside the physical range" in reason and "unknown metric" in reason
