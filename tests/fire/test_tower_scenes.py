"""The harsher benchmark's sequences: the same scene at any frame rate, labelled from ignition on."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.tower_scenes import KINDS, TowerSpec, render


def _at(spec: TowerSpec, t: float):
    for image, label in render(spec):
        if abs(label.t - t) < 1e-9:
            return image, label
    raise AssertionError(f"no frame at {t} s")


def test_a_scene_is_the_same_fire_whatever_the_frame_rate():
    slow, _ = _at(TowerSpec("fire", 3, fps=2, duration_s=12), 11.0)
    fast, label = _at(TowerSpec("fire", 3, fps=4, duration_s=12), 11.0)
    x, y, w, h = label.box
    a, b = slow[y:y + h, x:x + w].astype(np.float32), fast[y:y + h, x:x + w].astype(np.float32)
    assert np.abs(a - b).mean() < 4.0  # sensor noise and JPEG differ, the fire and its smoke do not


def test_frames_before_ignition_are_not_fire_and_after_are_boxed():
    labels = [label for _, label in render(TowerSpec("night_fire", 1, fps=1, duration_s=12))]
    assert not any(label.fire for label in labels if label.t < 8.0)
    assert all(label.fire and label.box[2] > 0 for label in labels if label.t >= 8.0)


def test_look_alikes_are_never_labelled_fire():
    for kind in ("beacon", "walker", "low_sun"):
        assert not any(label.fire for _, label in render(TowerSpec(kind, 1, fps=1, duration_s=3)))


@pytest.mark.parametrize("fps", [0.5, 30])
def test_frame_rates_outside_1_to_25_are_refused(fps):
    with pytest.raises(ValueError, match="outside 1–25 fps"):
        next(render(TowerSpec("fire", 1, fps=fps)))


def test_every_kind_renders_a_tower_frame():
    for kind in KINDS:
        image, _ = next(render(TowerSpec(kind, 2, fps=1, duration_s=1)))
        assert image.shape == (720, 1280, 3) and image.dtype == np.uint8


def test_the_tower_benchmark_refuses_held_out_seeds_that_were_tuned_on():
    from ganzhi.bench_fire_towers import run

    with pytest.raises(ValueError, match="tuned on"):
        run(1, ("2",), held_out_from=5)
