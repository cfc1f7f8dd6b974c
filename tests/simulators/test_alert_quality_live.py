"""The live alert-quality path, small: real mosquitto (logins from the ledger), PostgreSQL, an ingest worker and a
rule worker as `ganzhi up` runs them, three methane detectors of the simulated fleet publishing fast: one with a
gas leak (an event), one with a spiking sensor (a device fault), one healthy that the test makes read 50 %LEL once
(an alert no injection explains). The alerts the workers STORED are scored against the truth file the simulators
wrote (``bench_alert_quality_live``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from core.broker import LocalBroker
from devices import Channel, Topic, encode_telemetry
from ganzhi.bench_alert_quality import FAMILIES, Score
from ganzhi.bench_alert_quality_live import (
    SERVICE,
    Stored,
    _print_summary,
    run_fleet,
    run_simulators,
    score_file,
    score_stored,
    start_workers,
    stop_workers,
    wait_drained,
    wait_listening,
)
from ganzhi.benchkit import free_port
from ganzhi.broker_auth import platform_accounts, write_files
from registry import credentials, service
from registry.changes import Actor
from simulators import truth
from simulators.faults import Fault, plan
from simulators.fleet import load_fleet
from simulators.loggers import load_loggers
from tests.factories import RIVER_ATTRS, terminal_in
from tests.mqtt import wait_until

SECRET = "live-quality-test-demo-secret"
HOURS, SPEED = 10.0, 3000.0
"""Ten simulated hours in 12 s: a methane detector reports every 60 s, here 50 times a second."""


def _seed_inside(leak: str, spiking: str) -> int:
    """A seed whose leak and spike windows lie inside the run, half an hour from either end (a window wrapping
    round the run's start would begin on the series' first reading, which no jump test can judge)."""
    def inside(seed: int, fault: Fault, code: str) -> bool:
        injection = plan(fault, code, "methane_detector", ("methane_lel",), HOURS, seed, repeat=True)
        return injection.start_h >= 0.5 and injection.end_h <= HOURS - 0.5
    return next(seed for seed in range(1, 1000) if inside(seed, Fault.pollution, leak)
                and inside(seed, Fault.spike, spiking))


def _detectors(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        codes = [service.create_terminal(conn, terminal_in(f"测试阀井{n:02d}甲烷", "methane_detector",
                                                           at=(126.97 + n / 1000, 46.64), department="zjj"),
                                         Actor("test")) for n in range(3)]
        credentials.store(conn, [(code, credentials.hash_secret(credentials.demo_secret(SECRET, code)))
                                 for code in codes], "test")
        conn.commit()
    return codes


def _publish_leak(port: int, code: str, value: float) -> None:
    """Five readings a second apart at ``value``: a level, not a lone spike the jump screen would hold."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=code, protocol=paho.MQTTv5)
    client.username_pw_set(code, credentials.demo_secret(SECRET, code))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(client.is_connected, 10, 0.05)
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        for n in range(5):
            payload = encode_telemetry([{"metric": "methane_lel", "value": value + n % 2}], now_ms - (5 - n) * 1000)
            client.publish(str(Topic(code, Channel.telemetry)), payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_stored_alerts_are_scored_against_the_simulators_truth(prepared_database):
    url = prepared_database()
    leak, spiking, healthy = _detectors(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-live-quality-test-"))
    root.chmod(0o755)  # mosquitto, started as root, drops to its own user
    with psycopg.connect(url) as conn:
        write_files(conn, root / "auth", platform_accounts(*SERVICE))
        fleet = [p for p in load_fleet(conn) if p.code in (leak, spiking, healthy)]
    broker = LocalBroker(root / "mqtt", free_port(), auth_dir=root / "auth")
    asyncio.run(broker.start())
    workers = start_workers(dict(os.environ, DATABASE_URL=url, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                                 GANZHI_MQTT_USERNAME=SERVICE[0], GANZHI_MQTT_PASSWORD=SERVICE[1],
                                 GANZHI_LOG_LEVEL="WARNING"))
    truth_path = root / "truth.jsonl"
    try:
        began = dt.datetime.now(dt.UTC)
        asyncio.run(run_fleet(fleet, broker.port, SECRET, SPEED, HOURS, _seed_inside(leak, spiking), 0.0, truth_path,
                              faults={leak: Fault.pollution, spiking: Fault.spike}))
        _publish_leak(broker.port, healthy, 50.0)  # a leak no injection explains: a false alert
        wait_drained(url, timeout_s=60, quiet_s=3)
        stopped = dt.datetime.now(dt.UTC)
        recorded = truth.load(truth_path)
        stored = score_file(url, truth_path, began, stopped)  # as `bench alert-quality --truth FILE` does
        with psycopg.connect(url) as conn:
            alerts = conn.execute("""select t.code, a.rule from alert a join terminal t on t.id = a.terminal_id
                                      order by a.id""").fetchall()
    finally:
        stop_workers(workers)
        asyncio.run(broker.stop())
        shutil.rmtree(root, ignore_errors=True)

    assert {(t.kind, t.terminal) for t in recorded} == {(Fault.pollution, leak), (Fault.spike, spiking)}, \
        [json.dumps(t.__dict__, default=str) for t in recorded]
    gas, device = stored.scores["gas"], stored.scores["device"]
    assert (gas.injected, gas.detected) == (1, 1), (gas.missed, alerts)  # the leak was found
    assert (device.injected, device.detected) == (1, 1), (device.missed, alerts)  # and the spiking sensor
    # The healthy detector's 50 %LEL (a leak for gas:methane, or a jump for device:jump: the worker decides) is
    # explained by nothing: each of its alerts is counted false in its family, whose strict precision drops.
    wrong = [(s, line) for s in stored.scores.values() for line in s.false if line.startswith(f"{healthy} ")]
    assert wrong and len(wrong) == sum(code == healthy for code, _ in alerts), (wrong, alerts)
    assert all(s.precision < 1.0 for s, _ in wrong)
    # The leak's alerts are explained, and so are the spiking sensor's device alerts (a bureau alert its spike
    # raises would be false, as in the in-process bench).
    assert not [line for s in stored.scores.values() for line in s.false if line.startswith(f"{leak} ")], alerts
    assert not [line for line in device.false if line.startswith(f"{spiking} ")], alerts
    assert not any(line.split()[1].startswith("device:nodata") for s in stored.scores.values() for line in s.false)


LOGGER_HOURS, LOGGER_SPEED = 10.0, 1500.0
"""Ten simulated hours in 24 s: a logger waits for each answer (sent after the commit), so a few packets a second."""


def _loggers(url: str) -> tuple[str, str]:
    """A sewage outlet and a river station speaking HJ 212, with the demo's MN and PW for their names."""
    made = []
    with psycopg.connect(url) as conn:
        plant, river = {"plant": "测试污水处理厂", "grade": "1A", "build_year": 2012}, dict(RIVER_ATTRS)
        for name, kind, attrs, at in (("测试污水处理厂总排口", "sewage_outlet_analyser", plant, (126.98, 46.64)),
                                      ("呼兰河99号水质自动站", "water_quality_station", river, (126.94, 46.53))):
            mn, pw = credentials.demo_logger_login(SECRET, name)
            made.append(service.create_terminal(conn, terminal_in(name, kind, at=at, attrs=attrs, protocol="hj212",
                                                                  mn=mn, pw=pw), Actor("test")))
        conn.commit()
    return made[0], made[1]


def _seed_with_events_inside(codes: dict[str, tuple[str, tuple[str, ...]]]) -> int:
    """A seed whose pollution windows on these loggers (code: kind, metrics) lie inside the run, an hour from
    either end."""
    def inside(seed: int, code: str, kind: str, metrics: tuple[str, ...]) -> bool:
        injection = plan(Fault.pollution, code, kind, metrics, LOGGER_HOURS, seed, repeat=True)
        return injection.start_h >= 1.0 and injection.end_h <= LOGGER_HOURS - 1.0
    return next(seed for seed in range(1, 1000) if all(inside(seed, c, *km) for c, km in codes.items()))


def test_a_pollution_event_injected_through_a_logger_is_alerted_and_scored_live(prepared_database):
    """The river and sewage families live: the HJ 212 gateway and two simulated loggers, each with a pollution
    event, on the simulated clock the MQTT fleet keeps (``observed_from``): the stored alerts are the events'."""
    url = prepared_database()
    outlet, station = _loggers(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-live-quality-test-"))
    root.chmod(0o755)
    with psycopg.connect(url) as conn:
        write_files(conn, root / "auth", platform_accounts(*SERVICE))
        loggers = [lg for lg in load_loggers(conn, SECRET) if lg.code in (outlet, station)]
    seed = _seed_with_events_inside({lg.code: (lg.kind, lg.metrics) for lg in loggers})
    broker = LocalBroker(root / "mqtt", free_port(), auth_dir=root / "auth")
    asyncio.run(broker.start())
    gateway_port = free_port()
    workers = start_workers(dict(os.environ, DATABASE_URL=url, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                                 GANZHI_MQTT_USERNAME=SERVICE[0], GANZHI_MQTT_PASSWORD=SERVICE[1],
                                 GANZHI_LOG_LEVEL="WARNING", GANZHI_HJ212_HOST="127.0.0.1",
                                 GANZHI_HJ212_PORT=str(gateway_port)), gateway=True)
    truth_path = root / "truth.jsonl"
    observed_from = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=LOGGER_HOURS)
    try:
        wait_listening(gateway_port)
        _, logged = asyncio.run(run_simulators([], loggers, broker.port, gateway_port, SECRET, LOGGER_SPEED,
                                               LOGGER_HOURS, seed, 0.0, truth_path, {},
                                               {outlet: Fault.pollution, station: Fault.pollution},
                                               observed_from=observed_from))
        wait_drained(url, timeout_s=60, quiet_s=3)
        recorded = truth.load(truth_path)
        stored = score_file(url, truth_path, observed_from, observed_from + dt.timedelta(hours=LOGGER_HOURS, minutes=1))
        with psycopg.connect(url) as conn:
            alerts = conn.execute("""select t.code, a.rule, a.observed_start from alert a
                                       join terminal t on t.id = a.terminal_id order by a.id""").fetchall()
            first, last = conn.execute("select min(ts), max(ts) from reading").fetchone()
    finally:
        stop_workers(workers)
        asyncio.run(broker.stop())
        shutil.rmtree(root, ignore_errors=True)

    assert logged.packets > 0 and logged.refused == 0
    assert {(t.kind, t.terminal) for t in recorded} == {(Fault.pollution, outlet), (Fault.pollution, station)}
    # The readings carry simulated time: the run's ten hours, ending about when it did (not 24 s of wall clock).
    assert first < observed_from + dt.timedelta(hours=1) and last > observed_from + dt.timedelta(hours=8), (first, last)
    river, sewage = stored.scores["river"], stored.scores["sewage"]
    assert (sewage.injected, sewage.detected) == (1, 1), (sewage.missed, alerts)
    assert (river.injected, river.detected) == (1, 1), (river.missed, alerts)
    assert sewage.alerts and river.alerts and sewage.precision == river.precision == 1.0, (sewage.false, river.false)


def test_share_zero_gives_no_device_a_fault_and_one_device_always_stays_healthy():
    from ganzhi.bench_alert_quality_live import FAULTS, faulty_count

    assert faulty_count(8, 0.0) == 0
    assert faulty_count(8, 0.1) == len(FAULTS)  # every fault once at least
    assert faulty_count(3, 0.5) == 2 and faulty_count(1, 1.0) == 0
    assert faulty_count(100, 0.2) == 20


def test_the_summary_takes_the_same_median_as_the_run_and_times_each_kind_of_device_fault(capsys):
    """Seed 1212 of session 16 printed a device median of 47 min in the run's lines and 84.6 min in the summary (the
    upper of the middle two of 16 delays). The summary now takes the same median, and times stuck sensors apart from
    spikes (a stuck sensor takes its flat-line window, a spike the next reading)."""
    scores = {family: Score() for family in FAMILIES}
    device = scores["device"]
    device.injected = device.detected = 4
    device.delays_min = [2.0, 10.0, 700.0, 720.0]
    device.by_kind["spike"][:] = [2, 2, [2.0, 10.0]]
    device.by_kind["stuck"][:] = [2, 2, [700.0, 720.0]]
    _print_summary(Stored(scores, Counter(), []), 60.0)
    printed = capsys.readouterr().out
    assert "recall 1.000 (4/4)  time to alert median 355.0 min (5.9 real), max 720.0 min" in printed
    assert "device stuck  detected 2 of 2  time to alert median 710.0 min (11.8 real), max 720.0 min" in printed


def test_an_event_or_spike_the_run_end_cut_before_a_reading_could_show_it_is_unseen_not_missed(prepared_database):
    """Seeds 1212 and 1213 of session 16 counted a sewage event begun in the run's last minutes and a spike in its
    last reading as misses, though no reading could show them. Cut by the run's end, a spike needs the reading
    after it and an event a reading of a rule that answers it; without them it is counted invisible. One the
    plan ended before the run's end stays a miss however few readings it got."""
    url = prepared_database()
    lone_spike, told_spike, silent_leak = _detectors(url)
    until = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    minute = dt.timedelta(minutes=1)
    with psycopg.connect(url) as conn:
        ids = dict(conn.execute("select code, id from terminal where code = any(%s)",
                                ([lone_spike, told_spike, silent_leak],)).fetchall())
        stamps = {lone_spike: [until - 30 * minute, until - minute],  # only the spike itself inside
                  told_spike: [until - 30 * minute, until - 3 * minute, until - 2 * minute],
                  silent_leak: [until - 30 * minute]}  # nothing after the leak began
        conn.cursor().executemany("insert into reading (terminal_id, metric, ts, value) values (%s, 'methane_lel', "
                                  "%s, 0.5)", [(ids[code], ts) for code, times in stamps.items() for ts in times])
        conn.commit()
        truths = [truth.Truth(Fault.spike, lone_spike, None, until - 2 * minute, until + dt.timedelta(hours=2)),
                  truth.Truth(Fault.spike, told_spike, None, until - 4 * minute, until + dt.timedelta(hours=2)),
                  truth.Truth(Fault.pollution, silent_leak, None, until - 10 * minute, until + dt.timedelta(hours=3)),
                  # the plan's own window, ended inside the run: missed, not unseen, though no reading came
                  truth.Truth(Fault.pollution, silent_leak, None, until - 20 * minute, until - 15 * minute)]
        stored = score_stored(conn, truths, until - dt.timedelta(hours=1), until)
    device, gas = stored.scores["device"], stored.scores["gas"]
    assert (device.invisible, device.injected, device.detected) == (1, 1, 0), device.missed
    assert device.missed[0].split()[1] == told_spike
    assert (gas.invisible, gas.injected, gas.detected) == (1, 1, 0), gas.missed
