"""The video detector on the simulator's labelled sequences: fires found where they burn, hard
negatives (sunset, red lorry, harvester dust, lights at night, clouds) left alone."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire import video
from analytics.fire.colour import ColourParams, flame_mask, land_means
from analytics.fire.video import VideoDetector, VideoParams
from simulators.scenes import NEGATIVE, POSITIVE, SceneSpec, render
from simulators.tower_scenes import POSE, TowerSpec
from simulators.tower_scenes import render as render_tower
from tests.fire.frames import Prefetch

POSITIVE_SEEDS, NEGATIVE_SEEDS = (11, 12), (11, 12, 13)
TOWER_SPECS = [TowerSpec(kind, seed, fps=2.0) for kind, seed in [
    ("fire", 1), ("tractor", 2), ("walker", 2), ("low_sun", 2), ("beacon", 2), ("smoke_shelterbelt", 1),
    ("low_sun", 601), ("dust", 3), ("dust", 5), ("dust", 8), ("fire_low_sun", 0)]]
TOWER_SPECS.append(TowerSpec("fire_low_sun", 2, fps=2.0, duration_s=50))


def _sequence(key: SceneSpec | TowerSpec | tuple[SceneSpec, int]) -> list:
    """A spec's frames, or (spec, n): its first n."""
    spec, count = key if isinstance(key, tuple) else (key, None)
    return list(itertools.islice(render_tower(spec) if isinstance(spec, TowerSpec) else render(spec), count))


# every sequence of this module, in the order its tests play them: each is rendered once, in the background,
# while the detector runs on the one before (the same frames; the suite's slowest part was drawing them)
SCENES = Prefetch(_sequence, [SceneSpec(kind, seed) for seed in POSITIVE_SEEDS for kind in POSITIVE]
                  + [SceneSpec(kind, seed) for seed in NEGATIVE_SEEDS for kind in NEGATIVE]
                  + [SceneSpec("clear", 5, frames=20), (SceneSpec("fire", 3), 22), SceneSpec("clear", 5, frames=4)]
                  + TOWER_SPECS + [SceneSpec("clear", 5, frames=26)])


@pytest.fixture(scope="module", autouse=True)
def _scenes():
    yield
    SCENES.close()


def _run(spec: SceneSpec) -> list[tuple[int, object, list]]:
    detector = VideoDetector()
    return [(label.index, label, detector.process("cam", None, frame, spec.horizon))
            for frame, label in SCENES.get(spec)]


def _overlaps(a, b, grow: int = 8) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax - grow < bx + bw and bx - grow < ax + aw and ay - grow < by + bh and by - grow < ay + ah


@pytest.mark.parametrize("kind", POSITIVE)
@pytest.mark.parametrize("seed", POSITIVE_SEEDS)
def test_a_fire_is_found_where_it_burns_within_seconds_of_ignition(kind, seed):
    spec = SceneSpec(kind, seed)
    found = [(i, label, c) for i, label, cands in _run(spec) for c in cands]
    assert found, f"{kind} seed {seed}: nothing found"
    first = found[0][0]
    # M-of-N persistence: a few frames after ignition; a far fire's smoke must first be seen to rise
    assert spec.ignite <= first <= spec.ignite + (20 if kind == "smoke" else 12)
    for _, label, candidate in found:
        assert label.fire and _overlaps(candidate.box, label.box), (candidate, label)


@pytest.mark.parametrize("kind", NEGATIVE)
@pytest.mark.parametrize("seed", NEGATIVE_SEEDS)
def test_hard_negatives_never_look_like_flames_and_never_reach_the_alert_threshold(kind, seed):
    found = [c for _, _, cands in _run(SceneSpec(kind, seed)) for c in cands]
    assert [c for c in found if c.cue == "flame"] == []
    assert all(c.confidence < ALERT_CONFIDENCE for c in found)  # smoke alone (dust now and then) pages nobody


