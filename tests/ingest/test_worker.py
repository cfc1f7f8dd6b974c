"""The ingest worker against a real mosquitto (logins from the ledger) and real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from core.runtime import Service
from devices import encode_telemetry
from devices.telemetry import MAX_PAYLOAD_BYTES
from ingest.mqtt_client import ReceivedMessage
from ingest.worker import IngestWorker, WorkerConfig, _Received
from registry import service
from registry.changes import Actor
from registry.models import TerminalPatch
from tests.factories import pole_in, terminal_in
from tests.mqtt import WorkerThread, give_secret, publish, wait_until

ACTOR = Actor("test")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _count(db_url: str, sql: str, *params) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _setup_pole(conn, db_url, auth_broker):
    """A pole carrying an air sensor and a methane detector, each with a broker secret."""
    pole = service.create_pole(conn, pole_in(), ACTOR)
    air = service.create_terminal(conn, terminal_in(at=None, pole=pole), ACTOR)
    gas = service.create_terminal(conn, terminal_in("甲烷", "methane_detector", at=None, pole=pole), ACTOR)
    conn.commit()
    for code in (pole, air, gas):
        give_secret(db_url, code)
    auth_broker.sync()
    return pole, air, gas


def test_terminal_and_pole_gateway_readings_are_stored_once(conn, db_url, auth_broker):
    pole, air, gas = _setup_pole(conn, db_url, auth_broker)
    t = _now_ms()
    from_air = encode_telemetry([{"metric": "a34004", "value": 35}, {"metric": "a34002", "value": 60}], t)
    from_pole = encode_telemetry([{"code": air, "metric": "a34004", "value": 36, "ts": t + 1000},
                                  {"code": gas, "metric": "methane_lel", "value": 1.5}], t)
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, air, "s3cret", [(f"ganzhi/v1/{air}/telemetry", from_air)] * 2)  # duplicate
        publish(auth_broker.address, pole, "s3cret", [(f"ganzhi/v1/{pole}/telemetry", from_pole),
                                                       (f"ganzhi/v1/{pole}/status", b"online")])
        wait_until(lambda: worker.counters["messages"] >= 4)
    assert _count(db_url, "select count(*) from reading") == 4
    assert worker.counters["readings_repeated"] == 2
    with psycopg.connect(db_url) as c:
        latest = dict(c.execute("select metric, value from latest_reading l join terminal t on t.id = l.terminal_id "
                                "where t.code = %s", (air,)).fetchall())
        connection = c.execute("select connection from device_state where code = %s", (pole,)).fetchone()[0]
    assert latest == {"a34004": 36.0, "a34002": 60.0}  # the newest observation wins
    assert connection == "online"


def test_late_and_out_of_order_readings_land_at_their_observation_time(conn, db_url, auth_broker):
    _, air, _ = _setup_pole(conn, db_url, auth_broker)
    now = _now_ms()
    days_ago = now - 20 * 86_400_000
    messages = [(f"ganzhi/v1/{air}/telemetry", encode_telemetry([{"metric": "a34004", "value": v}], ts))
                for v, ts in ((10, now), (20, days_ago), (15, now - 60_000))]
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, air, "s3cret", messages)
        wait_until(lambda: worker.counters["messages"] >= 3)
    with psycopg.connect(db_url) as c:
        rows = c.execute("select value, tableoid::regclass::text from reading order by ts").fetchall()
        latest = c.execute("select value from latest_reading").fetchone()[0]
    assert [r[0] for r in rows] == [20.0, 15.0, 10.0]
    assert rows[0][1].startswith("reading_p")  # a partition made on demand for the late day
    assert latest == 10.0  # a late reading does not replace a newer one


def test_every_kind_of_bad_message_is_dead_lettered_and_the_worker_goes_on(conn, db_url, auth_broker):
    pole, air, gas = _setup_pole(conn, db_url, auth_broker)
    service.update_terminal(conn, gas, TerminalPatch(status="retired"), ACTOR)
    conn.commit()
    auth_broker.sync()
    now = _now_ms()
    topic = f"ganzhi/v1/{air}/telemetry"
    bad = [
        (b"{not json", "not JSON"),
        (json.dumps({"ts": now, "readings": [{"metric": "a34004", "value": "high"}]}).encode(), "finite number"),
        (b"x" * (MAX_PAYLOAD_BYTES + 10), "bytes, more than"),
        (encode_telemetry([{"metric": "ozone", "value": 1}], now), "unknown metric"),
        (encode_telemetry([{"metric": "methane_lel", "value": 1}], now), "does not report this metric"),
        (encode_telemetry([{"metric": "a34004", "value": 5000}], now), "outside the physical range"),
        (encode_telemetry([{"metric": "a34004", "value": 5}], now + 3_600_000), "in the future"),
    ]
    with WorkerThread(db_url, auth_broker) as worker:
        publish(auth_broker.address, air, "s3cret", [(topic, payload) for payload, _ in bad])
        publish(auth_broker.address, pole, "s3cret", [(f"ganzhi/v1/{pole}/telemetry", encode_telemetry(
            [{"code": gas, "metric": "methane_lel", "value": 5}], now))])
        publish(auth_broker.address, air, "s3cret",
                [(topic, encode_telemetry([{"metric": "a34004", "value": 33}, {"metric": "a34002", "value": -4}],
                                          now))])
        wait_until(lambda: worker.counters["messages"] >= len(bad) + 2)
    with psycopg.connect(db_url) as c:
        letters = c.execute("select publisher, reason, stored, length(payload), payload_size from dead_letter "
                            "order by id").fetchall()
        stored = c.execute("select metric, value from reading").fetchall()
    reasons = [r[1] for r in letters]
    for (_, expected), reason in zip(bad, reasons, strict=False):
        assert expected in reason
    assert "terminal is retired" in reasons[len(bad)]
    assert "a34002" in reasons[-1] and letters[-1][2] == 1  # the good reading of that message was stored
    assert letters[2][3:] == (64 * 1024, MAX_PAYLOAD_BYTES + 10)  # the start of the payload is kept, and its size
    assert stored == [("a34004", 33.0)]
    with pytest.raises(ConnectionRefusedError):  # a retired device has no broker login any more
        publish(auth_broker.address, gas, "s3cret", [(f"ganzhi/v1/{gas}/telemetry", bad[3][0])])


def test_unknown_device_topics_are_dead_lettered(conn, db_url, auth_broker):
    _setup_pole(conn, db_url, auth_broker)
    with WorkerThread(db_url, auth_broker) as worker:
        # the service user may not publish, so a device that was deleted after connecting is simulated by
        # registering, connecting, then removing it from the ledger
        ghost = service.create_terminal(conn, terminal_in("幽灵"), ACTOR)
        conn.commit()
        give_secret(db_url, ghost)
        auth_broker.sync()
        service.delete_terminal(conn, ghost, ACTOR)
        conn.commit()
        publish(auth_broker.address, ghost, "s3cret",
                [(f"ganzhi/v1/{ghost}/telemetry", encode_telemetry([{"metric": "a34004", "value": 1}], _now_ms()))])
        wait_until(lambda: worker.counters["dead_letters"] >= 1)
    assert _count(db_url, "select count(*) from dead_letter where reason like %s", "%not a pole or terminal%") == 1


def test_a_device_cannot_publish_as_another(conn, db_url, auth_broker):
    _, air, gas = _setup_pole(conn, db_url, auth_broker)
    payload = encode_telemetry([{"metric": "methane_lel", "value": 9}], _now_ms())
    with WorkerThread(db_url, auth_broker) as worker:
        codes = publish(auth_broker.address, air, "s3cret", [(f"ganzhi/v1/{gas}/telemetry", payload)])
        publish(auth_broker.address, gas, "s3cret", [(f"ganzhi/v1/{gas}/telemetry", payload)])
        wait_until(lambda: worker.counters["messages"] >= 1)
        time.sleep(0.5)
    assert codes == [0x87]  # MQTT 5 "not authorized"
    assert worker.counters["messages"] == 1
    assert _count(db_url, "select count(*) from reading") == 1
    with pytest.raises(ConnectionRefusedError, match=r"Not authorized|Bad user name or password"):
        publish(auth_broker.address, air, "wrong password", [(f"ganzhi/v1/{air}/telemetry", payload)])


def test_two_workers_on_the_shared_subscription_split_the_load(conn, db_url, auth_broker):
    _, air, _ = _setup_pole(conn, db_url, auth_broker)
    start = _now_ms() - 3_600_000
    messages = [(f"ganzhi/v1/{air}/telemetry", encode_telemetry([{"metric": "a34004", "value": i % 500}],
                                                                 start + i * 1000)) for i in range(2_000)]
    with WorkerThread(db_url, auth_broker) as one, WorkerThread(db_url, auth_broker) as two:
        publish(auth_broker.address, air, "s3cret", messages)
        wait_until(lambda: one.counters["messages"] + two.counters["messages"] >= 2_000, timeout_s=60)
    assert one.counters["messages"] > 200 and two.counters["messages"] > 200
    assert one.counters["readings_stored"] + two.counters["readings_stored"] == 2_000
    assert _count(db_url, "select count(*) from reading") == 2_000


def test_latest_values_follow_the_readings_while_the_worker_runs(conn, db_url, auth_broker):
    """Written behind the readings, the newest values still reach latest_reading without another batch coming
    or the worker stopping."""
    _, air, _ = _setup_pole(conn, db_url, auth_broker)
    message = encode_telemetry([{"metric": "a34004", "value": 41}], _now_ms())
    with WorkerThread(db_url, auth_broker, latest_every_s=0.5):
        publish(auth_broker.address, air, "s3cret", [(f"ganzhi/v1/{air}/telemetry", message)])
        wait_until(lambda: _count(db_url, "select count(*) from latest_reading where value = 41"))
        assert _count(db_url, "select count(*) from latest_debt_run") == 0


def test_a_batch_closes_once_its_oldest_message_has_waited_its_time(db_url):
    """Messages that queued while the previous batch was written go at once: the batch's wait counted from its
    first message's receipt, not from when the worker took it (which held them up to one more wait)."""
    svc = Service("ingest", "ingest batch-age", db_url)
    worker = IngestWorker(WorkerConfig(db_url, "127.0.0.1", 1, "batch-age", batch_wait_s=30), svc)
    received_ms = _now_ms() - 60_000  # they have waited a minute already
    for mid in range(5):
        worker._queue.put(_Received(1, ReceivedMessage(mid, b"ganzhi/v1/x/telemetry"), received_ms))
    late = threading.Timer(1.0, lambda: worker._queue.put(_Received(1, ReceivedMessage(9, b"t"), _now_ms())))
    late.start()
    batch = worker._take()
    late.cancel()
    assert [item.message.mid for item in batch] == [0, 1, 2, 3, 4]


def test_a_batch_waits_no_longer_than_its_time_when_the_clock_steps_back(db_url):
    """The wait is counted from the wall-clock receipt stamp: a clock stepped back (NTP) must not hold a batch,
    unacknowledged, for as long as the step."""
    svc = Service("ingest", "ingest clock-step", db_url)
    worker = IngestWorker(WorkerConfig(db_url, "127.0.0.1", 1, "clock-step", batch_wait_s=0.2), svc)
    worker._queue.put(_Received(1, ReceivedMessage(0, b"ganzhi/v1/x/telemetry"), _now_ms() + 3_600_000))
    late = threading.Timer(2.0, lambda: worker._queue.put(_Received(1, ReceivedMessage(9, b"t"), _now_ms())))
    late.start()
    batch = worker._take()
    late.cancel()
    assert [item.message.mid for item in batch] == [0]
