"""The far band of points of light holds for any frame size and any horizon row: a frame whose width is not
a multiple of the working scale, a preset whose horizon lies above or below the frame."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from analytics.fire.hotspot import PAD, band_rows
from analytics.fire.video import VideoDetector

START = dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("height", "k"), [(720, 2), (1536, 3), (1728, 5), (721, 6), (1080, 7), (359, 1)])
def test_the_band_is_whole_working_rows_inside_the_frame_for_any_requested_rows(height, k):
    for top, bottom in itertools.product([-1e6, -400.0, -3.0, 0.0, 5.0, 8.0, 150.7, height - 9.0, height + 50.0,
                                          float("inf"), float("-inf"), float("nan")], repeat=2):
        first, end = band_rows(height, k, top, bottom)
        assert first % k == 0 and end % k == 0, (top, bottom)
        assert first >= PAD and (end <= first or end + PAD <= height), (top, bottom)


@pytest.mark.parametrize(("width", "height", "horizon"), [
    (2048, 1536, -400.0),  # k = 3, the horizon above the frame
    (3072, 1728, 2.0),  # k = 5
    (1283, 721, 360.0),  # k = 2, an odd width and height
    (1930, 1080, 1200.0),  # k = 3, the horizon below the frame
    (641, 359, -1.0),  # k = 1
])
def test_frames_of_odd_sizes_and_horizons_off_the_frame_are_judged(width, height, horizon):
    rng = np.random.default_rng(3)
    base = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
    detector = VideoDetector()
    for i in range(14):  # past the point model's first seconds, so it learns and searches
        image = base.copy()
        image[height // 2, width // 2] = 255 if i > 9 else image[height // 2, width // 2]
        found = detector.process("cam", None, image, horizon, at=START + dt.timedelta(seconds=i / 2))
        assert isinstance(found, list)
    spots = detector.scenes[("cam", None)].spots
    assert spots.rows <= 0 or spots.age_s > 4.0  # the model learnt every frame (a band off the frame is empty)
