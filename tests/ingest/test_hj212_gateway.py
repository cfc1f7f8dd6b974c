"""The HJ 212 gateway over real TCP into real PostgreSQL, with the standard's own packets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import psycopg
import pytest

from core.runtime import Service
from devices import hj212
from ganzhi.benchkit import free_port
from ingest.hj212_gateway import GARBAGE_FLUSH_BYTES, GatewayConfig, Hj212Gateway, _Garbage
from registry import service
from registry.changes import Actor
from tests.factories import terminal_in
from tests.mqtt import wait_until
from tests.refusals import refusing_readings

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
        data = sock.recv(4096)
        if not data:
            raise ConnectionError(f"closed by the gateway after {len(packets)} of {count} answers")
        frames, _ = splitter.feed(data)
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


# -- issue 10: one frame never silences the gateway; secrets; guessing -----------------------------------------

POISON = [
    (_frame("QN=1;ST=32;CN=2011;PW=123456;MN=0100\x00A8900016F;Flag=5;CP=&&DataTime=20260101000000;w01001-Rtd=7&&"),
     "MN="),
    (_frame(f"QN=2;ST=32;CN=2051;PW=123456;MN={MN};Flag=5;CP=&&DataTime={_now_time()[:12]}00;w00000-Cou=inf&&"),
     "not a finite number"),
    (_frame(f"QN=3;ST=32;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&DataTime={_now_time()};w01001-Rtd=1e999;"
            f"w21003-Rtd=NaN;w21003-Flag=\x00&&"), "not a finite number"),
    (_frame(f"QN=4;ST=32;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&DataTime={_now_time()};w01\x00001-Rtd=7.1&&"),
     "not a factor code"),
]


@pytest.mark.parametrize(("poison", "reason"), POISON)
def test_a_poison_frame_is_dead_lettered_and_other_loggers_go_on(conn, db_url, logger, poison, reason):
    other_mn = "010000A8900016F000169DC9"
    service.create_terminal(conn, terminal_in("另一个排口", "sewage_outlet_analyser", attrs=SEWAGE, protocol="hj212",
                                              mn=other_mn, pw="654321"), Actor("test"))
    conn.commit()
    with _GatewayThread(db_url) as gw:
        with gw.connect() as bad:
            bad.sendall(poison)
            wait_until(lambda: gw.gateway.counters["frames"] >= 1)
        with gw.connect() as good:  # another logger, a new connection
            good.sendall(_minute_packet(_now_time()[:12] + "00", pw="654321", mn=other_mn))
            assert _answers(good, 1)[0].cn == "9014"
        assert not gw.service.stop.is_set()
    with psycopg.connect(db_url) as c:
        stored = c.execute("select count(*) from reading r join terminal t on t.id = r.terminal_id "
                           "where t.mn = %s", (other_mn,)).fetchone()[0]
        reasons = [r for (r,) in c.execute("select reason from dead_letter")]
        infinite = c.execute("select count(*) from reading where value in ('Infinity', '-Infinity', 'NaN')").fetchone()
    assert stored == 7
    assert infinite == (0,)
    assert len(reasons) == 1 and reason in reasons[0]


def test_a_frame_the_database_refuses_fails_alone(db_url, logger):
    """A value only PostgreSQL refuses (here a metric key with NUL, past every codec check) costs its own
    frame: the writer bisects the batch and every other part is stored."""
    from ingest.validate import Accepted
    from ingest.writer import Batch, Writer

    with psycopg.connect(db_url) as c:
        terminal_id = c.execute("select id from terminal where mn = %s", (MN,)).fetchone()[0]
        now_ms = int(time.time() * 1000)
        parts = [Batch(readings=[Accepted(terminal_id, logger, metric, now_ms + i, 1.0, None)])
                 for i, metric in enumerate(["w01001", "w21003", "w01\x00001", "w00000:cou:min", "w01001:avg:min"])]
        written = Writer().write_parts(c, parts)
        stored = sorted(m for (m,) in c.execute("select metric from reading"))
    assert list(written.refused) == [2] and "0x00" in written.refused[2]
    assert written.stored == 4 and stored == ["w00000:cou:min", "w01001", "w01001:avg:min", "w21003"]


def test_a_dead_writer_fails_the_service(db_url, logger):
    with _GatewayThread(db_url) as gw:
        gw.loop.call_soon_threadsafe(gw.gateway.writing.cancel)
        wait_until(lambda: gw.service.stop.is_set())
        gw.thread.join(10)
        assert not gw.thread.is_alive()  # the process would exit (code 1) and be restarted
    assert gw.service.state == "failed" and gw.service.exit_code == 1
    assert gw.service.detail["failed"]["component"] == "writer"


def test_a_logger_registered_a_moment_ago_is_answered(conn, db_url, logger):
    fresh_mn = "010000A8900016F000169DD0"
    with _GatewayThread(db_url) as gw:
        with gw.connect() as sock:  # warm: the gateway has just looked the ledger up
            sock.sendall(_minute_packet(_now_time()[:12] + "00"))
            assert _answers(sock, 1)[0].cn == "9014"
        service.create_terminal(conn, terminal_in("新排口", "sewage_outlet_analyser", attrs=SEWAGE, protocol="hj212",
                                                  mn=fresh_mn, pw="111111"), Actor("test"))
        conn.commit()
        with gw.connect() as sock:
            sock.sendall(_minute_packet(_now_time()[:12] + "00", pw="111111", mn=fresh_mn))
            assert _answers(sock, 1)[0].cn == "9014"


def test_dead_letters_keep_no_pw(db_url, logger):
    with _GatewayThread(db_url) as gw, gw.connect() as sock:
        sock.sendall(_minute_packet(_now_time()[:12] + "00", pw="987654"))
        assert _answers(sock, 1)[0].values()["QnRtn"] == str(hj212.PW_ERROR)
    with psycopg.connect(db_url) as c:
        payload = bytes(c.execute("select payload from dead_letter").fetchone()[0])
    assert b"PW=***;" in payload and b"987654" not in payload


def _guess(gw: _GatewayThread, pw: str, source: str = "127.0.0.1") -> bool:
    """One PW guess on a new connection; True when the gateway judged it (answered), False when it refused."""
    try:
        with gw.connect(source) as sock:
            sock.sendall(_minute_packet(_now_time()[:12] + "00", pw=pw))
            return bool(sock.recv(4096))
    except ConnectionError:
        return False


def test_pw_guessing_is_throttled_and_a_logger_elsewhere_is_not(db_url, logger):
    with _GatewayThread(db_url) as gw:
        with gw.connect("127.0.0.2") as sock:  # the logger reports from its own address
            sock.sendall(_minute_packet(_now_time()[:12] + "00"))
            assert _answers(sock, 1)[0].cn == "9014"
        started, judged = time.monotonic(), 0
        for guess in range(100):
            judged += _guess(gw, f"{guess:06d}")
            if time.monotonic() - started > 5:
                break
        with gw.connect("127.0.0.2") as sock:  # meanwhile the logger is unaffected
            sock.sendall(_minute_packet(_now_time(1)[:12] + "00"))
            assert _answers(sock, 1)[0].cn == "9014"
    assert judged <= 6  # 3 free guesses, then locked for 1, 2, 4 ... s; before the throttle all 100 in ~0.1 s


# -- the PW is never kept, however the frame spells it (the decoder strips the names of fields) ------------------

SECRET_MN, SECRET_PW = "010000A8900016F000169DE0", "987654"
PW_SPELLINGS = [f"PW ={SECRET_PW}", f" PW={SECRET_PW}", f"PW\t= {SECRET_PW} ", f"\u3000PW\u0085={SECRET_PW}"]


def _secret_frame(pw_field: str, cn: str = "2011", body: str = "", mn: str = SECRET_MN) -> bytes:
    return _frame(f"QN=5;ST=32;CN={cn};{pw_field};MN={mn};Flag=5;CP=&&{body or f'DataTime={_now_time()}'}"
                  f";w01001-Rtd=7.1;w99999-Rtd=1&&")


DEAD_LETTER_PATHS = {  # how a frame carrying the logger's PW ends as a dead letter
    "readings": lambda pw: _secret_frame(pw),  # w99999 is not a metric: the frame's letter, the rest stored
    "payload": lambda pw: _secret_frame(pw, body="DataTime=yesterday"),
    "command": lambda pw: _secret_frame(pw, cn="3020"),
    "frame": lambda pw: _secret_frame(pw)[:-6] + b"0000\r\n",  # wrong CRC
    "wrong_pw": lambda pw: _secret_frame(pw.replace(SECRET_PW, "987655")),  # a guess one digit off is kept no more
    "unknown_mn": lambda pw: _secret_frame(pw, mn="010000A8900016F000169DE1"),
    "garbage": lambda pw: b"##9999" + _secret_frame(pw)[6:],  # a length over the limit: bytes outside any frame
    "refused": lambda pw: _secret_frame(pw),  # the database refuses its readings (a trigger below)
}


@pytest.mark.parametrize("path", list(DEAD_LETTER_PATHS))
def test_no_dead_letter_keeps_the_pw_however_spelt(conn, db_url, path):
    code = service.create_terminal(conn, terminal_in("保密排口", "sewage_outlet_analyser", attrs=SEWAGE,
                                                     protocol="hj212", mn=SECRET_MN, pw=SECRET_PW), Actor("test"))
    conn.commit()
    frames = [DEAD_LETTER_PATHS[path](spelling) for spelling in PW_SPELLINGS]
    if path not in ("garbage", "frame", "unknown_mn", "wrong_pw"):  # the decoder takes each spelling for the PW
        assert {hj212.decode(f).pw for f in frames} == {SECRET_PW}
    refusing = refusing_readings(db_url, code, "23514") if path == "refused" else contextlib.nullcontext()
    with refusing, _GatewayThread(db_url) as gw:
        with gw.connect() as sock:
            for frame in frames:
                sock.sendall(frame)
                if path not in ("garbage", "payload"):
                    _answers(sock, 1)
        wait_until(lambda: _dead_letter_count(db_url) >= (1 if path == "garbage" else len(frames)))
    with psycopg.connect(db_url) as c:
        letters = c.execute("select reason, payload from dead_letter").fetchall()
    assert letters
    for reason, payload in letters:
        assert b"98765" not in bytes(payload), (reason, bytes(payload))
        assert b"***" in bytes(payload)


def _dead_letter_count(db_url: str) -> int:
    with psycopg.connect(db_url) as c:
        return c.execute("select count(*) from dead_letter").fetchone()[0]


def test_pw_redaction_reads_fields_as_the_decoder_does():
    for spelling in PW_SPELLINGS:
        frame = _secret_frame(spelling)
        assert hj212.decode(frame).pw == SECRET_PW
        assert SECRET_PW.encode() not in hj212.redact_pw(frame)
    run_together = b"junk;" + _secret_frame("PW=111111") + b"x##0040PW=222222##0003;PW=3;" + _secret_frame("PW=44")
    assert not any(pw in hj212.redact_pw(run_together) for pw in (b"111111", b"222222", b"=3;", b"=44;"))


# -- a statement the database cancels or finds over a limit is a refusal of one frame, not an outage ---------------

@pytest.mark.parametrize("sqlstate", ["57014", "54000"])  # query_canceled, program_limit_exceeded
def test_a_frame_whose_statement_fails_is_dead_lettered_and_the_others_stored(conn, db_url, logger, sqlstate):
    other_mn = "010000A8900016F000169DC9"
    other = service.create_terminal(conn, terminal_in("另一个排口", "sewage_outlet_analyser", attrs=SEWAGE,
                                                      protocol="hj212", mn=other_mn, pw="654321"), Actor("test"))
    conn.commit()
    with refusing_readings(db_url, other, sqlstate), _GatewayThread(db_url) as gw:
        with gw.connect() as bad, gw.connect() as good:
            bad.sendall(_minute_packet(_now_time()[:12] + "00", pw="654321", mn=other_mn))
            good.sendall(_minute_packet(_now_time()[:12] + "00"))
            assert _answers(bad, 1)[0].cn == "9014"  # kept: as a dead letter (before, the writer retried forever)
            assert _answers(good, 1)[0].cn == "9014"
        assert not gw.gateway._database.down
    with psycopg.connect(db_url) as c:
        stored = c.execute("select t.code, count(*) from reading r join terminal t on t.id = r.terminal_id"
                           " group by t.code").fetchall()
        letters = c.execute("select publisher, reason from dead_letter").fetchall()
    assert stored == [(logger, 7)]
    assert len(letters) == 1 and letters[0][0] == other and "refused for the test" in letters[0][1]


def test_a_guesser_cannot_lock_out_the_logger_reporting_from_a_new_address(db_url, logger):
    """The logger has not reported yet (or its 4G address changed): nothing trusts its address."""
    with _GatewayThread(db_url) as gw:
        judged = sum(_guess(gw, f"{guess:06d}", source="127.0.0.3") for guess in range(20))
        assert not _guess(gw, "123456", source="127.0.0.3")  # the guesser is locked, even with the right PW
        with gw.connect("127.0.0.2") as sock:
            sock.sendall(_minute_packet(_now_time()[:12] + "00"))
            assert _answers(sock, 1)[0].cn == "9014"
    assert judged <= 4  # 3 free guesses, then locked for 1, 2, 4 ... s


def test_garbage_is_redacted_only_once_its_letter_is_admitted(db_url, monkeypatch):
    """Redacting a 64 KiB garbage letter costs 0.17 s of the event loop; a peer over its dead letter budget made
    the gateway pay it for every flush all the same. Now a letter is redacted once admitted (in a thread)."""
    from ingest.dead_letters import Limiter

    redacted = []
    redact = hj212.redact_pw
    monkeypatch.setattr(hj212, "redact_pw", lambda data, *a: redacted.append(len(data)) or redact(data, *a))
    with _GatewayThread(db_url) as gw:
        gw.gateway._limiter = Limiter(burst=0)  # this peer has no budget left
        with gw.connect() as sock:
            sock.sendall(b"x;PW=1;" * (1 + GARBAGE_FLUSH_BYTES // 7))
            wait_until(lambda: gw.gateway.counters["dead_letters_suppressed"] >= 1)
    assert redacted == []


def test_a_pw_cut_by_a_garbage_flush_is_hidden_in_the_next_letter():
    before, after = _Garbage(), None
    before.add(b"x" * 100 + b";P")
    after = _Garbage(before.open)
    after.add(b"W=123456;QN=1")
    assert b"3456" not in after.redacted(after.letter("peer").payload)
    assert b"3456" in _Garbage().redacted(b"W=123456;QN=1")  # read alone it is not a PW
