"""The night map outlives the fire worker: learnt through the pipeline, kept in ``fire_night_map``, read back
by a new pipeline (a restarted worker); a damaged stored map is ignored, not trusted."""

from __future__ import annotations

import datetime as dt

import numpy as np

from alerts import fire as fire_alerts
from analytics.fire import nightstore, store
from analytics.fire.frames import Frame
from analytics.fire.nightmap import LIT_S, NightMap
from analytics.fire.pipeline import FirePipeline
from registry import service
from registry.changes import Actor
from registry.lookups import division_index
from tests.factories import pole_in, terminal_in

TOWER = (46.70, 126.80)
LAMP = (300, 200, 6, 6)
"""x, y, w, h of a yard lamp, in pixels of the 640×360 frames (the working size)."""


def _camera(conn) -> store.Camera:
    attrs = {"mast_height_m": 40.0, "heading_deg": 250.0, "tilt_deg": -2.0, "hfov_deg": 55.0}
    pole = service.create_pole(conn, pole_in("夜塔", at=(TOWER[1], TOWER[0]), department="sthjj"), Actor("test"))
    code = service.create_terminal(conn, terminal_in("夜塔可见光", "video_camera", at=None, pole=pole,
                                                     department="sthjj", attrs=attrs), Actor("test"))
    conn.commit()
    return store.cameras(conn)[code]


def _night(conn, pipeline: FirePipeline, camera: store.Camera, day: int, lit: bool, seconds: float = LIT_S + 60
           ) -> None:
    """Frames every 10 s from 21:00 in Suihua on night ``day``, the lamp lit or not."""
    image = np.full((360, 640, 3), 18, np.uint8)
    if lit:
        x, y, w, h = LAMP
        image[y:y + h, x:x + w] = (120, 200, 255)
    start = dt.datetime(2026, 10, 15 + day, 13, 0, tzinfo=dt.UTC)
    for s in range(0, int(seconds), 10):
        pipeline.handle(conn, camera, Frame("visible", image), None, start + dt.timedelta(seconds=s))
        conn.commit()


def _pipeline(conn) -> FirePipeline:
    return FirePipeline(fire_alerts, division_index(conn).locate)


def test_a_restarted_worker_still_knows_the_lights_of_past_nights(conn):
    camera = _camera(conn)
    first = _pipeline(conn)
    _night(conn, first, camera, 0, lit=True)
    _night(conn, first, camera, 1, lit=True)
    _night(conn, first, camera, 2, lit=False, seconds=20)  # the next night closes the second one
    assert first.video.nights[(camera.code, None)].known(LAMP)

    restarted = _pipeline(conn)
    assert (camera.code, None) not in restarted.video.nights
    _night(conn, restarted, camera, 2, lit=False, seconds=20)
    nights = restarted.video.nights[(camera.code, None)]
    assert nights.known(LAMP)
    assert not nights.known((100, 300, 6, 6))
    assert len(nights.history) == 2


def test_tonights_count_is_kept_too(conn):
    camera = _camera(conn)
    first = _pipeline(conn)
    _night(conn, first, camera, 0, lit=True, seconds=360)  # past SAVE_EVERY_S of night: written
    restarted = _pipeline(conn)
    _night(conn, restarted, camera, 0, lit=True, seconds=20)
    nights = restarted.video.nights[(camera.code, None)]
    assert nights.night == dt.date(2026, 10, 15) and nights.lit_s.max() >= 300


def test_a_damaged_stored_map_is_ignored_and_a_new_one_learnt(conn):
    camera = _camera(conn)
    lights = NightMap((360, 640), TOWER[1])
    nightstore.save(conn, camera.id, None, lights.state())
    conn.execute("update fire_night_map set nights = 3, lit_cells = '\\x00'::bytea")
    conn.commit()
    assert nightstore.load(conn, camera.id, None) is None
    restarted = _pipeline(conn)
    _night(conn, restarted, camera, 0, lit=True, seconds=20)
    assert len(restarted.video.nights[(camera.code, None)].history) == 0


def test_a_map_round_trips_bit_for_bit(conn):
    camera = _camera(conn)
    rng = np.random.default_rng(3)
    lights = NightMap((360, 640), TOWER[1])
    for _ in range(5):
        lights.history.append(rng.random(lights.lit_s.shape) > 0.7)
    lights.lit_s[:] = rng.random(lights.lit_s.shape).astype(np.float32) * 100
    lights.night = dt.date(2026, 10, 20)
    nightstore.save(conn, camera.id, 3, lights.state())
    nightstore.save(conn, camera.id, 3, lights.state())  # an update, not a second row
    back = nightstore.load(conn, camera.id, 3)
    assert back is not None and back.grid == lights.grid and back.night == lights.night
    assert np.array_equal(back.history, np.array(list(lights.history)))
    assert np.array_equal(back.lit_s, lights.lit_s)
    assert nightstore.load(conn, camera.id, None) is None  # another preset
    assert conn.execute("select count(*) from fire_night_map").fetchone()[0] == 1
