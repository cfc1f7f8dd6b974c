"""`ganzhi maintain` as a real process: it folds arriving readings into the rollups, beats its heartbeat
(which `ganzhi health` reads, the container health check), and stops on SIGTERM."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

import psycopg

from tests.mqtt import wait_until


def _env(url: str) -> dict[str, str]:
    return dict(os.environ, DATABASE_URL=url, GANZHI_RETENTION_DAYS="400")


def _health(url: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganzhi", "health", name], env=_env(url), capture_output=True,
                          text=True, timeout=60)


def test_the_maintenance_service_keeps_the_rollups_and_reports_healthy(prepared_database):
    url = prepared_database()
    process = subprocess.Popen([sys.executable, "-m", "ganzhi", "maintain", "--every", "0.2"], env=_env(url),
                               stderr=subprocess.PIPE, text=True)
    try:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with psycopg.connect(url) as conn:
            conn.execute("insert into reading (terminal_id, metric, ts, value) values (5, 'w01001', %s, 1.5), "
                         "(5, 'w01001', %s, 2.5)", (now, now - dt.timedelta(minutes=1)))
            conn.commit()

        def rolled() -> bool:
            with psycopg.connect(url) as conn:
                return conn.execute("select sum(readings) from reading_daily where terminal_id = 5").fetchone()[0] == 2

        wait_until(rolled, timeout_s=30)

        def counted() -> bool:  # its counters reach the heartbeat row (and its /metrics)
            with psycopg.connect(url) as conn:
                row = conn.execute("select counters from service_heartbeat where kind = 'maintenance'").fetchone()
            return row is not None and row[0].get("maintenance_rollup_runs", 0) >= 1

        wait_until(counted, timeout_s=30)
        health = _health(url, "maintenance")
        assert health.returncode == 0, health.stderr
        assert "maintenance: running" in health.stdout
        assert _health(url, "no such service").returncode == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors


def test_the_maintenance_service_applies_the_hourly_rollup_retention(prepared_database):
    url = prepared_database()
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url) as conn:
        for days in (500, 420):  # past the hourly rollups' 450 days, and within them
            for table in ("reading_hourly", "reading_daily"):
                conn.execute(f"insert into {table} (terminal_id, metric, bucket, readings, value_sum, value_min, "
                             "value_max, first_ts, last_ts) values (7, 'w01001', %(at)s, 1, 2, 2, 2, %(at)s, %(at)s)",
                             {"at": now - dt.timedelta(days=days)})
    process = subprocess.Popen([sys.executable, "-m", "ganzhi", "maintain", "--every", "0.2"],
                               env={**_env(url), "GANZHI_HOURLY_ROLLUP_RETENTION_DAYS": "450"},
                               stderr=subprocess.PIPE, text=True)
    try:
        def expired() -> bool:
            with psycopg.connect(url) as conn:
                row = conn.execute("select counters from service_heartbeat where kind = 'maintenance'").fetchone()
            return row is not None and row[0].get("maintenance_hourly_rollups_expired", 0) == 1

        wait_until(expired, timeout_s=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    with psycopg.connect(url) as conn:
        ages = {table: sorted(round((now - bucket).total_seconds() / 86400) for (bucket,) in conn.execute(
            f"select bucket from {table} where terminal_id = 7")) for table in ("reading_hourly", "reading_daily")}
    assert ages == {"reading_hourly": [420], "reading_daily": [420, 500]}
