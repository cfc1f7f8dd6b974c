"""What lost fires at 10 fps that 2 fps found (session 17; tuning low-sun fire 7000 probed frame by frame at 10 fps):

1. flicker read 0.00 on "boundary" pixels that only hovered at the colour rules' bounds (their red 1–3 grey levels
   apart between flame-coloured and other frames): no flame edge crossed them, so flicker was not measured at all,
   yet it vetoed every track. Only pixels a flame edge really crosses count; too few of them: not measurable, the
   track is judged as at 2 fps;
2. the plume's flank, the frame's largest blob, joined the *oldest* nearby track and dragged its box up, so it was
   judged a vehicle and the flames were scattered over new tracks: a flame blob joins the track covering it most;
3. a shrinking box read as a fast front (its edge ran *inward* at 4.6 m/s): only an outward edge is a front;
4. a track born in an exposure step is listed, not paged, unless it spreads or flickers.

Each was a chance per frame, so five times as likely per second at 10 fps as at 2 fps."""

from __future__ import annotations

import numpy as np

from analytics.fire import temporal
from analytics.fire.video import SceneModel, Track, VideoParams
from tests.fire.test_fire_cues import _burst

W, H = 1280, 720


def test_boundary_pixels_hovering_at_the_colour_bounds_measure_no_flicker():
    # a steady blob whose rim flips in and out of the colour rules by noise: its red 1–3 levels apart either way
    rng = np.random.default_rng(4)
    frames = 20
    red = np.full((frames, 12, 12), 90, np.int16)
    hot = np.zeros((frames, 12, 12), bool)
    red[:, 3:9, 3:9] = 126  # orange stubble at the rules' red bound (R > 125)
    red[:, 4:8, 4:8] = 250
    red = red + rng.integers(-2, 3, red.shape)
    hot[:, 3:9, 3:9] = red[:, 3:9, 3:9] > 125
    assert temporal.flame_band_energy(np.clip(red, 0, 255).astype(np.uint8), hot) is None


def test_a_flame_edge_crossing_its_pixels_is_still_measured():
    rng = np.random.default_rng(3)
    ring = np.zeros((12, 12), bool)
    ring[3:9, 3:9] = True
    ring[4:8, 4:8] = False
    flicker = np.stack([ring & (rng.random((12, 12)) < 0.5) for _ in range(20)])
    step = np.stack([ring if i >= 10 else np.zeros_like(ring) for i in range(20)])
    assert temporal.flame_band_energy(*_burst(flicker)) > 0.5
    assert temporal.flame_band_energy(*_burst(step)) < 0.1  # measured (an edge crossed them): no flicker


def _scene() -> SceneModel:
    scene = SceneModel(W, H, None, VideoParams())
    scene.started = scene.t = 0.0
    return scene


def test_a_flame_blob_joins_the_track_covering_it_most_not_the_oldest_near_it():
    scene = _scene()
    fire, flank = Track(1, "flame", 0.0), Track(2, "flame", 0.5)  # the fire's track, the oldest; a flank beside it
    fire.hits.extend([(0.0, (600, 400, 20, 20), 200), (0.5, (600, 400, 20, 20), 200)])
    flank.hits.append((0.5, (624, 380, 24, 16), 200))
    scene.tracks = [fire, flank]
    # the flank again, the largest blob first, then the fire's tongues: each to its own track
    scene._observe("flame", [((625, 379, 26, 18), 300), ((601, 401, 18, 19), 150)], 1.0)
    assert fire.last_box() == (601, 401, 18, 19)
    assert flank.last_box() == (625, 379, 26, 18)


def test_a_box_shrinking_is_no_fast_front():
    scene = _scene()
    ts = np.arange(0.0, 3.01, 0.1)
    left = 100 + 10.0 * ts  # the left edge runs inward at 10 px/s (0.5 box heights a second)
    boxes = np.stack([left, np.full_like(ts, 400), 160 - left, np.full_like(ts, 20)], axis=1)
    assert not scene._fast_edge(ts, boxes)
    growing = np.stack([100 - 10.0 * ts, np.full_like(ts, 400), 60 + 10.0 * ts, np.full_like(ts, 20)], axis=1)
    assert scene._fast_edge(ts, growing)  # the same edge running outward: too fast a front


def test_a_track_born_in_an_exposure_step_is_listed_unless_it_spreads_or_flickers(monkeypatch):
    scene = _scene()
    monkeypatch.setattr(SceneModel, "_light_like", lambda self, box, since=None: (0.0, 0.0))
    monkeypatch.setattr(SceneModel, "_ghost", lambda self, track, t: False)
    monkeypatch.setattr(SceneModel, "_dust", lambda self, *a: False)
    stepped, steady = Track(1, "flame", 10.0, stepped=True), Track(2, "flame", 10.0)
    for i in range(41):  # 20 s at 2 fps, neither growing nor moving: born 10 s after the model started
        t = 10.0 + 0.5 * i
        scene.looks.append(t)
        for track in (stepped, steady):
            track.hits.append((t, (600, 400, 12, 12), 100))
    t = 30.0
    assert scene._flame(steady, t, None, None) >= 0.5
    assert scene._flame(stepped, t, None, None) <= scene.p.unsettled_cap
    stepped.flicker = (t, 0.5)  # a burst saw it flicker
    assert scene._flame(stepped, t, None, None) >= 0.5


