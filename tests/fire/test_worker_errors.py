"""One camera whose frames make detection fail stops no other camera of the worker's shard: the failure is
logged with the camera and counted, and the next frames are judged."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import paho.mqtt.client as paho

from analytics.fire.frames import Frame
from analytics.fire.worker import FireConfig, FireWorker, _Item
from devices.topics import PREFIX, Channel
from registry import service
from registry.changes import Actor
from tests.factories import pole_in, terminal_in


class _Pipeline:
    """Fails on the frames of one camera, as a scene model that cannot take them would."""

    def __init__(self, broken: str) -> None:
        self.broken, self.judged = broken, []

    def handle(self, conn, camera, frame, preset, captured_at) -> list[int]:
        conn.execute("select 1")
        if camera.code == self.broken:
            raise ValueError("operands could not be broadcast together")
        self.judged.append(camera.code)
        return []


def _camera(conn, name: str) -> str:
    pole = service.create_pole(conn, pole_in(f"{name}塔", department="sthjj"), Actor("test"))
    code = service.create_terminal(conn, terminal_in(f"{name}可见光", "video_camera", at=None, pole=pole,
                                                     department="sthjj"), Actor("test"))
    conn.commit()
    return code


def test_a_camera_whose_frames_fail_is_logged_and_counted_and_the_others_go_on(conn, db_url, caplog):
    broken, healthy = _camera(conn, "甲"), _camera(conn, "乙")
    worker = FireWorker(FireConfig(db_url, "127.0.0.1", 1), sink=None)
    pipeline = _Pipeline(broken)
    frame = Frame("visible", np.zeros((72, 128, 3), np.uint8))
    now = dt.datetime.now(dt.UTC)
    with caplog.at_level(logging.ERROR, logger="analytics.fire.worker"):
        for code in (broken, healthy, broken, healthy):
            worker._handle(conn, pipeline, _Item("t", code, frame, None, now))
    assert pipeline.judged == [healthy, healthy]
    assert worker.counters["camera errors"] == 2 and worker.counters["frames"] == 2
    assert sum(broken in r.getMessage() for r in caplog.records) == 2


def test_a_frame_without_a_capture_time_is_stamped_when_it_arrives_not_when_it_is_taken_off_the_queue():
    # review: frames queued behind a slow one were stamped at dequeue, a 2 fps backlog became a fake burst
    worker = FireWorker(FireConfig("postgresql://unused", "127.0.0.1", 1), sink=None)
    message = paho.MQTTMessage(topic=f"{PREFIX}/CAM1/{Channel.frame}".encode())
    message.payload = b"jpeg"
    before = dt.datetime.now(dt.UTC)
    worker._on_message(None, None, message)
    item = worker._queue.get_nowait()
    assert before <= item.captured_at <= dt.datetime.now(dt.UTC)
