"""Making PostgreSQL refuse one terminal's readings, as a statement-level failure (not an outage) would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql


@contextmanager
def refusing_readings(db_url: str, terminal_code: str, sqlstate: str) -> Iterator[None]:
    """A trigger raising ``sqlstate`` for every reading of ``terminal_code`` while inside; dropped after."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(sql.SQL("""
            create function test_refuse_reading() returns trigger language plpgsql as $$
            begin
                if new.terminal_id = (select id from terminal where code = {code}) then
                    raise exception 'refused for the test' using errcode = {sqlstate};
                end if;
                return new;
            end $$""").format(code=sql.Literal(terminal_code), sqlstate=sql.Literal(sqlstate)))
        c.execute("create trigger test_refuse_reading before insert on reading for each row"
                  " execute function test_refuse_reading()")
    try:
        yield
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("drop trigger if exists test_refuse_reading on reading")
            c.execute("drop function if exists test_refuse_reading()")
