"""Far fires: at 3 km a straw fire is a point of light of 1–3 px whose colour the camera has lost. It must
be found, and listed; it pages only when corroborated (another tower, smoke over it, a resolved flame), as a
lamp switched on outside the night map passes every test a lone point can have. A lamp that was always
there, a lamp the night map knows and a vehicle's headlight crossing the far field are not found at all."""

from __future__ import annotations

import datetime as dt

import cv2
import numpy as np

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.nightmap import NightMap
from analytics.fire.video import WORK_WIDTH, Candidate, SceneModel, Track, VideoDetector, VideoParams, _corroborated
from simulators.tower_scenes import POSE, TowerSpec, render
from tests.fire.frames import ahead, from_a_mast, prefix

W, H = 1280, 720
HORIZON = TowerSpec("fire", 0).horizon
DAY = dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC)  # 11:00 in Suihua
NIGHT = dt.datetime(2026, 10, 15, 14, 0, tzinfo=dt.UTC)  # 22:00
ROW = int(HORIZON) + 16  # ground about 3 km out from a 40 m mast


def _field(seed: int, night: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.float32)
    hz = int(HORIZON)
    img[:hz] = (215, 180, 150)
    img[hz:] = (70, 120, 95)  # a green field, a ploughed one beside it
    img[hz:, 900:] = (60, 95, 130)
    img[hz:] += cv2.GaussianBlur(rng.normal(0, 12, (H - hz, W)), (0, 0), 1.2)[..., None]
    for x in range(0, W, 7):  # a shelterbelt on the horizon
        cv2.ellipse(img, (x, hz), (int(rng.integers(4, 9)), int(rng.integers(5, 14))), 0, 180, 360, (30, 75, 45), -1)
    return img * np.float32([0.16, 0.12, 0.1]) if night else img


def _point(img: np.ndarray, x: float, y: float, colour: tuple, alpha: float) -> None:
    """A sub-resolved source: drawn at 4× and shrunk, so it covers a pixel or two, partly."""
    s = 4
    x0, y0 = int(x) - 4, int(y) - 4
    patch = np.zeros((9 * s, 9 * s), np.float32)
    cv2.ellipse(patch, (int((x - x0) * s), int((y - y0) * s)), (s, int(1.5 * s)), 0, 0, 360, alpha, -1)
    a = cv2.resize(patch, (9, 9), interpolation=cv2.INTER_AREA)[..., None]
    roi = img[y0:y0 + 9, x0:x0 + 9]
    roi[:] = roi * (1 - a) + np.float32(colour) * a


def _frames(draw, start: dt.datetime, seconds: float = 20.0, fps: float = 2.0, seed: int = 0):
    """The frames of ``seconds``; frame i depends on i alone, so a shorter sequence is a longer one's start
    (rendered once per module, ahead of the detector: tests/fire/frames.py)."""
    return prefix(("far", draw, start, fps, seed), int(seconds * fps),
                  lambda count: _make(draw, start, count, fps, seed))


def _make(draw, start: dt.datetime, count: int, fps: float, seed: int):
    return from_a_mast(_field(seed, night=start.hour >= 10), draw, start, count, fps, seed)


def _found(frames, detector: VideoDetector | None = None) -> list[tuple[float, tuple, float]]:
    """(seconds into the scene, box, confidence) of every candidate."""
    detector = detector or VideoDetector()
    out = []
    for image, at in frames:
        for c in detector.process("cam", None, image, HORIZON, at=at, pose=POSE):
            out.append(((at - DAY).total_seconds() % 3600, c.box, c.confidence))
    return out


def _far_fire(img: np.ndarray, t: float, rng) -> None:
    if t >= 4.0:  # a flickering point that slowly lengthens as the line spreads
        for dx in range(int(1 + (t - 4.0) / 4)):
            _point(img, 700 + 1.5 * dx, ROW, (150, 235, 255), float(rng.uniform(0.5, 0.95)))


def test_a_far_fire_of_a_pixel_or_two_is_found_within_ten_seconds_and_does_not_page_alone():
    found = _found(_frames(_far_fire, DAY))
    assert found, "the far fire was not found"
    assert found[0][0] - 4.0 <= 10.0
    assert all(abs(x - 700) <= 12 and abs(y - ROW) <= 8 for _, (x, y, _, _), _ in found)
    assert all(c < ALERT_CONFIDENCE for *_, c in found)  # a lone point: listed, not paged


