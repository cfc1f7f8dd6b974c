"""Thermal hotspots and frame decoding."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from analytics.fire.frames import FrameError, decode, encode_thermal
from analytics.fire.thermal import ThermalDetector, hot_blobs
from simulators.hotspots import thermal_sequence


def test_a_growing_hotspot_is_reported_from_its_second_frame_and_nothing_else_is():
    detector = ThermalDetector()
    results = [(box, detector.process("t", None, k)) for k, box in thermal_sequence(4, frames=6)]
    assert results[0][1] == [] and results[1][1] == []  # no fire yet; then seen once
    for box, found in results[2:]:
        assert len(found) == 1 and found[0].cue == "hotspot"
        x, y, *_ = found[0].box
        assert abs(x - box[0]) <= 2 and abs(y - box[1]) <= 2


def test_warm_roofs_and_a_dead_pixel_are_not_fires():
    detector = ThermalDetector()
    assert all(detector.process("t", None, k) == [] for k, _ in thermal_sequence(5, frames=6, fire=False))


def test_a_hotspot_needs_three_pixels_and_a_margin_over_its_background():
    field = np.full((120, 160), 285.0, np.float32)
    field[50, 50:52] = 600.0  # two pixels: too small
    field[80:82, 100:102] = 330.0  # four pixels, 45 K over the field
    blobs = hot_blobs(field)
    assert [b[1] for b in blobs] == [4]
    warm = np.full((120, 160), 315.0, np.float32)
    warm[80:82, 100:102] = 320.0  # above 45 °C but only 5 K over a sun-baked field
    assert hot_blobs(warm) == []


def test_thermal_frames_round_trip_as_16_bit_png_and_npy():
    k = np.full((96, 128), 290.0, np.float32)
    k[10, 10] = 512.34
    frame = decode(encode_thermal(k))
    assert frame.kind == "thermal" and abs(frame.image[10, 10] - 512.34) < 0.01
    buffer = io.BytesIO()
    np.save(buffer, (k - 273.15).astype(np.float32))
    assert abs(decode(buffer.getvalue()).image[10, 10] - 512.34) < 0.01


@pytest.mark.parametrize(("payload", "message"), [
    (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "corrupt JPEG"),
    (b"GIF89a....", "not a JPEG, PNG or .npy"),
    (b"", "not a JPEG, PNG or .npy"),
    (cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8))[1].tobytes(), "frame size 30×20"),
    (encode_thermal(np.full((96, 128), 100.0, np.float32)), "not temperatures"),
    (cv2.imencode(".png", np.zeros((96, 128, 3), np.uint16))[1].tobytes(), "uint16 colour PNG"),
])
def test_bad_frames_are_refused_with_the_reason(payload, message):
    with pytest.raises(FrameError, match=message):
        decode(payload)
