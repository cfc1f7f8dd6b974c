"""Look-alikes rejected by what they are (tuning tower seeds 7000–7002, session 10; harvester dust by its colour
and flow, tuning seeds 7000–7008, session 12)."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.fire import ALERT_CONFIDENCE
from analytics.fire.dust import is_dust_colour, layer_colour, veil_is_dust
from analytics.fire.smoke import SmokeModel, SmokeParams
from analytics.fire.video import VideoDetector
from simulators import tower_scenes
from simulators.tower_scenes import TowerSpec, render
from tests.fire.frames import ahead


def _alerts(spec: TowerSpec) -> list[tuple[float, str]]:
    return [(t, cue) for t, cue, _ in _scored(spec)]


def _scored(spec: TowerSpec) -> list[tuple[float, str, bool]]:
    """(seconds, cue, on the fire) of every alert-level candidate."""
    detector = VideoDetector()
    found = []
    for image, label in ahead(render(spec)):
        for c in detector.process("tower", None, image, spec.horizon, at=spec.at(label.t), pose=spec.pose):
            if c.confidence >= ALERT_CONFIDENCE:
                found.append((label.t, c.cue, label.fire and label.box is not None and _touch(c.box, label.box)))
    return found


def _touch(a: tuple, b: tuple, grow: int = 12) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax - grow < bx + bw and bx - grow < ax + aw and ay - grow < by + bh and by - grow < ay + ah


def test_an_exposure_step_under_a_clipping_sky_is_no_smoke():
    # (tuning seed 7000, the tractor's scene) an exposure step up at 19 s brightened the land by 27 % but the
    # near-white sky only as far as 255: compensated with the land's gain the whole sky band darkened as one
    # grey veil, whose fragments climbed and paged as smoke at 23.5 s
    assert _alerts(TowerSpec("tractor", 7000, fps=2.0)) == []


def test_a_sunlit_strip_flipping_between_two_sizes_with_the_sway_is_not_a_spreading_fire():
    # (tuning seed 7008) a strip of stubble lit orange 11° beside a low sun, there from the model's first frame:
    # its box flips between 10×10 and 16×12 px with the mast's sway, and at 5 s the medians of the two frames of
    # each third of its time read as growth 1.45 (its area's trend falling): it escaped the young model's cap
    # and paged at 0.71
    assert _alerts(TowerSpec("low_sun", 7008, fps=2.0)) == []


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


@pytest.mark.parametrize(("sky", "gain"), [
    ((168.0, 182.0), 1.17),  # a grey sky stepped up into the camera's ceiling (session 14 review's scene)
    ((200.0, 240.0), 0.85),  # a bright sky held at the ceiling in the background, then an exposure step down
])
def test_a_sky_held_at_a_ceiling_under_255_turns_no_block_to_smoke_when_the_exposure_steps(sky, gain):
    # a camera's white level (or knee) need not be 255: this one clips at 196. Compensated with the land's gain,
    # the sky rows held at the ceiling darken (step up) or brighten (step down) as one veil: a clipped row is
    # one held at what the sky shows, not one at a fixed grey level (235 before: these rows were not clipped)
    rng = np.random.default_rng(4)
    h, w, horizon = 360, 640, 160
    scene = np.empty((h, w, 3), np.float32)
    scene[:horizon] = np.linspace(*sky, horizon, dtype=np.float32)[:, None, None]
    scene[horizon:] = (70, 120, 150)

    def seen(gain: float) -> tuple[np.ndarray, np.ndarray]:
        img = np.clip(np.minimum(scene * gain, 196) + rng.normal(0, 1.5, (h, w, 1)), 0, 255).astype(np.uint8)
        return img, img.mean(axis=2).astype(np.float32)

    model = SmokeModel(SmokeParams(), 1, float(horizon), h)
    model.start(*seen(1.0))
    assert model.blobs(*seen(gain), 1.0) == []


@pytest.mark.parametrize("veil", [25.0, -25.0], ids=["pale", "dark"])
def test_a_broad_veil_over_an_unclipped_sky_is_not_taken_for_clipping(veil):
    # review of session 18: a sky row counted as clipped whenever, at the land's gain, it was brighter than the
    # brightest sky row now (or now brighter than the brightest background row), with no exposure change needed:
    # a veil over most of the sky rows' width moved their medians and gave them their own gain, compensating it away
    rng = np.random.default_rng(6)
    h, w, horizon = 360, 640, 160
    scene = np.empty((h, w, 3), np.float32)
    scene[:horizon] = np.linspace(140.0, 160.0, horizon, dtype=np.float32)[:, None, None]
    scene[horizon:] = (70, 120, 150)

    def seen(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.clip(img + rng.normal(0, 1.5, (h, w, 1)), 0, 255).astype(np.uint8)
        return out, out.mean(axis=2).astype(np.float32)

    model = SmokeModel(SmokeParams(), 1, float(horizon), h)
    model.start(*seen(scene))
    veiled = scene.copy()
    veiled[130:horizon, 64:448] += veil  # 60 % of the width of the sky rows above the horizon
    small, grey = seen(veiled)
    gains = model._gains(grey, horizon)
    assert np.allclose(gains[model.top:horizon], gains[horizon]), "a sky row took its own gain"
    assert model.blobs(small, grey, 1.0) != []


# -- harvester dust: its colour and its flow (session 12) ---------------------------------------------------------

SKY, FIELD, SOIL = (225.0, 205.0, 190.0), (70.0, 120.0, 95.0), (60.0, 95.0, 130.0)
"""Backgrounds a veil may lie over (B, G, R): a pale blue sky, a green field, ploughed soil."""


def _veiled(colour: tuple[float, float, float], backgrounds=(SKY, FIELD, SOIL), seed: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
    """(now, before): a veil of ``colour`` and opacity 0.15–0.7 laid over bands of ``backgrounds``."""
    rng = np.random.default_rng(seed)
    before = np.empty((60, 90, 3), np.float32)
    for n, band in enumerate(np.array_split(np.arange(60), len(backgrounds))):
        before[band] = backgrounds[n]
    before += rng.normal(0, 3, before.shape)
    opacity = rng.uniform(0.15, 0.7, (60, 90, 1))
    now = before * (1 - opacity) + np.array(colour, np.float32) * opacity + rng.normal(0, 3, before.shape)
    return np.clip(np.round(now), 0, 255).astype(np.uint8), before


def test_the_colour_of_a_veil_is_where_its_pixels_converge():
    # a brown veil over a blue sky shows greyish there, over a green field brownish-green: the layer's own
    # colour is where the lines from each background to what it became cross
    now, before = _veiled((105.0, 135.0, 165.0))
    x = layer_colour(now.reshape(-1, 3).astype(np.float32), before.reshape(-1, 3))
    assert x is not None and np.abs(x - (105.0, 135.0, 165.0)).max() < 8.0


@pytest.mark.parametrize(("colour", "dust"), [
    ((105.0, 135.0, 165.0), True),   # harvester dust, tan (B, G, R)
    ((95.0, 140.0, 190.0), True),    # loess, ochre
    ((170.0, 170.0, 170.0), False),  # straw smoke, grey
    ((200.0, 200.0, 200.0), False),  # white smoke
    ((185.0, 172.0, 160.0), False),  # blue-grey smoke
    ((140.0, 158.0, 175.0), False),  # brownish-grey smoke of smouldering straw
    ((60.0, 60.0, 60.0), False),     # dark smoke
])
def test_a_veil_is_dust_by_its_colour_not_by_what_it_shows(colour, dust):
    now, before = _veiled(colour)
    assert veil_is_dust(now, before, np.ones(now.shape[:2], bool)) is dust


def test_grey_smoke_over_stubble_alone_is_no_dust():
    # tuning windy fire 7002 (2 fps): over backgrounds much alike (tan stubble) the lines are nearly parallel
    # and their crossing slid towards the stubble's own colour, tan; its flame track was taken for dust and
    # paged 8 s later. A grey veil explains those lines as well: not dust
    stubble = ((80.0, 128.0, 160.0), (90.0, 140.0, 172.0), (72.0, 118.0, 150.0))
    now, before = _veiled((175.0, 175.0, 175.0), backgrounds=stubble)
    assert is_dust_colour(layer_colour(now.reshape(-1, 3).astype(np.float32), before.reshape(-1, 3)))
    assert not veil_is_dust(now, before, np.ones(now.shape[:2], bool))


def test_a_dust_veil_drifting_off_is_dust_too():
    # the background (τ 20 s) learnt the dust; it thins and drifts off, the pixels going back to what lies behind
    veiled, clear = _veiled((105.0, 135.0, 165.0))
    assert veil_is_dust(clear.astype(np.uint8), veiled.astype(np.float32), np.ones(clear.shape[:2], bool))
    grey, clear = _veiled((170.0, 170.0, 170.0))
    assert not veil_is_dust(clear.astype(np.uint8), grey.astype(np.float32), np.ones(clear.shape[:2], bool))


def test_a_veil_over_one_background_says_nothing_of_its_colour():
    # over a uniform blue sky every pixel moves one way: the veil may be grey and thick or brown and thin
    now, before = _veiled((105.0, 135.0, 165.0), backgrounds=(SKY,))
    assert layer_colour(now.reshape(-1, 3).astype(np.float32), before.reshape(-1, 3)) is None
    assert not veil_is_dust(now, before, np.ones(now.shape[:2], bool))


def test_flame_light_is_no_dust_colour():
    assert not is_dust_colour(np.array([30.0, 150.0, 255.0]))  # an orange tongue: glowing, deep orange
    assert not is_dust_colour(np.array([150.0, 235.0, 255.0]))  # a flame's yellow-white core
    assert is_dust_colour(np.array([105.0, 135.0, 165.0]))


@pytest.mark.parametrize(("seed", "what"), [
    (7004, "its dust over the far field, flame-coloured, paged as a flame at 6.5 s"),
    (7000, "the harvester's track lost its mover verdict when its box jumped with its dust; paged at 8 s"),
    (7005, "its dust veil standing over the horizon paged as smoke at 17.5 s"),
])
def test_a_harvester_and_its_dust_page_nobody(seed, what):
    # tuning seeds, 2 fps
    assert _alerts(TowerSpec("dust", seed, fps=2.0)) == [], what


def test_a_dust_veil_drifting_off_pages_nobody_at_ten_frames_a_second():
    # tuning seed 7002 at 10 fps: a veil whose pixels went back from the dust the background had learnt
    # towards the field behind paged as smoke at 14.4 s
    assert _alerts(TowerSpec("dust", 7002, fps=10.0, duration_s=15.0)) == []


@pytest.fixture
def brownish_smoke(monkeypatch):
    """Fires' smoke drawn a yellowish-brown grey (smouldering damp straw) instead of a neutral grey."""
    init = tower_scenes._Plume.__init__

    def tinted(self, rng, wind, colour, scale):
        if np.ndim(colour) == 0:  # (dust is drawn in its own B, G, R)
            colour = (0.86 * colour, 0.95 * colour, 1.05 * colour)
        init(self, rng, wind, colour, scale)
    monkeypatch.setattr(tower_scenes._Plume, "__init__", tinted)