def test_a_far_fire_at_night_is_found():
    found = _found(_frames(_far_fire, NIGHT))
    assert found and all(abs(x - 700) <= 12 for _, (x, _, _, _), _ in found)


def _lamp(img: np.ndarray, t: float, rng) -> None:
    _point(img, 500, ROW, (90, 200, 255), 0.95)


def test_a_far_lamp_that_was_always_there_is_not_found():
    assert _found(_frames(_lamp, NIGHT)) == []


def _lamp_switched_on(img: np.ndarray, t: float, rng) -> None:
    if t >= 4.0:
        _lamp(img, t, rng)


def test_a_far_lamp_switched_on_where_the_night_map_knows_a_light_is_not_found():
    detector = VideoDetector()
    k = round(W / WORK_WIDTH)
    nights = detector.nights[("cam", None)] = NightMap((H // k, W // k), POSE.lon)
    lit = np.zeros(nights.grid[::-1], bool)
    lit[ROW // k // 16, 500 // k // 16] = True
    nights.history.extend([lit, lit, lit])  # lit on the last three nights
    assert _found(_frames(_lamp_switched_on, NIGHT), detector) == []


def test_a_far_lamp_switched_on_outside_the_night_map_is_listed_but_does_not_page():
    found = _found(_frames(_lamp_switched_on, NIGHT))  # unknown to a fresh map: a new light, like a far fire
    assert found and all(c < ALERT_CONFIDENCE for *_, c in found)


def _headlight(img: np.ndarray, t: float, rng) -> None:
    if t >= 4.0:  # a car on a far road, 15 m/s at 3 km: about 6 px a second
        _point(img, 300 + 6.0 * (t - 4.0), ROW + 2, (200, 235, 255), 0.95)


def test_a_headlight_driving_along_a_far_road_is_not_found():
    assert _found(_frames(_headlight, NIGHT)) == []


def test_a_far_fire_in_a_tower_sequence_is_found_within_ten_seconds():
    spec = TowerSpec("fire_far", 2, fps=2.0)  # (a tuning seed) 2.9 km out
    detector = VideoDetector()
    first = None
    for image, label in ahead(render(spec)):
        found = detector.process("tower", None, image, spec.horizon, at=spec.at(label.t), pose=POSE)
        if found and first is None:
            assert label.fire
            first = label.t
    assert first is not None and first - spec.ignite_s <= 10.0


def test_no_point_is_taken_where_a_flame_track_is_even_a_rejected_one(monkeypatch):
    # a lamp whose flame track was rejected (common mode, no flicker) must not come back as a far point
    scene = SceneModel(W, H, HORIZON, VideoParams(), POSE)
    lamp = Track(1, "flame", 0.0, rejected=True)
    lamp.hits.append((0.0, (498, ROW - 2, 5, 5), 12))
    scene.tracks.append(lamp)
    monkeypatch.setattr(scene.spots, "find", lambda frame, shift, dt_s: [((499, ROW - 1, 2, 2), 3),
                                                                         ((900, ROW, 2, 2), 3)])
    assert scene._far_points(np.zeros((H, W, 3), np.uint8), 0.5) == [((900, ROW, 2, 2), 3)]


def test_a_far_point_under_a_plume_of_the_same_camera_pages_and_a_point_beside_one_does_not():
    point = Candidate(7, "flame", (700, ROW, 2, 2), VideoParams().spot_confidence)
    beside = Candidate(8, "flame", (1100, ROW, 2, 2), VideoParams().spot_confidence)
    plume = Candidate(9, "smoke", (680, ROW - 90, 40, 86), 0.45)
    found = {c.track: c.confidence for c in _corroborated([point, beside, plume], {7, 8})}
    assert found[7] >= ALERT_CONFIDENCE > found[8]
    assert found[9] == 0.45  # (the plume keeps its own)
    assert _corroborated([point, beside], {7, 8}) == [point, beside]  # no smoke: a lone point stays listed
