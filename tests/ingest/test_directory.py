"""The ledger as ingestion caches it: changes heard are looked up again, never dropped under a batch."""

from __future__ import annotations

from ingest.directory import Directory
from registry import service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import terminal_in

ACTOR = Actor("test")


def test_a_batch_looked_up_keeps_its_entries_though_the_listener_reconnects_before_it_is_judged(conn, db_url):
    """The listener clears the cache when it (re)connects: it emptied the cache between a batch's lookup and its
    judging, and the batch's messages of known terminals were dead-lettered as not in the ledger."""
    code = service.create_terminal(conn, terminal_in("目录重连"), ACTOR)
    conn.commit()
    directory = Directory(db_url)
    try:
        directory.ensure([code])
        directory.clear()  # the listener reconnected (notifications may have been missed)
        assert directory.knows(code) and directory.terminal(code).status == "active"
        service.update_terminal(conn, code, TerminalPatch(status="retired"), ACTOR)
        conn.commit()  # not heard: nobody listens here
        directory.ensure([code])  # the next batch looks it up again
        assert directory.terminal(code).status == "retired"
    finally:
        directory.close()


def test_a_change_heard_is_looked_up_with_the_next_batch_and_a_code_gone_is_unknown(conn, db_url):
    code = service.create_terminal(conn, terminal_in("目录变更"), ACTOR)
    conn.commit()
    terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
    directory = Directory(db_url)
    try:
        directory.ensure([code])
        service.update_terminal(conn, code, TerminalPatch(status="retired"), ACTOR)
        conn.commit()
        directory.forget("terminal", terminal_id, code)
        assert directory.terminal(code).status == "active"  # a batch looked up before the change
        directory.ensure([code])
        assert directory.terminal(code).status == "retired"
        conn.execute("delete from terminal where id = %s", (terminal_id,))
        conn.commit()
        directory.forget("terminal", terminal_id, code)
        directory.ensure([code])
        assert not directory.knows(code) and directory.terminal(code) is None
    finally:
        directory.close()