@pytest.mark.parametrize(("kind", "seed"), [("fire", 1), ("smoke_shelterbelt", 1)])
def test_a_fire_with_brownish_smoke_still_pages_within_ten_seconds(brownish_smoke, kind, seed):
    found = _scored(TowerSpec(kind, seed, fps=2.0))
    assert found and all(on for _, _, on in found)
    assert found[0][0] - 8.0 <= 10.0


@pytest.mark.parametrize(("seed", "by_s"), [(7005, 10.0), (7002, 10.0), (7004, 12.5)])
def test_a_fire_in_wind_still_pages(seed, by_s):
    # tuning seeds: 7005's flame track leans and runs (judged a mover at times); 7002's grey smoke lies over
    # tan stubble alone (it paged at 13 s, not 5 s, while that was taken for dust); 7004's flames and smoke
    # brighten brown soil, whose lines traced back cross at a darker soil (paged at 15.5 s, not 12.5 s, while
    # that was taken for a dust veil going off)
    found = _scored(TowerSpec("fire_windy", seed, fps=2.0))
    assert found and all(on for _, _, on in found)
    assert found[0][0] - 8.0 <= by_s


@pytest.mark.parametrize(("kind", "seed", "what"), [
    ("foliage", 8001, "leaves the background learnt in a cloud's shadow, lit again at 12.5 s: paged at 16 s"),
    ("foliage", 8005, "the same, their red clipping as the ground brightened: paged at 17 s"),
    ("low_sun", 8008, "orange stubble under a low sun brightening as a faint shadow moved off: paged at 13.5 s"),
])
def test_a_patch_lit_again_as_a_cloud_shadow_moves_off_pages_nobody(kind, seed, what):
    # tuning seeds 8000–8019 (session 18), 2 fps: under a track in play the background does not learn, so a patch
    # it learnt in shadow reads as new light for as long as its track lives; lit as its ground is, it has none
    assert _alerts(TowerSpec(kind, seed, fps=2.0)) == [], what


