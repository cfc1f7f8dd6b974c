"""Telemetry over HTTP: raw readings with a cursor, time buckets, CSV, newest values, state, dead letters."""

from __future__ import annotations

import datetime as dt

import psycopg

from ingest.validate import Accepted
from ingest.writer import Batch, DeadLetter, Writer
from tests.factories import BEILIN

T0 = dt.datetime(2026, 11, 26, 16, 0, tzinfo=dt.UTC)  # 2026-11-27 00:00 in Beijing


def _setup(http, db_url) -> tuple[str, str, str]:
    pole = http.post("/api/v1/poles", json={"name": "杆", "department": "cgj", "lon": BEILIN[0], "lat": BEILIN[1]})
    pole_code = pole.json()["code"]
    air = http.post("/api/v1/terminals", json={"name": "空气", "kind": "air_sensor", "pole": pole_code}).json()["code"]
    gas = http.post("/api/v1/terminals", json={"name": "甲烷", "kind": "methane_detector", "pole": pole_code})
    with psycopg.connect(db_url) as conn:
        ids = dict(conn.execute("select code, id from terminal").fetchall())
        batch = Batch()
        for minute in range(0, 120, 10):  # 12 readings per metric, every 10 minutes for 2 hours
            ts = int((T0 + dt.timedelta(minutes=minute)).timestamp() * 1000)
            batch.readings.append(Accepted(ids[air], air, "a34004", ts, 30.0 + minute, None))
            batch.readings.append(Accepted(ids[air], air, "a34002", ts, 50.0, "M" if minute == 0 else None))
        batch.saw(air, int(dt.datetime.now(dt.UTC).timestamp() * 1000))
        batch.saw(pole_code, int(dt.datetime.now(dt.UTC).timestamp() * 1000))
        batch.connections[pole_code] = ("online", int(dt.datetime.now(dt.UTC).timestamp() * 1000))
        batch.dead_letters.append(DeadLetter(f"ganzhi/v1/{air}/telemetry", air, b"{bad", "payload is not JSON"))
        Writer().write(conn, batch)
    return pole_code, air, gas.json()["code"]


def test_raw_readings_page_with_a_cursor(http, db_url):
    _, air, _ = _setup(http, db_url)
    window = {"from": T0.isoformat(), "to": (T0 + dt.timedelta(hours=3)).isoformat()}
    seen, after = [], None
    while True:
        page = http.get(f"/api/v1/terminals/{air}/readings", params={**window, "limit": 5,
                                                                     **({"after": after} if after else {})}).json()
        seen += [(r["ts"], r["metric"]) for r in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == 24 and seen == sorted(seen)
    one = http.get(f"/api/v1/terminals/{air}/readings", params={**window, "metric": "a34002"}).json()["data"]
    assert len(one) == 12 and one[0]["flag"] == "M"


def test_buckets_use_date_bin_on_beijing_days(http, db_url):
    _, air, _ = _setup(http, db_url)
    params = {"from": T0.isoformat(), "to": (T0 + dt.timedelta(hours=2)).isoformat(), "metric": "a34004"}
    hourly = http.get(f"/api/v1/terminals/{air}/readings", params={**params, "interval": "1h"}).json()["data"]
    assert [(b["count"], b["min"], b["max"], b["avg"]) for b in hourly] == [(6, 30.0, 80.0, 55.0),
                                                                           (6, 90.0, 140.0, 115.0)]
    daily = http.get(f"/api/v1/terminals/{air}/readings", params={**params, "interval": "1d"}).json()["data"]
    assert len(daily) == 1 and daily[0]["bucket"].startswith("2026-11-26T16:00:00")  # Beijing midnight
    csv_body = http.get(f"/api/v1/terminals/{air}/readings", params={**params, "interval": "1h", "format": "csv"})
    assert csv_body.text.lstrip("\ufeff").startswith("bucket,metric,avg,min,max,count")
    assert http.get(f"/api/v1/terminals/{air}/readings", params={**params, "interval": "7x"}).status_code == 422
    assert http.get(f"/api/v1/terminals/{air}/readings", params={**params, "metric": "w01001"}).status_code == 422
    too_many = http.get(f"/api/v1/terminals/{air}/readings",
                        params={"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "interval": "1m"})
    assert too_many.status_code == 422


def test_latest_values_and_states(http, db_url):
    pole, air, gas = _setup(http, db_url)
    latest = http.get(f"/api/v1/terminals/{air}/latest").json()
    assert latest["state"] == "online"
    assert {r["metric"]: (r["value"], r["unit"]) for r in latest["readings"]} == {
        "a34004": (140.0, "µg/m³"), "a34002": (50.0, "µg/m³")}
    on_pole = http.get(f"/api/v1/poles/{pole}/latest").json()
    assert [t["code"] for t in on_pole["terminals"]] == sorted([air, gas])
    states = {t["code"]: t["state"] for t in on_pole["terminals"]}
    assert states == {air: "online", gas: "never"}
    with psycopg.connect(db_url) as conn:  # the pole's last will arrives
        conn.execute("update device_state set connection = 'offline', connection_at = now() where code = %s", (pole,))
    assert http.get(f"/api/v1/terminals/{air}/state").json()["state"] == "offline"
    with psycopg.connect(db_url) as conn:  # back online, but nothing heard for longer than 3 intervals
        conn.execute("update device_state set connection = 'online', last_seen_at = now() - interval '1 hour'")
    assert http.get(f"/api/v1/terminals/{air}/state").json()["state"] == "silent"


def test_dead_letters_are_listed_with_reason_and_payload(http, db_url):
    _, air, _ = _setup(http, db_url)
    letters = http.get("/api/v1/dead-letters", params={"publisher": air}).json()["data"]
    assert [(d["reason"], d["payload_text"], d["payload_bytes"]) for d in letters] == [
        ("payload is not JSON", "{bad", 4)]
    assert http.get("/api/v1/dead-letters", params={"reason": "range"}).json()["data"] == []


def test_state_lists_and_the_per_department_summary(http, db_url):
    _, air, gas = _setup(http, db_url)
    silent = http.get("/api/v1/terminal-states", params={"state": "never"}).json()["data"]
    assert [t["code"] for t in silent] == [gas]
    online = http.get("/api/v1/terminal-states", params={"state": "online", "department": "生态环境局"}).json()
    assert [t["code"] for t in online["data"]] == [air]
    summary = http.get("/api/v1/terminal-states/summary", params={"division": "231202"}).json()["data"]
    assert {(r["department"], r["state"]): r["terminals"] for r in summary} == {("sthjj", "online"): 1,
                                                                                ("zjj", "never"): 1}
    assert http.get("/api/v1/terminal-states", params={"state": "asleep"}).status_code == 422
