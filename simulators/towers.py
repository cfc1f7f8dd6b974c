"""Tower cameras that speak only the device contract: each logs in as its own city code and publishes
JPEG (visible) or 16-bit PNG (thermal) frames on ``ganzhi/v1/{code}/frame``, with the MQTT 5 user
property ``captured_at``. The scenes alternate between quiet farmland, hard negatives and a straw fire
burning at a ground point in front of the tower, drawn where the camera's pose puts it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
from dataclasses import dataclass

import aiomqtt
import cv2
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from analytics.fire import geometry
from analytics.fire.frames import encode_thermal
from analytics.fire.store import POSE_KEYS
from devices import Channel, Topic
from registry.credentials import demo_secret
from simulators.client import DeviceClient
from simulators.hotspots import thermal_sequence
from simulators.scenes import SceneSpec, render

log = logging.getLogger(__name__)

VISIBLE = (1280, 720)
THERMAL = (640, 512)
PLAYLIST = ("clear", "fire", "vehicle", "sunset", "dust")


@dataclass(frozen=True)
class TowerCamera:
    code: str
    kind: str
    pose: geometry.Pose


def load_towers(conn: psycopg.Connection, limit: int) -> list[TowerCamera]:
    """The first ``limit`` towers' cameras (visible and thermal) that have a pose."""
    rows = conn.execute(
        """
        select t.code, t.kind, p.lat, p.lon, t.attrs, p.code from terminal t join pole p on p.id = t.pole_id
         where t.kind in ('video_camera', 'thermal_camera') and t.status = 'active' and p.name like '%%监控塔%%'
         order by p.code, t.kind desc
        """
    ).fetchall()
    towers: dict[str, list[TowerCamera]] = {}
    for code, kind, lat, lon, attrs, pole in rows:
        if attrs.keys() >= POSE_KEYS:
            pose = geometry.Pose(lat, lon, attrs["mast_height_m"], attrs["heading_deg"], attrs["tilt_deg"],
                                 attrs["hfov_deg"])
            towers.setdefault(pole, []).append(TowerCamera(code, kind, pose))
    return [c for cams in itertools.islice(towers.values(), limit) for c in cams]


def fire_point(pose: geometry.Pose, distance_m: float = 800.0) -> tuple[float, float]:
    """A field in front of the tower, on the camera's axis, near enough for its flames to show (further
    out, only the smoke would: smoke alone does not raise an alert)."""
    return geometry.destination(pose.lat, pose.lon, pose.heading_deg, distance_m)


async def run_towers(cameras: list[TowerCamera], host: str, port: int, secret_key: str, stop: asyncio.Event,
                     fps: float = 2.0, seconds_per_scene: float = 20.0) -> int:
    """Publish until ``stop``; returns the number of frames sent."""
    sent = await asyncio.gather(*(_camera(c, host, port, secret_key, stop, fps, seconds_per_scene)
                                  for c in cameras))
    return sum(sent)


async def _camera(camera: TowerCamera, host: str, port: int, secret_key: str, stop: asyncio.Event, fps: float,
                  seconds: float) -> int:
    sent = 0
    topic = str(Topic(camera.code, Channel.frame))
    while not stop.is_set():
        try:
            async with DeviceClient(host, port, identifier=camera.code, username=camera.code,
                                      password=demo_secret(secret_key, camera.code),
                                      protocol=aiomqtt.ProtocolVersion.V5) as client:
                for number in itertools.count():
                    frames = await asyncio.to_thread(_scene, camera, number, int(seconds * fps))
                    for payload in frames:
                        if stop.is_set():
                            return sent
                        await client.publish(topic, payload, qos=0, properties=_stamp())
                        sent += 1
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 1 / fps)
        except aiomqtt.MqttError as exc:
            log.warning("tower camera %s: %s; reconnecting", camera.code, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
    return sent


def _scene(camera: TowerCamera, number: int, frames: int) -> list[bytes]:
    """The encoded frames of the camera's next scene in the playlist."""
    kind = PLAYLIST[number % len(PLAYLIST)]
    lat, lon = fire_point(camera.pose)
    if camera.kind == "thermal_camera":
        u, v = geometry.project(camera.pose, *THERMAL, lat, lon)
        sequence = thermal_sequence(number, frames, fire=kind == "fire", size=THERMAL, at=(int(u), int(v)))
        return [encode_thermal(k) for k, _ in sequence]
    width, height = VISIBLE
    u, v = geometry.project(camera.pose, width, height, lat, lon)
    distance = geometry.distance_m(camera.pose.lat, camera.pose.lon, lat, lon)
    spec = SceneSpec(kind, seed=number, frames=frames, width=width, height=height,
                     horizon=geometry.horizon_row(camera.pose, width, height), fire_at=(u, v),
                     fire_px_per_m=geometry.focal_px(camera.pose, width) / distance)
    return [cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for image, _ in render(spec)]


def _stamp() -> Properties:
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("captured_at", dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))]
    return properties


