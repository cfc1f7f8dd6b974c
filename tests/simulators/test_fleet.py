"""The simulator speaks only MQTT: through the real broker with each device's own login, into the
real store through an ingest worker, faults included."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import psycopg
import pytest

from registry import credentials, service
from registry.changes import Actor
from simulators import truth
from simulators.faults import Fault
from simulators.fleet import load_fleet
from simulators.run import SimConfig, simulate
from tests.factories import pole_in, terminal_in
from tests.mqtt import WorkerThread, wait_until

pytestmark = pytest.mark.slow
KEY = "test-demo-key"


def _fleet_ledger(conn, db_url) -> dict[str, str]:
    actor = Actor("test")
    pole = service.create_pole(conn, pole_in(), actor)
    air = service.create_terminal(conn, terminal_in(at=None, pole=pole), actor)
    gas = service.create_terminal(conn, terminal_in("阀井甲烷", "methane_detector", at=None, pole=pole), actor)
    flow = service.create_terminal(conn, terminal_in("DMA-01 入口", "district_flow_meter", attrs={
        "district": "DMA-01", "night_allowance_m3h": 12}), actor)
    heat = service.create_terminal(conn, terminal_in("换热站01", "heating_substation_sensor", attrs={
        "substation": "换热站01"}), actor)
    dup = service.create_terminal(conn, terminal_in("重复上报的甲烷", "methane_detector"), actor)
    camera = service.create_terminal(conn, terminal_in("摄像机", "video_camera"), actor)
    codes = [pole, air, gas, flow, heat, dup, camera]
    credentials.store(conn, [(c, credentials.hash_secret(credentials.demo_secret(KEY, c))) for c in codes], "test")
    conn.commit()
    return {"pole": pole, "air": air, "gas": gas, "flow": flow, "heat": heat, "dup": dup, "camera": camera}


def test_simulated_fleet_reaches_the_store_with_its_faults(conn, db_url, auth_broker):
    codes = _fleet_ledger(conn, db_url)
    auth_broker.sync()
    fleet = load_fleet(conn)
    assert sorted(p.code for p in fleet) == sorted([codes["pole"], codes["flow"], codes["heat"], codes["dup"]])
    host, port = auth_broker.address
    faults = {codes["flow"]: Fault.malformed, codes["heat"]: Fault.skew, codes["dup"]: Fault.duplicates}
    config = SimConfig(host=host, port=port, secret_key=KEY, speed=60, ramp_s=0.5, faults=faults)
    with WorkerThread(db_url, auth_broker) as worker:
        stats = _run_for(fleet, config, seconds=8)
        wait_until(lambda: worker.counters["messages"] >= stats.messages, timeout_s=30)
    with psycopg.connect(db_url) as c:
        stored = dict(c.execute("select t.code, count(*) from reading r join terminal t on t.id = r.terminal_id "
                                "group by 1").fetchall())
        reasons = [r[0] for r in c.execute("select reason from dead_letter").fetchall()]
        online = c.execute("select count(*) from device_state where connection = 'online'").fetchone()[0]
    assert stats.messages > 20 and stats.failures == 0
    assert stored[codes["air"]] > 0 and stored[codes["gas"]] > 0  # through the pole gateway
    assert stored[codes["dup"]] > 0 and worker.counters["readings_repeated"] > 0  # duplicates stored once
    assert codes["heat"] not in stored  # its clock runs 10 minutes fast: every reading refused
    assert any("in the future" in r for r in reasons)
    assert stats.malformed > 0 and sum("in the future" not in r for r in reasons) >= stats.malformed
    assert online == 4


def test_a_compressed_run_stamps_its_readings_and_truth_with_simulated_time(conn, db_url, auth_broker, tmp_path):
    """24 simulated hours squeezed into minutes are 24 hours of observation time to the rules (a flat line lasts its
    hours), not minutes stamped with the wall clock."""
    codes = _fleet_ledger(conn, db_url)
    auth_broker.sync()
    fleet = [p for p in load_fleet(conn) if p.code == codes["pole"]]
    host, port = auth_broker.address
    began = dt.datetime.now(dt.UTC)
    observed_from = began - dt.timedelta(hours=3)
    config = SimConfig(host=host, port=port, secret_key=KEY, speed=3600, ramp_s=0.1, faults={codes["pole"]:
                       Fault.stuck}, seed=5, horizon_h=3, truth=tmp_path / "truth.jsonl", truth_h=3,
                       observed_from=observed_from)
    with WorkerThread(db_url, auth_broker) as worker:
        stats = _run_for(fleet, config, seconds=2.5)
        wait_until(lambda: worker.counters["messages"] >= stats.messages, timeout_s=30)
    with psycopg.connect(db_url) as c:
        first, last = c.execute("select min(ts), max(ts) from reading r join terminal t on t.id = r.terminal_id "
                                "where t.code = %s", (codes["air"],)).fetchone()
    assert observed_from <= first < observed_from + dt.timedelta(minutes=30)
    assert last - first > dt.timedelta(hours=1.5)  # ≈ 2.5 s × 3600: simulated hours, not seconds
    assert last < began  # the run's hours end before it began: nothing from the future
    windows = truth.load(tmp_path / "truth.jsonl")
    assert windows and all(observed_from <= w.start < observed_from + dt.timedelta(hours=3) for w in windows)


def _run_for(fleet, config: SimConfig, seconds: float):
    result = {}

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            result["stats"] = await simulate(fleet, config, stop)

        asyncio.run(main())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(seconds + 30)
    return result["stats"]
