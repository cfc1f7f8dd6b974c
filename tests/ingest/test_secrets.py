"""Issue 10 §5: the change log holds nothing a PW can be recovered from; dead letters expire."""

from __future__ import annotations

import hashlib
import json

from ingest import store
from ingest.writer import Batch, DeadLetter, Writer
from registry import service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import terminal_in

SEWAGE = {"plant": "北林区污水处理厂", "grade": "1A", "build_year": 2012}


def test_the_change_log_says_only_that_a_pw_is_set_or_changed(conn):
    code = service.create_terminal(conn, terminal_in("总排口", "sewage_outlet_analyser", attrs=SEWAGE, protocol="hj212",
                                                     mn="010000A8900016F000169DC0", pw="123456"), Actor("test"))
    service.update_terminal(conn, code, TerminalPatch(pw="654321"), Actor("test"))
    service.update_terminal(conn, code, TerminalPatch(name="总排口 1"), Actor("test"))
    rows = conn.execute("select summary, before, after from change where object_code = %s order by id",
                        (code,)).fetchall()
    text = json.dumps([r[1:] for r in rows])
    for pw in ("123456", "654321"):
        digest = hashlib.sha256(pw.encode()).hexdigest()
        assert pw not in text and digest[:8] not in text
    assert [(r[1] or {}).get("pw") for r in rows] == [None, "set", "set"]
    assert [r[2]["pw"] for r in rows] == ["set", "changed", "set"]
    assert rows[1][0].endswith(": pw") and "pw" not in rows[2][0]


def test_dead_letters_expire_after_their_retention(conn):
    Writer().write(conn, Batch(dead_letters=[DeadLetter("ganzhi/v1/x/telemetry", None, b"{bad", "not JSON")] * 2))
    conn.execute("update dead_letter set received_at = now() - interval '40 days' where id = 1")
    conn.commit()
    done = store.maintain(conn, retention_days=30, premake_days=1, dead_letter_days=30)
    assert done.dead_letters_deleted == 1
    assert conn.execute("select id from dead_letter").fetchall() == [(2,)]


def test_a_dead_letter_keeps_the_start_of_a_payload_its_size_and_hash(conn):
    payload = b"\x00" * 200_000
    Writer().write(conn, Batch(dead_letters=[DeadLetter("hj212://1.2.3.4:5/\x00", "a\x00b", payload, "bad\x00")]))
    kept = conn.execute("select length(payload), payload_size, payload_sha256, topic, publisher, reason "
                        "from dead_letter").fetchone()
    assert kept[:3] == (64 * 1024, 200_000, hashlib.sha256(payload).digest())
    assert kept[3:] == ("hj212://1.2.3.4:5/\\0", "a\\0b", "bad\\0")