def test_a_stationary_fire_coloured_object_passes_colour_but_not_the_detector():
    spec = SceneSpec("clear", 5, frames=20)
    detector = VideoDetector()
    for frame, _ in SCENES.get(spec):
        frame[500:530, 600:640] = (40, 140, 255)  # an orange sign: flame-coloured, never moves or flickers
        assert detector.process("cam", None, frame, spec.horizon) == []
    means = land_means(frame[260:])
    assert flame_mask(frame[500:530, 600:640], means, ColourParams()).all()


def test_a_preset_change_starts_a_new_background():
    spec = SceneSpec("fire", 3)
    detector = VideoDetector()
    frames = [f for f, _ in SCENES.get((spec, 22))]  # (the 22 it plays)
    for frame in frames[:20]:
        detector.process("cam", 1, frame, spec.horizon)
    assert ("cam", 1) in detector.scenes
    detector.process("cam", 2, frames[20], spec.horizon)
    assert list(detector.scenes) == [("cam", 2)]
    assert detector.process("cam", 2, frames[21], spec.horizon) == []  # no history yet: nothing can be confirmed


def test_flame_colour_rules_on_known_pixels():
    means = (120.0, 120.0, 130.0)
    pixels = np.array([[(40, 160, 255), (200, 200, 200), (30, 30, 200), (245, 250, 255)]], np.uint8)
    mask = flame_mask(pixels, means, ColourParams())
    assert mask[0].tolist() == [255, 0, 0, 0]  # orange flame yes; grey, deep red (G = B), a white lamp no


def test_frames_carry_their_capture_time_and_an_older_frame_is_ignored():
    spec = SceneSpec("clear", 5, frames=4)
    detector = VideoDetector()
    start = dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC)
    frames = [f for f, _ in SCENES.get(spec)]
    detector.process("cam", None, frames[0], spec.horizon, at=start)
    detector.process("cam", None, frames[1], spec.horizon, at=start + dt.timedelta(seconds=0.5))
    scene = detector.scenes[("cam", None)]
    assert scene.t == (start + dt.timedelta(seconds=0.5)).timestamp()
    assert detector.process("cam", None, frames[2], spec.horizon, at=start) == []  # late: out of order
    assert scene.t == (start + dt.timedelta(seconds=0.5)).timestamp()


def _tower_alerts(kind: str, seed: int, fps: float) -> list[tuple[float, bool]]:
    """(seconds from start, on the fire) of each alert-level candidate of a tower sequence (tuning seeds)."""
    spec = TowerSpec(kind, seed, fps=fps)
    detector = VideoDetector()
    found = []
    for image, label in SCENES.get(spec):
        for c in detector.process("tower", None, image, spec.horizon, at=spec.at(label.t), pose=POSE):
            if c.confidence >= ALERT_CONFIDENCE:
                found.append((label.t, label.fire and _overlaps(c.box, label.box)))
    return found


def test_a_tower_fire_with_sway_and_jpeg_alerts_within_ten_seconds_at_two_frames_a_second():
    found = _tower_alerts("fire", 1, 2.0)
    assert found and all(on_fire for _, on_fire in found)
    assert found[0][0] - 8.0 <= 10.0


@pytest.mark.parametrize("kind", ["tractor", "walker", "low_sun", "beacon"])
def test_tower_look_alikes_with_sway_and_jpeg_raise_no_alert(kind):
    assert _tower_alerts(kind, 2, 2.0) == []


def test_smoke_rising_behind_a_shelterbelt_under_a_grey_sky_alerts_within_ten_seconds_of_ignition():
    found = _tower_alerts("smoke_shelterbelt", 1, 2.0)  # shows above the trees ~6.5 s after ignition
    assert found and all(on_fire for _, on_fire in found)
    assert found[0][0] - 8.0 <= 10.0


def test_a_sunlit_stubble_strip_shimmering_under_a_low_sun_ahead_raises_no_alert():
    # seed 601: a thin strip of stubble lit orange 19° beside the sun, outside its glint band; its edges
    # shimmer with the sway from the model's first seconds (it alerted at 4.5 s before); it never spreads
    assert _tower_alerts("low_sun", 601, 2.0) == []


@pytest.mark.parametrize("seed", [3, 5, 8])
def test_harvester_dust_drifting_up_over_the_horizon_raises_no_alert(seed):
    # over a blue sky the dust cannot be told from a grey veil; the field under it, where it comes from, can
    assert _tower_alerts("dust", seed, 2.0) == []


