"""The fire worker over a real mosquitto, and the fire API over real HTTP: frames published as a camera
become an event, an alert and an evidence picture; bad frames are dead-lettered and the worker goes on."""

from __future__ import annotations

import datetime as dt
import threading
import time

import cv2
import numpy as np
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts import fire as fire_alerts
from analytics.fire import geometry as geo
from analytics.fire import sun
from analytics.fire.worker import FireConfig, FireWorker
from core.runtime import Service
from registry import service
from registry.changes import Actor
from simulators.hotspots import firms_csv, firms_row
from simulators.scenes import SceneSpec, render
from tests.factories import pole_in, terminal_in
from tests.fire.frames import ahead

FIRE = (46.70, 126.80)


def _tower(conn) -> tuple[str, str, geo.Pose]:
    """A tower due north of FIRE, looking south: at 46.7° N a sun low enough to dazzle (below 12°) never
    stands there, so these tests, whose frames are stamped with the wall clock (events older than two
    hours are closed), do not depend on the time of day."""
    lat, lon = geo.destination(*FIRE, 0, 1200)
    heading = round(geo.bearing_to(lat, lon, *FIRE), 3)
    attrs = {"mast_height_m": 40.0, "heading_deg": heading, "tilt_deg": -2.0, "hfov_deg": 55.0}
    pole = service.create_pole(conn, pole_in("测试塔", at=(lon, lat), department="sthjj"), Actor("test"))
    code = service.create_terminal(conn, terminal_in("测试塔可见光", "video_camera", at=None, pole=pole,
                                                     department="sthjj", attrs=attrs), Actor("test"))
    air = service.create_terminal(conn, terminal_in("空气站"), Actor("test"))
    conn.commit()
    return code, air, geo.Pose(lat, lon, 40.0, heading, -2.0, 55.0)


def test_the_test_tower_never_has_a_low_sun_in_view():
    lat, lon = geo.destination(*FIRE, 0, 1200)
    pose = geo.Pose(lat, lon, 40.0, geo.bearing_to(lat, lon, *FIRE), -2.0, 55.0)
    first = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for hours in range(0, 365 * 24, 1):
        assert sun.glint_columns(pose, 1280, first + dt.timedelta(hours=hours, minutes=hours % 60)) is None


def _wait(conn, sql: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(sql).fetchone()
        conn.commit()
        if row and row[0]:
            return row
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {sql}")


def test_frames_over_mqtt_become_an_alert_with_evidence_and_bad_frames_dead_letters(conn, db_url, broker, http):
    code, air, pose = _tower(conn)
    worker = FireWorker(FireConfig(db_url, *broker, client_id="fire-test"), fire_alerts)
    service = Service("fire", "fire-test", db_url)
    thread = threading.Thread(target=worker.run, args=(service,), daemon=True)
    thread.start()
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect(*broker)
    publisher.loop_start()
    try:
        time.sleep(1.0)  # the worker subscribes
        publisher.publish(f"ganzhi/v1/{code}/frame", b"\xff\xd8\xff\xe0broken", qos=1).wait_for_publish()
        publisher.publish("ganzhi/v1/231202000000000/frame", b"\xff\xd8\xff", qos=1).wait_for_publish()
        publisher.publish(f"ganzhi/v1/{air}/frame", b"\xff\xd8\xff", qos=1).wait_for_publish()
        u, v = geo.project(pose, 1280, 720, *FIRE)
        spec = SceneSpec("fire", 31, frames=30, horizon=geo.horizon_row(pose, 1280, 720), fire_at=(u, v),
                         fire_px_per_m=geo.focal_px(pose, 1280) / 1200)
        start = dt.datetime.now(dt.UTC)
        for i, (image, _) in enumerate(ahead(render(spec))):
            jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            stamp = Properties(PacketTypes.PUBLISH)  # the scene's 2 fps, sent faster than real time
            stamp.UserProperty = [("captured_at", (start + dt.timedelta(seconds=i / 2)).isoformat())]
            publisher.publish(f"ganzhi/v1/{code}/frame", jpeg, qos=1, properties=stamp).wait_for_publish()
            time.sleep(0.05)
        with psycopg.connect(db_url) as watch:
            _wait(watch, "select count(*) from alert where family = 'fire'")
            reasons = [r[0] for r in watch.execute("select reason from dead_letter order by id").fetchall()]
    finally:
        service.request_stop()
        thread.join(10)
        publisher.loop_stop()
    assert any("corrupt JPEG" in r for r in reasons)
    assert any("unknown camera 231202000000000" in r for r in reasons)
    assert any("air_sensor, not a camera" in r for r in reasons)
    assert worker.counters["frames"] >= 25

    alerts = http.get("/api/v1/alerts", params={"family": "fire"}).json()["data"]
    assert len(alerts) == 1 and alerts[0]["bureau"] == "environment" and alerts[0]["terminal"] is None
    detail = http.get(f"/api/v1/alerts/{alerts[0]['id']}").json()
    event = http.get(detail["fire_event"]).json()
    assert event["alert"]["id"] == alerts[0]["id"]
    assert geo.distance_m(event["lat"], event["lon"], *FIRE) <= event["accuracy_m"] + 50
    picture = http.get(event["detections"][0]["evidence_url"])
    assert picture.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR).shape[1] == 1280
    listed = http.get("/api/v1/fire-events", params={"division": event["division_code"][:6]}).json()["data"]
    assert event["id"] in [e["id"] for e in listed]
    # (anything else listed is a lone far point of light: listed for an operator, paging nobody)
    assert all(e["alert_id"] is None and e["confidence"] < fire_alerts.ALERT_CONFIDENCE
               for e in listed if e["id"] != event["id"])