def test_a_flame_track_born_beside_a_mover_in_view_continues_it():
    # (tuning tractor 7003, 2 fps) a piece of the tractor beside its box, not near enough its last box to join it,
    # started a still flame track of its own, judged without the tractor's course: it paged at 13 s
    scene = _scene()
    tractor = Track(1, "flame", 0.0, mover=True)
    for i in range(20):  # 10 s at 2 fps, driving right at 4 px/s, its box jumping between its parts
        t = 0.5 * i
        tractor.hits.append((t, (332 + 2 * i, 416 if i % 2 else 408, 8, 6 if i % 2 else 12), 40))
    scene.tracks = [tractor]
    scene._observe("flame", [((370, 404, 3, 4), 8)], 10.0)  # above its box: not near its last box
    piece = scene.tracks[-1]
    assert piece is not tractor and piece.mover and piece.first_t == 0.0 and len(piece.hits) == 21
    scene._observe("flame", [((600, 300, 6, 6), 30)], 10.5)  # elsewhere: a track of its own
    assert scene.tracks[-1].first_t == 10.5 and not scene.tracks[-1].mover


def test_a_look_that_cannot_measure_flicker_leaves_the_last_measured_verdict_standing(monkeypatch):
    # (tuning low sun 7007, tractor 7002 at 10 fps) a glint's and a field's edges crossed enough pixels in some
    # frames to measure no flicker; the frames between, too few to measure, wiped that verdict out, and they paged
    scene = _scene()
    track = Track(1, "flame", 0.0)
    readings = iter([0.0, None, None])
    monkeypatch.setattr(SceneModel, "_bursting", lambda self, t: True)
    monkeypatch.setattr(SceneModel, "_flicker", lambda self, box: next(readings))
    monkeypatch.setattr(SceneModel, "_flame", lambda self, track, t, when, glint: None)
    monkeypatch.setattr(SceneModel, "_judged", lambda self, track, t: False)
    scene.tracks = [track]
    for t in (5.0, 5.1, 5.2):
        track.hits.append((t, (600, 400, 12, 12), 100))
        scene._decide(t, None)
    assert track.flicker == (5.0, 0.0)


def test_a_flame_track_born_while_a_cloud_shadow_leaves_it_is_stepped():
    # (tuning foliage 7007, 10 fps) orange leaves under a cloud's shadow for 11 s: when it left, the field around
    # brightened by 16 % in a second, the leaves were new light (colour and brightness) and paged at 20.8 s
    rng = np.random.default_rng(6)
    h, w = 360, 640
    field = np.empty((h, w, 3), np.float32)
    field[...] = (70, 110, 150)  # BGR: tan stubble
    field += rng.normal(0, 12, (h, w, 1))
    scene = SceneModel(w, h, 100.0, VideoParams())
    patches = {4.0: (100, 220), 10.0: (420, 220)}  # lit in steady light, and as the shadow leaves
    born = {}
    for i in range(int(12.5 * 2) + 1):  # 12.5 s at 2 fps
        t = i / 2
        frame = field.copy()
        shade = 0.75 if t < 9.5 else 0.88 if t < 10.0 else 1.0  # a shadow over the right third, leaving at 9.5–10 s
        frame[:, 380:] *= shade
        for lit, (x, y) in patches.items():
            if t >= lit:
                frame[y:y + 12, x:x + 12] = (40, 130, 235)
        scene.process(np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255).astype(np.uint8), t)
        for tr in scene.tracks:
            bx, by, bw, bh = tr.hits[0][1]
            for lit, (x, y) in patches.items():  # (the track born on the patch, not on the shadow's edge)
                if tr.cue == "flame" and bx < x + 12 and x < bx + bw and by < y + 12 and y < by + bh:
                    born.setdefault(lit, tr)
    assert not scene._in_step()  # the land's exposure as a whole did not step
    assert born[4.0].first_t >= 4.0 and born[4.0].stepped is False
    assert born[10.0].first_t >= 10.0 and born[10.0].stepped is True


def test_a_puff_of_smoke_over_two_fields_boundary_is_no_change_of_light_around():
    # (tuning windy fire 7004, 2 fps) half a second after ignition a puff of smoke over the boundary of dark soil and
    # tan stubble moved the *median level* of the ground around the fire's first blob by 0.05: it was born "stepped",
    # asked for periodicity over the whole ring (its own step up read as a line) and paged at 10.5 s, not 4.0 s
    scene = _scene()
    h, w = scene.wh, scene.ww
    before = np.empty((h, w, 3), np.uint8)
    before[...] = (40, 70, 90)  # dark soil
    before[:, 324:] = (120, 190, 225)  # tan stubble, just under half the ground around
    now = before.copy()
    now[200:240, 300:340] = (170, 170, 170)  # a puff of grey smoke over the boundary
    scene.slow.append((9.5, before[:, :, ::2].copy()))
    scene._small = now
    assert not scene._light_stepped((640, 440, 6, 8), 10.0)
    scene._small = (before * 1.2).clip(0, 255).astype(np.uint8)  # a shadow leaving: the light of all of it rises
    assert scene._light_stepped((640, 440, 6, 8), 10.0)
