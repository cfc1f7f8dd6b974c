"""Smoke over a grey sky: a faint veil is measured against the sky's own noise, not a fixed step of grey levels.

A grey (overcast) sky is far quieter than land: after JPEG its pixels wander by ≈ 0.5–1 grey level. The thinning
top of a plume rising behind a shelterbelt, the part that climbs, darkens it by 2–4 levels only; with a fixed
4-level step it was not seen (tuning shelterbelt 7002, 7003: never found; 7000, 7008: only the plume's dense foot,
which does not climb)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.smoke import SmokeModel, SmokeParams
from analytics.fire.video import VideoDetector

W, H, HORIZON = 640, 360, 160
"""A working-size frame (k = 1), the horizon at row 160."""


def _overcast(seed: int = 3) -> np.ndarray:
    """A grey sky brightening towards the horizon, a shelterbelt standing on it (crowns up to 10 rows tall), a
    textured field below."""
    rng = np.random.default_rng(seed)
    img = np.empty((H, W, 3), np.float32)
    img[:HORIZON] = np.linspace(168, 182, HORIZON, dtype=np.float32)[:, None, None]
    img[HORIZON:] = (95, 165, 200)
    img[HORIZON:] += cv2.GaussianBlur(rng.normal(0, 14, (H - HORIZON, W)), (0, 0), 1.2)[..., None]
    for x in range(0, W, 4):
        cv2.ellipse(img, (x, HORIZON), (int(rng.integers(2, 5)), int(rng.integers(5, 11))), 0, 180, 360,
                    (30, 75, 45), -1)
    return cv2.GaussianBlur(img, (0, 0), 0.7)  # (a working frame is the camera's, shrunk: no sharper than this)


def _seen(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The frame as a tower sends it: the mast's residual sway (a third of a pixel), sensor noise, JPEG 60."""
    dx, dy = rng.uniform(-0.3, 0.3, 2)
    moved = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (W, H), borderMode=cv2.BORDER_REFLECT)
    noisy = np.clip(moved + rng.normal(0, 1.0, moved.shape), 0, 255).astype(np.uint8)
    small = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)
    return small, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _learnt(img: np.ndarray, seconds: float = 20.0, weather: Callable[[np.ndarray, float], np.ndarray] | None = None,
            fps: float = 2.0) -> tuple[SmokeModel, list[tuple]]:
    """A smoke model that watched ``img`` for ``seconds`` at ``fps`` (``weather(img, t)``: the sky at t), and the
    veils it found meanwhile."""
    model = SmokeModel(SmokeParams(), 1, float(HORIZON), H)
    rng = np.random.default_rng(1)
    keep = np.full((H, W), 255, np.uint8)
    model.start(*_seen(img if weather is None else weather(img, 0.0), rng))
    found = []
    for i in range(1, int(seconds * fps)):
        small, grey = _seen(img if weather is None else weather(img, i / fps), rng)
        found += model.blobs(small, grey, i / fps)
        model.update(small, grey, 1 / fps, keep)
    return model, found


def _faint_veil(img: np.ndarray, opacity: float) -> np.ndarray:
    """Straw smoke (grey 130) showing above the crowns, 40 columns wide and 18 rows tall, thinning upwards."""
    alpha = np.zeros((H, W), np.float32)
    alpha[132:150, 300:340] = np.linspace(0.5, 1.0, 18, dtype=np.float32)[:, None]
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)[..., None] * opacity
    return np.clip(img * (1 - alpha) + 130.0 * alpha, 0, 255)


@pytest.mark.parametrize("fps", [1, 2, 25])
def test_a_faint_grey_veil_over_a_quiet_grey_sky_is_a_veil(fps):
    sky = _overcast()
    model, found = _learnt(sky, fps=fps)
    assert found == []  # the quiet sky and the swaying crowns make no veil of their own
    small, grey = _seen(_faint_veil(sky, 0.07), np.random.default_rng(2))  # 2–3 grey levels darker
    veils = model.blobs(small, grey, 20.0)
    assert any(x <= 320 < x + w and y < 150 for (x, y, w, _), _, _ in veils)


def _drifting_cloud(img: np.ndarray, t: float) -> np.ndarray:
    """Low cloud texture (σ 1.5 grey levels) drifting at 3 px/s across the grey sky, under a drifting exposure."""
    rng = np.random.default_rng(9)
    clouds = cv2.GaussianBlur(rng.normal(0, 1, (HORIZON, 2 * W)).astype(np.float32), (0, 0), 12)
    clouds *= 1.5 / clouds.std()
    out = img.copy()
    shift = int(3 * t)
    out[:HORIZON] += clouds[:, shift:shift + W, None]
    return out * (1 + 0.05 * np.sin(2 * np.pi * t / 17))


def test_a_grey_sky_with_drifting_cloud_under_a_drifting_exposure_pages_nobody():
    # its veils (a cloud's texture wanders by as much as a faint plume darkens the sky) stand on no base and do
    # not climb from behind the trees
    sky = _overcast(seed=4)
    detector = VideoDetector()
    rng = np.random.default_rng(5)
    start = dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC)
    paged = []
    for i in range(120):  # a minute at 2 fps, at the camera's size
        t = i / 2
        small, _ = _seen(_drifting_cloud(sky, t), rng)
        frame = cv2.resize(small, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
        found = detector.process("cam", None, frame, 2.0 * HORIZON, at=start + dt.timedelta(seconds=t))
        paged += [(t, c) for c in found if c.confidence >= ALERT_CONFIDENCE]
    assert paged == []


def _paged_over_an_exposure_step(expose: Callable[[np.ndarray], np.ndarray]) -> list[tuple[float, str]]:
    """What pages in 20 s of the grey sky at 10 fps, the camera's exposure stepping (``expose``) at 8 s."""
    sky = _overcast(seed=6)
    detector = VideoDetector()
    rng = np.random.default_rng(7)
    start = dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC)
    paged = []
    for i in range(200):
        t = i / 10
        small, _ = _seen(expose(sky) if t >= 8 else sky, rng)
        frame = cv2.resize(small, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)
        found = detector.process("cam", None, frame, 2.0 * HORIZON, at=start + dt.timedelta(seconds=t))
        paged += [(t, c.cue) for c in found if c.confidence >= ALERT_CONFIDENCE]
    return paged


def test_an_exposure_step_under_a_grey_sky_pages_nobody():
    assert _paged_over_an_exposure_step(lambda img: img * 1.17) == []


def test_an_exposure_step_clipping_a_grey_sky_pages_nobody():
    """(Session 14 review, a strict xfail until session 18.) Where the sky clips, its gain is not the land's. This
    camera clips at 196, not at the 235 the sky's own gain waited for: its sky rows took the land's gain (itself
    short of the step: the field's red clips too), 2.5–3.3 levels off, more than ``gain_error`` allows (a tenth of
    the step), the sky band darkened as one veil and its fragments climbed and paged smoke at 0.6 six seconds
    later. A row held at the ceiling the sky shows takes its own gain."""
    assert _paged_over_an_exposure_step(lambda img: np.minimum(img * 1.17, 196)) == []
