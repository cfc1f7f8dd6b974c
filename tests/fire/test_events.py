"""Detections into fire events and alerts, against the real store: triangulation across towers, camera +
satellite, separate fires, cameras without a pose, FIRMS imports, closing quiet events."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from alerts import fire as fire_alerts
from analytics.fire import geometry as geo
from analytics.fire import store
from analytics.fire.firms import FirmsError
from analytics.fire.frames import Frame
from analytics.fire.pipeline import FirePipeline
from analytics.fire.satellite import import_firms
from analytics.fire.video import VideoParams
from registry import heat_sources, service
from registry.changes import Actor
from registry.lookups import division_index
from simulators.hotspots import firms_csv, firms_row
from simulators.scenes import SceneSpec, render
from tests.factories import HARBIN, pole_in, terminal_in
from tests.fire.frames import ahead

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
FIRE = (46.70, 126.80)  # farmland in Beilin district


def _camera(conn, name: str, lat: float, lon: float, pose: bool = True) -> store.Camera:
    """A tower camera looking at FIRE."""
    heading = geo.bearing_to(lat, lon, *FIRE)
    attrs = {"mast_height_m": 40.0, "heading_deg": round(heading, 3), "tilt_deg": -2.0, "hfov_deg": 55.0}
    attrs = attrs if pose else {}
    pole = service.create_pole(conn, pole_in(f"{name}塔", at=(lon, lat), department="sthjj"), Actor("test"))
    code = service.create_terminal(conn, terminal_in(f"{name}可见光", "video_camera", at=None, pole=pole,
                                                     department="sthjj", attrs=attrs), Actor("test"))
    conn.commit()
    return store.cameras(conn)[code]


def _burn(conn, pipeline: FirePipeline, camera: store.Camera, seed: int = 21) -> list[int]:
    """Play a fire scene at FIRE through the pipeline as the camera; returns the events touched."""
    pose = camera.pose()
    events = []
    if pose:
        u, v = geo.project(pose, 1280, 720, *FIRE)
        distance = geo.distance_m(pose.lat, pose.lon, *FIRE)
        spec = SceneSpec("fire", seed, frames=24, horizon=geo.horizon_row(pose, 1280, 720), fire_at=(u, v),
                         fire_px_per_m=geo.focal_px(pose, 1280) / distance)
    else:
        spec = SceneSpec("fire", seed, frames=24)
    for i, (image, _) in enumerate(ahead(render(spec))):
        events += pipeline.handle(conn, camera, Frame("visible", image), None, NOW + dt.timedelta(seconds=i / 2))
        conn.commit()
    return events


def _pipeline(conn) -> FirePipeline:
    return FirePipeline(fire_alerts, division_index(conn).locate)


def test_two_towers_seeing_one_fire_make_one_triangulated_event_and_one_alert(conn):
    east = geo.destination(*FIRE, 100, 3000)
    south = geo.destination(*FIRE, 200, 2800)
    a, b = _camera(conn, "甲", *east), _camera(conn, "乙", *south)
    pipeline = _pipeline(conn)
    events = set(_burn(conn, pipeline, a)) | set(_burn(conn, pipeline, b, seed=22))
    (alerted,) = conn.execute("select fire_event_id from alert").fetchone()
    assert alerted in events
    event = store.event(conn, alerted)
    seen_by = conn.execute("select count(distinct terminal_id) from fire_detection where event_id = %s",
                           (alerted,)).fetchone()[0]
    assert seen_by == 2
    assert event["position_method"] == "triangulated"
    assert geo.distance_m(event["lat"], event["lon"], *FIRE) < max(150.0, event["accuracy_m"])
    assert event["division_code"].startswith("231202")
    (alert,) = conn.execute("select bureau, division_code, family, status, detail from alert").fetchall()
    assert alert[:4] == ("environment", event["division_code"], "fire", "open")
    assert "triangulated" in alert[4]
    evidence = conn.execute("select count(*), min(length(jpeg)) from fire_evidence").fetchone()
    assert evidence[0] >= 2 and evidence[1] > 10_000


def test_a_camera_and_a_satellite_pixel_are_one_event_and_a_far_pixel_another(conn):
    camera = _camera(conn, "丙", *geo.destination(*FIRE, 90, 1200))  # near enough to see flames, not only smoke
    pipeline = _pipeline(conn)
    (event_id,) = set(_burn(conn, pipeline, camera))
    near = geo.destination(*FIRE, 30, 150)
    far = geo.destination(*FIRE, 0, 20_000)
    text = firms_csv([firms_row(*near, NOW), firms_row(*far, NOW, confidence="h")])
    report = import_firms(conn, text, "viirs.csv", fire_alerts, division_index(conn).locate)
    conn.commit()
    assert report.stored == 2 and len(report.events) == 2 and event_id in report.events
    event = store.event(conn, event_id)
    assert event["sources"] == ["camera", "satellite"] and event["confidence"] >= 0.9
    severity = conn.execute("select severity from alert where fire_event_id = %s", (event_id,)).fetchone()[0]
    assert severity == "critical"


def test_a_camera_without_a_pose_keeps_its_detection_with_position_unknown(conn):
    camera = _camera(conn, "丁", 46.72, 126.83, pose=False)
    events = set(_burn(conn, _pipeline(conn), camera))
    assert len(events) == 1
    detection = conn.execute("select position, lat, bearing_deg, division_code from fire_detection").fetchone()
    assert detection[:3] == ("unknown", None, None) and detection[3] == camera.division
    event = store.event(conn, events.pop())
    assert event["position_method"] == "unknown" and event["division_code"] == camera.division
    assert "position unknown" in conn.execute("select detail from alert").fetchone()[0]


def test_firms_import_keeps_suihua_drops_heat_sources_static_types_and_repeats(conn):
    heat_sources.add(conn, heat_sources.HeatSourceIn(name="绥化热电厂", kind="power_plant", lat=46.60, lon=127.00,
                                                     radius_m=1500))
    rows = [firms_row(46.70, 126.80, NOW), firms_row(HARBIN[1], HARBIN[0], NOW, "outside"),
            firms_row(46.605, 127.005, NOW, "heat_source"), firms_row(46.9, 126.5, NOW, "not_vegetation",
                                                                      fire_type="2")]
    locate = division_index(conn).locate
    report = import_firms(conn, firms_csv(rows, with_type=True), "a.csv", fire_alerts, locate)
    assert (report.stored, report.outside, report.heat_source, report.not_vegetation) == (1, 1, 1, 1)
    again = import_firms(conn, firms_csv(rows[:1], instrument="VIIRS"), "b.csv", fire_alerts, locate)
    assert (again.stored, again.repeated) == (0, 1)
    modis = import_firms(conn, firms_csv([firms_row(46.75, 126.70, NOW, instrument="MODIS", confidence="25")],
                                         instrument="MODIS"), "m.csv", fire_alerts, locate)
    conn.commit()
    assert modis.stored == 1
    low = store.event(conn, min(modis.events))
    assert low["confidence"] == 0.25
    assert conn.execute("select count(*) from alert where fire_event_id = %s", (low["id"],)).fetchone()[0] == 0


def test_a_file_without_firms_columns_is_refused_and_dead_lettered(conn):
    with pytest.raises(FirmsError, match="missing column"):
        import_firms(conn, "lat,lon\n1,2\n", "bad.csv", fire_alerts, division_index(conn).locate)
    conn.commit()
    topic, reason = conn.execute("select topic, reason from dead_letter").fetchone()
    assert topic == "firms:bad.csv" and "missing column" in reason


def test_quiet_events_close_and_their_alerts_resolve(conn, db_url):
    report = import_firms(conn, firms_csv([firms_row(46.70, 126.80, NOW, confidence="h")]), "c.csv", fire_alerts,
                          division_index(conn).locate)
    (event_id,) = report.events
    conn.execute("update fire_event set touched_at = now() - interval '3 hours' where id = %s", (event_id,))
    assert store.stale_events(conn, dt.timedelta(hours=2)) == [event_id]
    fire_alerts.fire_closed(conn, event_id)
    conn.commit()
    with psycopg.connect(db_url) as other:
        status, actions = other.execute(
            "select a.status, array_agg(e.action order by e.id) from alert a join alert_event e on e.alert_id = a.id "
            "group by a.status").fetchone()
    assert status == "resolved" and actions == ["open", "resolve"]


def _smoke_sighting(conn, camera: store.Camera, track: str, cue: str = "smoke", confidence: float = 0.45) -> int:
    """A bearing-only detection (smoke, or a far point of light) from ``camera`` towards FIRE, attached to its
    event; returns the event."""
    from analytics.fire import fusion

    bearing = geo.bearing_to(camera.lat, camera.lon, *FIRE)
    detection = store.Detection(source="camera", cue=cue, track=track, first_seen=NOW, last_seen=NOW,
                                confidence=confidence, position="bearing", terminal_id=camera.id,
                                box=(600, 200, 40, 60), frame_size=(1280, 720), camera_lat=camera.lat,
                                camera_lon=camera.lon,
                                bearing_deg=round(bearing, 3), halfwidth_deg=0.8, division_code=camera.division)
    with conn.transaction():
        event_id = fusion.attach(conn, store.insert_detection(conn, detection), division_index(conn).locate)
        fire_alerts.fire_event(conn, event_id)
    return event_id


def test_two_towers_seeing_smoke_in_crossing_directions_confirm_each_other_and_page(conn):
    a = _camera(conn, "戊", *geo.destination(*FIRE, 80, 6000))
    b = _camera(conn, "己", *geo.destination(*FIRE, 170, 5000))
    first = _smoke_sighting(conn, a, "戊:1")
    assert store.event(conn, first)["confidence"] < fire_alerts.ALERT_CONFIDENCE  # one tower's smoke pages nobody
    assert conn.execute("select count(*) from alert").fetchone()[0] == 0
    assert _smoke_sighting(conn, b, "己:1") == first
    event = store.event(conn, first)
    assert event["position_method"] == "triangulated"
    assert event["confidence"] >= fire_alerts.ALERT_CONFIDENCE  # two independent towers: 1 − 0.55² ≈ 0.70
    assert conn.execute("select count(*) from alert where fire_event_id = %s", (first,)).fetchone()[0] == 1


_LONE_POINT = VideoParams().spot_confidence + VideoParams().spot_growth  # the most a lone far point gets


def test_a_lone_far_point_is_a_listed_fire_event_that_pages_nobody(conn):
    camera = _camera(conn, "辛", *geo.destination(*FIRE, 80, 3500))
    event_id = _smoke_sighting(conn, camera, "辛:1", "flame", _LONE_POINT)
    event = store.event(conn, event_id)
    assert event["status"] == "open" and event["confidence"] < fire_alerts.ALERT_CONFIDENCE
    assert conn.execute("select count(*) from alert").fetchone()[0] == 0


def test_two_towers_far_points_whose_bearings_cross_page(conn):
    a = _camera(conn, "壬", *geo.destination(*FIRE, 80, 3500))
    b = _camera(conn, "癸", *geo.destination(*FIRE, 170, 3000))
    first = _smoke_sighting(conn, a, "壬:1", "flame", VideoParams().spot_confidence)
    assert _smoke_sighting(conn, b, "癸:1", "flame", VideoParams().spot_confidence) == first
    event = store.event(conn, first)
    assert event["position_method"] == "triangulated"
    assert event["confidence"] >= fire_alerts.ALERT_CONFIDENCE  # two towers: 1 − 0.6² = 0.64
    assert conn.execute("select count(*) from alert where fire_event_id = %s", (first,)).fetchone()[0] == 1


def test_two_smoke_tracks_of_one_tower_stay_one_source(conn):
    camera = _camera(conn, "庚", *geo.destination(*FIRE, 80, 6000))
    event_id = _smoke_sighting(conn, camera, "庚:1")
    assert _smoke_sighting(conn, camera, "庚:2") == event_id
    assert store.event(conn, event_id)["confidence"] < fire_alerts.ALERT_CONFIDENCE


def _sighting_at(conn, camera: store.Camera, track: str, cue: str, confidence: float, towards: tuple[float, float],
                 ground: float | None = None) -> int:
    """A detection from ``camera`` looking at ``towards``: with ``ground`` (its accuracy, m), a ground estimate
    there; else bearing-only. Attached to its event; returns the event."""
    from analytics.fire import fusion

    bearing = geo.bearing_to(camera.lat, camera.lon, *towards)
    detection = store.Detection(source="camera", cue=cue, track=track, first_seen=NOW, last_seen=NOW,
                                confidence=confidence, position="bearing", terminal_id=camera.id,
                                box=(600, 300, 24, 24), frame_size=(1280, 720), camera_lat=camera.lat,
                                camera_lon=camera.lon, bearing_deg=round(bearing, 3), halfwidth_deg=0.8,
                                division_code=camera.division)
    if ground is not None:
        detection.lat, detection.lon, detection.accuracy_m, detection.position = *towards, ground, "ground"
    with conn.transaction():
        event_id = fusion.attach(conn, store.insert_detection(conn, detection), division_index(conn).locate)
        fire_alerts.fire_event(conn, event_id)
    return event_id


def test_a_listed_smoke_ray_crossing_a_fires_bearing_elsewhere_does_not_move_its_event(conn):
    """test_events' two-tower fire, session 11: a spurious horizon smoke ray of the second tower crossed the
    first tower's plume 1.25 km from the fire, and the event (and its alert) went to that crossing."""
    a = _camera(conn, "子", *geo.destination(*FIRE, 80, 3000))
    b = _camera(conn, "丑", *geo.destination(*FIRE, 170, 2800))
    event_id = _sighting_at(conn, a, "子:1", "smoke", 0.6, FIRE)  # the plume: a bearing
    assert _sighting_at(conn, a, "子:2", "flame", 0.7, FIRE, ground=450.0) == event_id  # its fire, ranged
    elsewhere = geo.destination(*FIRE, 80, 1250)  # on the first tower's bearing, 1.25 km short of the fire
    _sighting_at(conn, b, "丑:1", "smoke", 0.4, elsewhere)  # horizon texture listed as smoke
    event = store.event(conn, event_id)
    assert geo.distance_m(event["lat"], event["lon"], *FIRE) < 100
    assert event["position_method"] == "camera"