@pytest.mark.parametrize(("kind", "seed", "by_s", "what"), [
    ("fire", 7003, 3.5, "its ground brightened by 0.06 (log) while its tongues filled a tenth of its box: on the box's "
                        "median its contrast rose by 0.02 only (paged at 4.0 s); its brightest tenth rose by 0.1"),
    ("fire_windy", 7007, 5.0, "its flames and smoke changed its ground by 0.10 while its tongues' contrast rose by "
                              "0.025: lost when a ground changed by 0.04 was asked"),
    ("night_fire", 7001, 5.0, "its first frames after ignition, a second before its track was born, counted as "
                              "its ground before it: paged at 7.5 s"),
    ("fire_low_sun", 7029, 9.0, "held-out seed, spent on this (session 18): its flame, under its own plume's smoke "
                                "track, was judged lit with its ground at 17.0 s and the fire never paged"),
])
def test_a_fire_whose_ground_its_light_changes_still_pages_at_once(kind, seed, by_s, what):
    # tuning seeds 7000–7008, 2 fps: the look-alike above must not be found where a young fire lights its own ground
    found = _scored(TowerSpec(kind, seed, fps=2.0, duration_s=8.0 + by_s + 0.5))
    assert found and found[0][2] and found[0][0] - 8.0 <= by_s, what


def test_a_burning_fire_goes_on_paging_when_its_light_changes_its_ground():
    # tuning fire 7005 at 2 fps: grown, its light and smoke changed the ground round a later small track of it by more
    # than 0.13 (log); with the boxes of its own live tracks counted as that ground, the track was taken for a patch lit
    # as its ground, rejected and learnt, and the fire paged last at 13.5 s, not at 23.5 s
    found = _scored(TowerSpec("fire", 7005, fps=2.0))
    assert max((t for t, _, on in found if on), default=0.0) >= 20.0
