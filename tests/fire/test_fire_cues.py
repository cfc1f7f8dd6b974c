"""The video detector's cues one by one: registration, per-pixel noise, flame-band energy, periodicity,
common-mode change, the sun's place, the night map. Times of day are fixed (never the wall clock)."""

from __future__ import annotations

import datetime as dt
import math

import cv2
import numpy as np
import pytest

from analytics.fire import sun
from analytics.fire.motion import Aligner, NoiseModel, undo_shift
from analytics.fire.nightmap import LIT_S, NightMap
from analytics.fire.smoke import SmokeModel, SmokeParams
from analytics.fire.temporal import common_mode, flame_band_energy, periodicity
from simulators.tower_scenes import POSE, TowerSpec, render

NOW = dt.datetime(2026, 10, 15, 8, 0, tzinfo=dt.UTC)
"""16:00 in Suihua in the autumn ban: the sun low in the WSW, ahead of the tower camera (heading 250°)."""


def test_phase_correlation_recovers_a_sub_pixel_sway_of_a_tower_picture():
    picture, _ = next(render(TowerSpec("foliage", 1, fps=1, duration_s=1)))
    grey = cv2.cvtColor(cv2.resize(picture, (640, 360), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    grey = grey.astype(np.float32)
    aligner = Aligner(grey.shape)
    aligner.set_reference(grey)
    for sway in ((1.3, -0.7), (-2.2, 1.1), (0.4, 0.2)):
        moved = cv2.warpAffine(grey, np.float32([[1, 0, sway[0]], [0, 1, sway[1]]]), (640, 360),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        dx, dy, response = aligner.shift(moved)
        # half-size correlation: ±0.25 working px (the noise model allows 0.35 px of it on edges)
        assert abs(dx - sway[0]) < 0.25 and abs(dy - sway[1]) < 0.25 and response > 0.5
        if max(abs(sway[0]), abs(sway[1])) >= 1:  # below a pixel, resampling blur is as large as the sway
            back = undo_shift(moved, dx, dy)
            inner = (slice(10, -10), slice(10, -10))
            assert np.abs(back[inner] - grey[inner]).mean() < 0.6 * np.abs(moved[inner] - grey[inner]).mean()


def test_a_change_counts_at_a_quiet_pixel_but_not_where_the_pixel_is_always_noisy():
    model = NoiseModel((2, 2), floor=0.05)
    keep = np.full((2, 2), 255, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(200):
        change = np.zeros((2, 2), np.float32)
        change[0, 0] = rng.normal(0, 0.2)  # leaves in the wind, a noisy corner
        model.update(change, 0.05, keep)
    step = np.full((2, 2), 0.3, np.float32)
    moving = model.moving(step, 3.5)
    assert moving[0, 0] == 0 and moving[1, 1] == 1


def test_a_high_contrast_edge_needs_a_larger_change_than_a_flat_field():
    bg = np.zeros((20, 20), np.float32)
    bg[:, 10:] = 3.0  # a dark field against bright stubble, in log brightness
    model = NoiseModel(bg.shape, floor=0.05)
    model.set_edges(bg)
    change = np.full(bg.shape, 0.4, np.float32)
    moving = model.moving(change, 3.5)
    assert moving[5, 10] == 0 and moving[5, 3] == 1


def _burst(boundary: np.ndarray, frames: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    red = np.full((frames, 12, 12), 90, np.uint8)
    hot = np.zeros((frames, 12, 12), bool)
    for i in range(frames):
        red[i, 4:8, 4:8] = 250
        hot[i, 4:8, 4:8] = True
        on = boundary[i]
        red[i][on] = 250
        hot[i][on] = True
    red = np.clip(red.astype(np.int16) + rng.integers(-2, 3, red.shape), 0, 255).astype(np.uint8)
    return red, hot


def test_flame_band_energy_is_high_on_a_flickering_boundary_and_low_for_one_passing_edge():
    rng = np.random.default_rng(3)
    ring = np.zeros((12, 12), bool)
    ring[3:9, 3:9] = True
    ring[4:8, 4:8] = False
    flicker = np.stack([ring & (rng.random((12, 12)) < 0.5) for _ in range(20)])
    step = np.stack([ring if i >= 10 else np.zeros_like(ring) for i in range(20)])  # switched on once
    assert flame_band_energy(*_burst(flicker)) > 0.5
    assert flame_band_energy(*_burst(step)) < 0.1


def test_a_beacon_is_periodic_and_a_flame_is_not():
    for fps in (2, 5, 10):
        t = np.arange(24) / fps
        for period in (0.7, 1.3, 1.6):
            beacon = np.maximum(0, np.cos(2 * np.pi * t / period)) ** 3  # short bright pulses, aliased at 2 fps
            assert periodicity(beacon) > 0.7, (fps, period)
        flame = np.random.default_rng(fps).normal(0, 1, 24) + 0.05 * t
        assert periodicity(flame) < 0.6
    assert periodicity(beacon[:10]) == 0.0  # too short to tell


def test_a_dimming_lamp_changes_in_one_pattern_and_flames_do_not():
    rng = np.random.default_rng(2)
    pattern = rng.uniform(0.5, 1.0, (6, 6))
    lamp = np.stack([np.log1p(200 * pattern * (0.6 + 0.4 * np.cos(i))) for i in range(12)])
    flames = np.log1p(rng.uniform(40, 250, (12, 6, 6)))
    assert common_mode(lamp)[0] > 0.9
    assert common_mode(flames)[0] < 0.5


def test_the_low_sun_is_placed_in_the_picture_from_date_time_and_pose():
    az, el = sun.position(POSE.lat, POSE.lon, NOW)
    assert 245 < az < 255 and 3 < el < 10
    left, right = sun.glint_columns(POSE, 1280, NOW)
    assert 0 < left < 640 < right < 1280 or 0 < left < right < 1280
    noon = NOW.replace(hour=4)
    assert sun.glint_columns(POSE, 1280, noon) is None  # high in the south, out of the picture
    assert sun.is_night(POSE.lat, POSE.lon, NOW.replace(hour=14)) and not sun.is_night(POSE.lat, POSE.lon, NOW)
    with pytest.raises(ValueError, match="zone"):
        sun.position(POSE.lat, POSE.lon, NOW.replace(tzinfo=None))


def test_the_glint_band_covers_the_suns_column_only_not_a_fire_a_few_degrees_beside_it():
    band = sun.glint_columns(POSE, 1280, NOW)
    column = (band[0] + band[1]) / 2
    f = 640 / math.tan(math.radians(POSE.hfov_deg / 2))
    off = f * math.tan(math.radians(3.5))  # a fire 3.5° to the side of the sun, 20 px wide
    assert not sun.under_glint(band, column + off - 10, column + off + 10)
    assert not sun.under_glint(band, column - off - 10, column - off + 10)
    assert sun.under_glint(band, column - 30, column + 30)  # the glint itself, straight under the sun
    assert sun.under_glint(band, column + 5, column + 40)
    assert not sun.under_glint(None, column - 30, column + 30)  # sun high or behind: no band


def _night(lights: NightMap, day: int, lit: bool) -> None:
    grey = np.full((360, 640), 20.0, np.float32)
    if lit:
        grey[200:206, 300:306] = 230.0
    start = dt.datetime(2026, 10, 15 + day, 13, 0, tzinfo=dt.UTC)  # 21:00 in Suihua
    for s in range(0, int(LIT_S) + 60, 10):
        lights.observe(grey, start + dt.timedelta(seconds=s))


def test_a_light_seen_on_two_nights_is_known_and_a_new_one_is_not():
    lights = NightMap((360, 640), POSE.lon)
    _night(lights, 0, lit=True)
    _night(lights, 1, lit=False)
    _night(lights, 2, lit=False)
    assert not lights.known((300, 200, 6, 6))  # one night is not a habit
    _night(lights, 3, lit=True)
    _night(lights, 4, lit=False)
    assert lights.known((300, 200, 6, 6))
    assert not lights.known((100, 250, 6, 6))


def _plume(tops: list[int], bottom: int = 300, width: int = 60) -> list[tuple]:
    """Smoke hits (t, box, area) at 2 fps of a veil whose top goes through ``tops`` over a fixed foot."""
    return [(i / 2, (500, top, width, bottom - top), width * (bottom - top)) for i, top in enumerate(tops)]


def test_a_veil_climbing_steadily_from_a_fixed_foot_stands_on_its_own_only_if_it_appeared_in_view():
    smoke = SmokeModel(SmokeParams(), 2, 317.0, 720)
    climbing = _plume([292, 288, 283, 279, 274, 270])
    assert smoke.confidence(climbing, 2.5) == SmokeParams().strong
    # the same veil, there before the scene model had learnt its background: not seen to rise from its fire
    assert smoke.confidence(climbing, 2.5, settled=False) <= SmokeParams().alone
    on_land = _plume([412, 408, 403, 399, 394, 390], bottom=420)  # its fire is in view there: no shortcut
    assert (smoke.confidence(on_land, 2.5) or 0.0) < SmokeParams().strong
    jumpy = _plume([292, 292, 270, 291, 271, 270])  # one jump, back and forth: not a steady climb
    assert (smoke.confidence(jumpy, 2.5) or 0.0) < SmokeParams().strong
    flat = _plume([292, 288, 283, 279, 274, 270], width=400)  # a haze band lifting: far wider than tall
    assert smoke.confidence(flat, 2.5) is None