def test_firms_upload_and_heat_sources_over_http(http):
    made = http.post("/api/v1/heat-sources", json={"name": "热电厂", "kind": "power_plant", "lat": 46.60,
                                                    "lon": 127.00, "radius_m": 1500})
    assert made.status_code == 201
    assert http.post("/api/v1/heat-sources", json={"name": "热电厂", "kind": "power_plant", "lat": 46.60,
                                                    "lon": 127.00}).status_code == 409
    outside = http.post("/api/v1/heat-sources", json={"name": "哈尔滨", "kind": "factory", "lat": 45.75, "lon": 126.63})
    assert outside.status_code == 422 and "outside Suihua" in outside.text
    now = dt.datetime.now(dt.UTC)
    csv_text = firms_csv([firms_row(46.70, 126.80, now, confidence="h"), firms_row(46.601, 127.001, now)])
    report = http.post("/api/v1/firms", files={"file": ("viirs.csv", csv_text, "text/csv")}).json()
    assert (report["stored"], report["near_heat_source"]) == (1, 1)
    bad = http.post("/api/v1/firms", files={"file": ("x.csv", "a,b\n1,2\n", "text/csv")})
    assert bad.status_code == 422 and "missing column" in bad.text
    assert http.get("/api/v1/fire-events").json()["data"][0]["sources"] == ["satellite"]
    assert http.delete(f"/api/v1/heat-sources/{made.json()['id']}").status_code == 204
    assert http.delete(f"/api/v1/heat-sources/{made.json()['id']}").status_code == 404


def test_a_video_file_source_is_read_through_opencv_into_an_alert(conn, db_url, broker, tmp_path):
    code, _, pose = _tower(conn)
    u, v = geo.project(pose, 1280, 720, *FIRE)
    spec = SceneSpec("fire", 32, frames=30, horizon=geo.horizon_row(pose, 1280, 720), fire_at=(u, v),
                     fire_px_per_m=geo.focal_px(pose, 1280) / 1200)
    path = tmp_path / "tower.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (1280, 720))
    for image, _ in ahead(render(spec)):
        writer.write(image)
    writer.release()
    worker = FireWorker(FireConfig(db_url, *broker, client_id="fire-file", sources=((code, str(path)),),
                                   source_fps=2.0), fire_alerts)
    service = Service("fire", "fire-test", db_url)
    thread = threading.Thread(target=worker.run, args=(service,), daemon=True)
    thread.start()
    try:
        with psycopg.connect(db_url) as watch:
            _wait(watch, "select count(*) from alert where family = 'fire'")
    finally:
        service.request_stop()
        thread.join(10)
    assert worker.counters["dead letters"] == 0


def test_the_on_the_spot_verdict_acknowledges_or_closes_the_fire_alert(http):
    now = dt.datetime.now(dt.UTC)
    rows = [firms_row(46.70, 126.80, now, confidence="h"), firms_row(47.20, 126.60, now, confidence="h")]
    straw, other = http.post("/api/v1/firms", files={"file": ("v.csv", firms_csv(rows), "text/csv")}).json()["events"]
    actor = {"X-Actor": "%E5%BC%A0%E4%B8%89"}  # 张三: a header anyone can set, ignored
    found = http.post(f"/api/v1/fire-events/{straw}/verdict", json={"verdict": "straw", "note": "玉米秸秆"},
                      headers=actor).json()
    assert (found["verdict"], found["verified_by"], found["alert"]["status"]) == ("straw", "test-admin", "acknowledged")
    closed = http.post(f"/api/v1/fire-events/{other}/verdict", json={"verdict": "other_heat"}, headers=actor).json()
    assert closed["alert"]["status"] == "closed"
    again = http.post(f"/api/v1/fire-events/{straw}/verdict", json={"verdict": "false"})
    assert again.status_code == 409 and "already found to be straw" in again.text
    assert http.post("/api/v1/fire-events/999999/verdict", json={"verdict": "false"}).status_code == 404
    assert http.post(f"/api/v1/fire-events/{straw}/verdict", json={"verdict": "maybe"}).status_code == 422
    unverified = http.get("/api/v1/fire-events", params={"verdict": "none"}).json()["data"]
    assert straw not in [e["id"] for e in unverified]
    history = http.get(f"/api/v1/alerts/{found['alert']['id']}").json()["events"]
    assert history[-1]["actor"] == "test-admin" and "玉米秸秆" in history[-1]["comment"]
