"""First fire frame → alert, through a real mosquitto, a `ganzhi fire` worker process and PostgreSQL.

Each probe is its own tower camera facing its own field; its scene is rendered before it is played, then
published at ``fps`` as JPEGs; the clock runs from publishing the first frame that shows fire to the
alert row being committed. Most of it is the detector's persistence (6 of 8 frames): it shrinks with a
higher frame rate."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from analytics.fire import geometry as geo
from core.broker import LocalBroker
from core.settings import Settings
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.database import prepare
from registry import service
from registry.changes import Actor
from registry.models import PoleIn, TerminalIn
from simulators.scenes import SceneSpec, render


def run(url: str, settings: Settings, probes: int, fps: float) -> None:
    scratch = scratch_database(url)
    root = Path(tempfile.mkdtemp(prefix="ganzhi-bench-fire-"))
    root.chmod(0o755)
    worker = None
    broker = LocalBroker(root / "mqtt", free_port())
    try:
        prepare(scratch, settings)
        cameras = _cameras(scratch, probes)
        asyncio.run(broker.start())
        env = dict(os.environ, DATABASE_URL=scratch, MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
                   GANZHI_LOG_LEVEL="WARNING")
        worker = subprocess.Popen([sys.executable, "-m", "ganzhi", "fire"], env=env)
        time.sleep(3)
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        delays = []
        with psycopg.connect(scratch, autocommit=True) as conn:
            for n, (code, pose, fire) in enumerate(cameras):
                delays.append(_probe(conn, client, code, pose, fire, fps, seed=200 + n))
        client.loop_stop()
        found = [d for d in delays if d is not None]
        print(f"first fire frame → alert committed, {fps:g} fps, {len(found)} of {probes} probes alerted: "
              f"median {statistics.median(found):.2f} s, max {max(found):.2f} s" if found else "no alert")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(20)
        asyncio.run(broker.stop())
        shutil.rmtree(root, ignore_errors=True)
        drop_database(url, scratch)


def _cameras(url: str, count: int) -> list[tuple[str, geo.Pose, tuple[float, float]]]:
    """Towers 1.2 km from their fields, in Beilin's farmland, 3 km apart."""
    out = []
    with psycopg.connect(url) as conn:
        for n in range(count):
            lat, lon = 46.70 + 0.03 * (n // 5), 126.70 + 0.04 * (n % 5)
            fire = geo.destination(lat, lon, 45, 1200)
            pose = geo.Pose(lat, lon, 40.0, 45.0, -2.0, 55.0)
            pole = service.create_pole(conn, PoleIn(name=f"基准塔{n}", department="sthjj", lon=lon, lat=lat),
                                       Actor("bench"))
            code = service.create_terminal(conn, TerminalIn(
                name=f"基准塔{n}可见光", kind="video_camera", pole=pole, department="sthjj",
                attrs={"mast_height_m": 40.0, "heading_deg": 45.0, "tilt_deg": -2.0, "hfov_deg": 55.0}),
                Actor("bench"))
            out.append((code, pose, fire))
        conn.commit()
    return out


def _probe(conn: psycopg.Connection, client: paho.Client, code: str, pose: geo.Pose, fire: tuple[float, float],
           fps: float, seed: int) -> float | None:
    u, v = geo.project(pose, 1280, 720, *fire)
    spec = SceneSpec("fire", seed, frames=40, horizon=geo.horizon_row(pose, 1280, 720), fire_at=(u, v),
                     fire_px_per_m=geo.focal_px(pose, 1280) / 1200)
    frames = [(label.fire, cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
              for image, label in render(spec)]
    started = None
    for burning, jpeg in frames:
        sent = time.perf_counter()
        if burning and started is None:
            started = sent
        client.publish(f"ganzhi/v1/{code}/frame", jpeg, qos=0)
        while time.perf_counter() - sent < 1 / fps:
            if started and _alerted(conn, code):
                return time.perf_counter() - started
            time.sleep(0.02)
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        if _alerted(conn, code):
            return time.perf_counter() - started
        time.sleep(0.05)
    return None


def _alerted(conn: psycopg.Connection, code: str) -> bool:
    return conn.execute(
        """
        select exists (select 1 from alert a join fire_detection d on d.event_id = a.fire_event_id
                        join terminal t on t.id = d.terminal_id where t.code = %s)
        """,
        (code,),
    ).fetchone()[0]
