"""The learned verifier inside ``FirePipeline.detect``: a confidence term on flame candidates. A look-alike
the verifier can judge loses confidence, a flame keeps it, a box too small to judge and smoke are left
alone, and the simulator's tower fires still reach alert level through the whole pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alerts import fire as fire_alerts
from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.colour import flame_mask, land_means
from analytics.fire.frames import Frame
from analytics.fire.pipeline import VERIFY_FLOOR, VERIFY_FROM_PX, VERIFY_FULL_PX, FirePipeline, weigh
from analytics.fire.store import Camera
from analytics.fire.verifier import Verifier
from analytics.fire.video import Candidate
from simulators.tower_scenes import POSE, TowerSpec, render
from tests.fire.frames import ahead

SEED = 4
"""A tuning seed of the tower sequences that the verifier was not trained on (``verifier_crops.SIM_SEEDS``)."""
NEAR_SEED = 8
"""Another, whose fire is near enough to fill more than VERIFY_FULL_PX and which the model accepts (it does
not accept every large simulated fire: docs/fire-verifier.md, weak points)."""


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier.load()


def _frame_at(spec: TowerSpec, t: float):
    return next((image, label) for image, label in render(spec) if abs(label.t - t) < 1e-9)


def _touch(a: tuple, b: tuple) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _car(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """A flat orange van: one colour, straight edges, no core, no gradation. (A flat deep-red one scores up
    to 0.86 on some parts of this field: the model is not sure of every look-alike; see the doc.)"""
    out = image.copy()
    cv2.rectangle(out, (x, y), (x + w, y + h), (30, 120, 240), -1)
    cv2.rectangle(out, (x + w // 5, y + 4), (x + w // 2, y + h // 2), (60, 50, 40), -1)
    return out


def test_a_look_alike_loses_confidence_and_a_flame_keeps_it(verifier):
    spec = TowerSpec("fire", NEAR_SEED, fps=1)
    image, label = _frame_at(spec, 16.0)
    x, y, w, h = label.box  # flames and their smoke
    ys, xs = np.nonzero(flame_mask(image[y:y + h, x:x + w], land_means(image[int(spec.horizon):])))
    box = (x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    assert max(box[2:]) >= VERIFY_FULL_PX  # a near fire: the verifier has its full say
    (flame,) = weigh(verifier, image, [Candidate(1, "flame", box, 0.8)])
    assert flame.confidence == 0.8

    quiet, _ = _frame_at(spec, 2.0)  # the same field before ignition
    van = (700, 500, 90, 40)
    looks = _car(quiet, *van)
    (car,) = weigh(verifier, looks, [Candidate(2, "flame", van, 0.8)])
    assert car.confidence < ALERT_CONFIDENCE <= 0.8
    assert car.confidence >= round(0.8 * VERIFY_FLOOR, 3)  # lowered, never dropped


def test_a_box_too_small_to_judge_and_smoke_are_left_alone(verifier):
    quiet, _ = _frame_at(TowerSpec("fire", SEED, fps=1), 2.0)
    side = VERIFY_FROM_PX - 4
    small = (600, 500, side, side // 2)
    looks = _car(quiet, *small)
    big = (300, 450, 90, 40)
    looks = _car(looks, *big)
    found = [Candidate(1, "flame", small, 0.7), Candidate(2, "smoke", big, 0.6), Candidate(3, "flame", big, 0.9)]
    out = weigh(verifier, looks, found)
    assert [c.track for c in out] == [1, 2, 3]
    assert out[0] == found[0] and out[1] == found[1]
    assert out[2].confidence < 0.9
    assert weigh(verifier, looks, []) == []


@pytest.mark.parametrize("kind", ["fire", "night_fire", "fire_windy"])
def test_tower_fires_still_alert_through_the_pipeline(kind):
    """The verifier must not veto the simulator's tower flames, by day, at night and in wind (before it saw
    tower-range crops it scored them near 0): FirePipeline.detect still raises an alert-level candidate on
    the fire (at seed 4 the detector alone does, boxes from 11×7 to 80×80 px)."""
    camera = Camera(1, "tower", "video_camera", "active", POSE.lat, POSE.lon, "230102", None,
                    {"mast_height_m": POSE.mast_height_m, "heading_deg": POSE.heading_deg,
                     "tilt_deg": POSE.tilt_deg, "hfov_deg": POSE.hfov_deg})
    pipeline = FirePipeline(fire_alerts, lambda lon, lat: None)
    spec = TowerSpec(kind, SEED, fps=2)
    for image, label in ahead(render(spec)):
        found = pipeline.detect(camera, Frame("visible", image), None, spec.at(label.t))
        if any(c.confidence >= ALERT_CONFIDENCE and label.fire and _touch(c.box, label.box) for c in found):
            return
    pytest.fail(f"{kind} (seed {SEED}) never reached alert level through the pipeline")
