"""Look-alikes rejected by what they are (tuning tower seeds 7000–7002, session 10)."""

from __future__ import annotations

import numpy as np

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.smoke import SmokeModel, SmokeParams
from analytics.fire.video import VideoDetector
from simulators.tower_scenes import TowerSpec, render
from tests.fire.frames import ahead


def _alerts(spec: TowerSpec) -> list[tuple[float, str]]:
    detector = VideoDetector()
    found = []
    for image, label in ahead(render(spec)):
        for c in detector.process("tower", None, image, spec.horizon, at=spec.at(label.t), pose=spec.pose):
            if c.confidence >= ALERT_CONFIDENCE:
                found.append((label.t, c.cue))
    return found


def test_an_exposure_step_under_a_clipping_sky_is_no_smoke():
    # (tuning seed 7000, the tractor's scene) an exposure step up at 19 s brightened the land by 27 % but the
    # near-white sky only as far as 255: compensated with the land's gain the whole sky band darkened as one
    # grey veil, whose fragments climbed and paged as smoke at 23.5 s
    assert _alerts(TowerSpec("tractor", 7000, fps=2.0)) == []


def test_a_sky_clipped_by_an_exposure_step_up_turns_no_block_to_smoke():
    rng = np.random.default_rng(3)
    h, w, horizon = 360, 640, 160
    before = np.empty((h, w, 3), np.float32)
    before[:horizon] = np.linspace(195, 215, horizon)[:, None, None] * np.array([1.0, 0.93, 0.85])[::-1]
    before[horizon:] = (70, 120, 150)
    before += rng.normal(0, 3, (h, w, 1))
    model = SmokeModel(SmokeParams(), 1, float(horizon), h)
    small = np.clip(before, 0, 255).astype(np.uint8)
    model.start(small, small.mean(axis=2).astype(np.float32))
    after = np.clip(before * 1.27, 0, 255).astype(np.uint8)  # the land scales, the sky clips
    assert model.blobs(after, after.mean(axis=2).astype(np.float32), 1.0) == []
