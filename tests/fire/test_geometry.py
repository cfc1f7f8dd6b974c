"""Pixel ↔ ground on flat land, bearings, triangulation."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.fire import geometry as geo

POSE = geo.Pose(46.60, 126.90, 50.0, 30.0, -4.0, 55.0)


@pytest.mark.parametrize("target", [(46.62, 126.92), (46.63, 126.95), (46.615, 126.905)])
def test_a_projected_ground_point_is_found_again_from_its_pixel(target):
    u, v = geo.project(POSE, 1280, 720, *target)
    s = geo.sight(POSE, 1280, 720, (int(u) - 4, int(v) - 8, 8, 9))
    assert abs(geo.angle_diff(s.bearing_deg, geo.bearing_to(POSE.lat, POSE.lon, *target))) < 0.3
    miss = geo.distance_m(s.lat, s.lon, *target)
    assert miss <= s.accuracy_m, (miss, s.accuracy_m)


def test_the_horizon_row_is_where_the_ground_range_ends():
    row = geo.horizon_row(POSE, 1280, 720)
    assert geo.ground_range(POSE, 1280, 720, 640, row - 1) is None
    assert geo.ground_range(POSE, 1280, 720, 640, row + 3) > 10_000
    assert geo.ground_range(POSE, 1280, 720, 640, 700) < 1_000


def test_a_box_at_the_horizon_gives_a_bearing_but_no_ground_point():
    row = int(geo.horizon_row(POSE, 1280, 720))
    s = geo.sight(POSE, 1280, 720, (600, row - 10, 20, 10))
    assert s.lat is None and s.range_m is None
    assert 0 < s.halfwidth_deg < 2


def test_two_towers_triangulate_a_fire_within_their_angular_error():
    fire = (46.63, 126.95)
    a = geo.Pose(46.60, 126.90, 50, 45, -3, 55)
    b = geo.Pose(46.66, 126.92, 40, 150, -3, 55)
    rays = [(p.lat, p.lon, geo.bearing_to(p.lat, p.lon, *fire) + 0.2, 0.5) for p in (a, b)]
    fix = geo.triangulate(*rays)
    assert fix is not None
    assert geo.distance_m(fix.lat, fix.lon, *fire) < fix.accuracy_m < 300


def test_parallel_or_diverging_bearings_do_not_triangulate():
    assert geo.triangulate((46.6, 126.9, 90, 0.5), (46.61, 126.9, 92, 0.5)) is None  # nearly parallel
    assert geo.triangulate((46.6, 126.9, 0, 0.5), (46.6, 127.0, 180, 0.5)) is None  # behind one tower


def test_a_point_is_in_a_cone_only_in_range_and_direction():
    lat, lon = geo.destination(46.6, 126.9, 80, 3000)
    assert geo.within_cone(lat, lon, 46.6, 126.9, 81, 2)
    assert not geo.within_cone(lat, lon, 46.6, 126.9, 90, 2)
    far = geo.destination(46.6, 126.9, 80, 30_000)
    assert not geo.within_cone(*far, 46.6, 126.9, 80, 2)


def test_a_ptz_camera_is_located_with_the_pose_of_the_preset_it_is_at():
    from analytics.fire.store import Camera
    from registry.attributes import validate_attrs
    from registry.errors import Invalid

    attrs = validate_attrs("video_camera", {
        "mast_height_m": 40, "heading_deg": 10, "tilt_deg": -3, "hfov_deg": 55,
        "presets": [{"preset": 2, "heading_deg": 130, "tilt_deg": -5}, {"preset": 3, "heading_deg": 250,
                                                                          "tilt_deg": -4, "hfov_deg": 20}]})
    camera = Camera(1, "c", "video_camera", "active", 46.6, 126.9, "231202", None, attrs)
    assert camera.pose(None).heading_deg == 10 and camera.pose(7).heading_deg == 10
    assert (camera.pose(2).heading_deg, camera.pose(2).tilt_deg, camera.pose(2).hfov_deg) == (130, -5, 55)
    assert camera.pose(3).hfov_deg == 20
    with pytest.raises(Invalid, match="listed twice"):
        validate_attrs("video_camera", {**attrs, "presets": [{"preset": 1, "heading_deg": 1, "tilt_deg": 0}] * 2})


@pytest.mark.parametrize("range_m", [300.0, 1000.0, 3000.0])
def test_the_row_of_a_ground_range_is_where_that_range_is_seen(range_m):
    row = geo.range_row(POSE, 1280, 720, range_m)
    assert geo.ground_range(POSE, 1280, 720, 640, row) == pytest.approx(range_m, rel=1e-6)


def test_a_low_mast_reaches_far_fires_only_with_its_tilt_error_from_the_ledger(caplog):
    """Review: the far band's far end is mast / tan(tilt error): 2.3 km from a 20 m mast at the default 0.5°,
    short of the 2.5–4 km far fires, silently. The ledger's tilt_error_deg (camera or preset) is now read,
    and a model whose band falls short of 4 km says so."""
    from analytics.fire.store import Camera
    from analytics.fire.video import SceneModel, VideoDetector, VideoParams
    from registry.attributes import validate_attrs

    attrs = validate_attrs("video_camera", {
        "mast_height_m": 20, "heading_deg": 10, "tilt_deg": -2, "hfov_deg": 55, "tilt_error_deg": 0.2,
        "presets": [{"preset": 2, "heading_deg": 130, "tilt_deg": -2, "tilt_error_deg": 0.5}]})
    camera = Camera(1, "c", "video_camera", "active", 46.6, 126.9, "231202", None, attrs)
    pose = camera.pose(None)
    assert pose.tilt_error_deg == 0.2 and camera.pose(2).tilt_error_deg == 0.5
    top, bottom = geo.far_band(pose, 1280, 720, 3.0, 4.0)
    assert top <= geo.range_row(pose, 1280, 720, 3000.0) <= bottom
    far, near = SceneModel(1280, 720, None, VideoParams(), pose).far_range_m()
    assert far > 4000.0 and near < 1000.0
    with caplog.at_level("INFO", logger="analytics.fire.video"):
        VideoDetector().process("c", 2, np.zeros((720, 1280, 3), np.uint8), None, pose=camera.pose(2))
    assert "to only 2292 m" in caplog.text