def test_a_fire_a_few_degrees_beside_a_low_sun_alerts_without_flicker():
    found = _tower_alerts("fire_low_sun", 0, 2.0)  # 3.4° right of the sun's azimuth
    assert found and all(on_fire for _, on_fire in found)
    assert found[0][0] - 8.0 <= 10.0


def test_a_fire_burning_when_the_model_starts_under_a_low_sun_is_listed_not_vetoed():
    # review t3: seed 2, lit at 8 s, the detector (re)started at 10 s (a worker restart, a view jump, a return
    # to the preset). The low-sun rule vetoed its flame track until it grew 1.2× (23.5 s); now it is listed
    # (under the alert threshold, so another tower or smoke over it can page it) from when it is judged
    spec = TowerSpec("fire_low_sun", 2, fps=2.0, duration_s=50)
    detector = VideoDetector()
    listed = []
    for image, label in SCENES.get(spec):
        if label.t < 10.0:
            continue
        for c in detector.process("tower", None, image, spec.horizon, at=spec.at(label.t), pose=spec.pose):
            if c.cue == "flame" and label.fire and _overlaps(c.box, label.box):
                listed.append((label.t, c.confidence))
    assert listed and listed[0][0] <= 16.0
    early = [conf for t, conf in listed if t < 10.0 + VideoParams().noise_tau_s]
    assert early[0] < ALERT_CONFIDENCE  # alone, it does not page before it grows or the rule expires


def test_a_clock_stepped_back_restarts_the_scene_model_with_a_warning(caplog):
    # review: frames T..T+10 s, then the clock steps back an hour (NTP): the model was blind for that hour
    spec = SceneSpec("clear", 5, frames=26)
    detector = VideoDetector()
    start = dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC)
    frames = [f for f, _ in SCENES.get(spec)]
    for n, frame in enumerate(frames[:21]):
        detector.process("cam", None, frame, spec.horizon, at=start + dt.timedelta(seconds=0.5 * n))
    scene = detector.scenes[("cam", None)]
    assert detector.process("cam", None, frames[21], spec.horizon, at=start + dt.timedelta(seconds=8)) == []
    assert scene.t == (start + dt.timedelta(seconds=10)).timestamp()  # a late frame: dropped
    back = start - dt.timedelta(hours=1)
    with caplog.at_level("WARNING", logger="analytics.fire.video"):
        detector.process("cam", None, frames[22], spec.horizon, at=back)
    assert scene.t == scene.started == back.timestamp()
    assert "stepped back" in caplog.text
    detector.process("cam", None, frames[23], spec.horizon, at=back + dt.timedelta(seconds=0.5))
    assert scene.t == (back + dt.timedelta(seconds=0.5)).timestamp()


def _sighted(areas: list[float], fps: float) -> list[tuple]:
    """A track's sightings (capture time, box, area) at ``fps``."""
    return [(i / fps, (0, 0, 10, 10), area) for i, area in enumerate(areas)]


@pytest.mark.parametrize("fps", [1, 2, 25])
def test_a_line_widening_steadily_spreads_and_a_box_flipping_between_two_sizes_does_not(fps):
    """``_spreads`` (a track there from the model's start pages early only if it spreads): a steady rise in area
    does, at any rate; a box flipping between two sizes with the mast's sway does not, whatever its growth by
    thirds reads; nor a rise seen in fewer than ``SPREAD_HITS`` sightings, which any two sizes would fit."""
    seconds = 6
    widening = [100 + 20 * i / fps for i in range(seconds * fps)]
    flipping = [100 if i % 2 else 190 for i in range(seconds * fps)]
    assert video._spreads(_sighted(widening, fps), 1.5, 1.2)
    assert not video._spreads(_sighted(flipping, fps), 1.45, 1.2)
    assert not video._spreads(_sighted(widening, fps), 1.1, 1.2)  # not grown enough by thirds
    assert not video._spreads(_sighted([100, 190, 280][:video.SPREAD_HITS - 1], fps), 2.8, 1.2)
