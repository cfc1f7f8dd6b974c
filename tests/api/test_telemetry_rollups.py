"""The bucketed readings endpoint reads the rollups over long windows: with the raw readings gone (as after
retention) a month's daily chart still shows them, while a short window reads the raw readings."""

from __future__ import annotations

import datetime as dt

import psycopg

from ingest import rollups
from ingest import store as reading_store
from tests.factories import BEILIN

DAY = dt.timedelta(days=1)


def test_a_long_window_is_charted_from_the_rollups(http, db_url):
    pole = http.post("/api/v1/poles", json={"name": "杆", "department": "cgj", "lon": BEILIN[0], "lat": BEILIN[1]})
    code = http.post("/api/v1/terminals", json={"name": "空气", "kind": "air_sensor",
                                                "pole": pole.json()["code"]}).json()["code"]
    first = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - 20 * DAY
    with psycopg.connect(db_url) as conn:
        terminal = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        stamps = [first + n * dt.timedelta(hours=3) for n in range(8 * 10)]  # ten days, every three hours
        reading_store.ensure_partitions_for(conn, stamps)
        conn.cursor().executemany("insert into reading (terminal_id, metric, ts, value) values (%s, 'a34004', %s, %s)",
                                  [(terminal, ts, float(n)) for n, ts in enumerate(stamps)])
        conn.commit()
        rollups.catch_up(conn, settle=dt.timedelta(0))
    try:
        month = {"from": (first - DAY).isoformat(), "to": (first + 25 * DAY).isoformat(), "interval": "1d"}
        charted = http.get(f"/api/v1/terminals/{code}/readings", params=month).json()["data"]
        assert sum(b["count"] for b in charted) == 80

        with psycopg.connect(db_url) as conn:  # the raw readings go, as retention would drop them
            conn.execute("delete from reading where terminal_id = %s", (terminal,))
            conn.commit()
        assert http.get(f"/api/v1/terminals/{code}/readings", params=month).json()["data"] == charted
        short = {"from": first.isoformat(), "to": (first + 2 * DAY).isoformat(), "interval": "1h"}
        assert http.get(f"/api/v1/terminals/{code}/readings", params=short).json()["data"] == []
    finally:  # terminal ids start again after the ledger is emptied: leave no rollups for the next test's
        with psycopg.connect(db_url) as conn:
            for table in ("reading", "reading_hourly", "reading_daily"):
                conn.execute(f"delete from {table} where terminal_id = %s", (terminal,))
