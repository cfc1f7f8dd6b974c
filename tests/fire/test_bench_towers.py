"""The tower bench's fire events: both towers' candidates go through the fire worker's own fusion, so a lone
far point is listed and pages only when a second tower's crossing bearing corroborates it."""

from __future__ import annotations

import functools

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire import geometry as geo
from analytics.fire.video import Candidate, VideoParams
from ganzhi.bench_fire_towers import EventOutcome, _Events, tower_camera
from simulators.tower_scenes import TowerSpec

SPEC = TowerSpec("fire_far", 4, fps=2)
POINT = VideoParams().spot_confidence


@functools.cache  # (both tests play SPEC: its 48 frames are drawn once)
def _box_on_fire(spec: TowerSpec) -> tuple[int, int, int, int]:
    """A 3×3 px far point at the fire's base, from the scene's own label."""
    from simulators.tower_scenes import render

    label = [label for _, label in render(spec) if label.fire][-1]
    x, y, w, h = label.box
    return x + w // 2 - 1, y + h - 3, 3, 3


def _play(towers: int) -> EventOutcome:
    specs = [SPEC, TowerSpec("fire_far", 4, fps=2, tower=1)][:towers]
    boxes = [_box_on_fire(s) for s in specs]
    events, out = _Events(), EventOutcome("fire_far")
    for t in (12.0, 12.5, 13.0):
        for n, (spec, box) in enumerate(zip(specs, boxes, strict=True)):
            events.add(tower_camera(spec, n + 1), spec, t, Candidate(7, "flame", box, POINT), True)
        events.judge(t, out, SPEC)
    events.finish(out)
    return out


def test_a_lone_far_point_on_one_tower_is_listed_and_pages_nobody():
    out = _play(1)
    assert out.listed and not out.paged and not out.false_pages


def test_two_towers_far_points_on_crossing_bearings_page_as_one_event():
    out = _play(2)
    assert out.paged and out.crossing and out.delay_s == 4.0 and not out.false_pages


def test_the_bench_towers_bearings_to_the_fire_cross():
    a, b = (tower_camera(s, n) for n, s in enumerate([SPEC, TowerSpec("fire_far", 4, tower=1)], 1))
    assert geo.distance_m(a.lat, a.lon, b.lat, b.lon) > 1000
    assert ALERT_CONFIDENCE > POINT


def test_a_false_flame_near_the_fire_does_not_make_its_page_the_fires():
    """Review t5: the fire's far point (0.4, listed) on tower 1 and a false flame (0.6) 25 px beside the fire on
    tower 2 fall into one event that pages; the fire's own detections never reached the threshold, so that
    page is a false one, not the fire's."""
    spec, other = TowerSpec("fire_far", 600), TowerSpec("fire_far", 600, tower=1)
    one, two = tower_camera(spec, 1), tower_camera(other, 2)
    point = (600, 340, 3, 3)
    seen = geo.sight(spec.pose, spec.width, spec.height, point)
    u, v = geo.project(other.pose, other.width, other.height, seen.lat, seen.lon)
    events, out = _Events(), EventOutcome("fire_far")
    events.add(one, spec, 10.0, Candidate(1, "flame", point, POINT), on_fire=True)
    events.add(two, other, 10.0, Candidate(7, "flame", (int(u) + 25, int(v), 8, 6), 0.6), on_fire=False)
    events.judge(10.0, out, spec)
    events.finish(out)
    assert len(events.events) == 1
    assert not out.paged and out.listed
    assert out.false_pages == ["flame"]
