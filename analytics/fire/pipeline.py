"""One frame in, fire detections and events out: detector → sighting → detection row with its evidence
picture → fusion → alert. Used by the MQTT worker, the OpenCV sources and the benchmarks alike."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import psycopg

from analytics.fire import evidence, fusion, geometry
from analytics.fire.frames import Frame
from analytics.fire.nightstore import NightMaps
from analytics.fire.store import Camera, Detection, insert_detection, save_evidence, touch_detection
from analytics.fire.thermal import ThermalDetector
from analytics.fire.verifier import Verifier
from analytics.fire.video import Candidate, VideoDetector

TOUCH_EVERY_S = 5.0
"""A confirmed track updates its row at most this often."""
FORGET_AFTER_S = 600.0
VERIFY_FROM_PX, VERIFY_FULL_PX = 16, 48
"""The learned verifier is not asked about a flame box whose longer side is under VERIFY_FROM_PX (a far fire
is a few pixels of colour; the crop says little), and has its full say from VERIFY_FULL_PX up."""
VERIFY_FLOOR = 0.5
"""A flame the verifier scores 0 keeps this share of its confidence: a look-alike close enough to be judged
drops below the alert threshold on one tower alone (0.97 × 0.5 < 0.5) but is still recorded."""


class FireSink(Protocol):
    """Where fire events go (``alerts.fire``, wired in by the composition package)."""

    def fire_event(self, conn: psycopg.Connection, event_id: int) -> int | None: ...

    def fire_closed(self, conn: psycopg.Connection, event_id: int) -> None: ...


@dataclass
class _Known:
    detection_id: int
    confidence: float
    touched: float


class FirePipeline:
    def __init__(self, sink: FireSink, locate: fusion.Locate) -> None:
        self.sink, self.locate = sink, locate
        self.video = VideoDetector()
        self.nights = NightMaps(self.video)
        """The night maps, kept in the database across restarts."""
        self.thermal = ThermalDetector()
        self.verifier = Verifier.load()
        self.instance = uuid.uuid4().hex[:8]
        """Track keys are unique to this process, so a restarted worker never extends another's rows."""
        self._known: dict[tuple[str, int | None, int], _Known] = {}

    def detect(self, camera: Camera, frame: Frame, preset: int | None, at: dt.datetime | None = None
               ) -> list[Candidate]:
        """``at``: the frame's capture time; the video detector's windows are in seconds of it, and the
        sun's place and the night come from it and the pose."""
        if frame.kind == "thermal":
            return self.thermal.process(camera.code, preset, frame.image)
        pose = camera.pose(preset)
        width, height = frame.size
        horizon = geometry.horizon_row(pose, width, height) if pose else None
        found = self.video.process(camera.code, preset, frame.image, horizon, at=at, pose=pose)
        return weigh(self.verifier, frame.image, found)

    def handle(self, conn: psycopg.Connection, camera: Camera, frame: Frame, preset: int | None,
               captured_at: dt.datetime) -> list[int]:
        """Detect on one frame and record what is confirmed; returns the ids of the events touched."""
        events = []
        mapped = frame.kind != "thermal" and camera.pose(preset) is not None
        if mapped:
            self.nights.before(conn, camera.id, camera.code, preset, camera.lon)
        for candidate in self.detect(camera, frame, preset, captured_at):
            event_id = self._record(conn, camera, frame, preset, captured_at, candidate)
            if event_id is not None:
                events.append(event_id)
        if mapped:
            self.nights.after(conn, camera.id, camera.code, preset)
        self._forget()
        return events

    def _record(self, conn: psycopg.Connection, camera: Camera, frame: Frame, preset: int | None,
                at: dt.datetime, c: Candidate) -> int | None:
        key = (camera.code, preset, c.track)
        known = self._known.get(key)
        source = "thermal" if frame.kind == "thermal" else "camera"
        track = f"{self.instance}:{camera.code}:{preset}:{c.track}"
        now = time.monotonic()
        if known is None:
            with conn.transaction():
                detection_id = insert_detection(conn, self._detection(camera, frame, preset, at, c, source, track))
                save_evidence(conn, detection_id, at, evidence.annotate(frame, [c], _caption(camera, preset, at)))
                event_id = fusion.attach(conn, detection_id, self.locate)
                self.sink.fire_event(conn, event_id)
            self._known[key] = _Known(detection_id, c.confidence, now)
            return event_id
        stronger = c.confidence >= known.confidence + 0.1
        if now - known.touched < TOUCH_EVERY_S and not stronger:
            return None
        with conn.transaction():
            event_id = touch_detection(conn, source, track, at, c.confidence, c.box)
            if stronger:
                save_evidence(conn, known.detection_id, at, evidence.annotate(frame, [c], _caption(camera, preset, at)))
            if event_id is not None:
                fusion.recompute(conn, event_id, self.locate)
                self.sink.fire_event(conn, event_id)
        known.touched, known.confidence = now, max(known.confidence, c.confidence)
        return event_id

    def _detection(self, camera: Camera, frame: Frame, preset: int | None, at: dt.datetime, c: Candidate,
                   source: str, track: str) -> Detection:
        return sighted(camera, frame.size, preset, at, c, source, track, self.locate)

    def _forget(self) -> None:
        if len(self._known) < 1000:
            return
        cutoff = time.monotonic() - FORGET_AFTER_S
        self._known = {k: v for k, v in self._known.items() if v.touched >= cutoff}


def sighted(camera: Camera, size: tuple[int, int], preset: int | None, at: dt.datetime, c: Candidate, source: str,
            track: str, locate: fusion.Locate) -> Detection:
    """The detection a camera's candidate becomes: its bearing, and its ground point when the pose gives one."""
    width, height = size
    pose = camera.pose(preset)
    d = Detection(source=source, cue=c.cue, track=track, first_seen=at, last_seen=at, confidence=c.confidence,
                  position="unknown", terminal_id=camera.id, preset=preset, box=c.box, frame_size=(width, height),
                  camera_lat=camera.lat, camera_lon=camera.lon, division_code=camera.division)
    if pose is None:
        return d
    s = geometry.sight(pose, width, height, c.box)
    d.bearing_deg, d.halfwidth_deg, d.position = round(s.bearing_deg, 3), round(s.halfwidth_deg, 3), "bearing"
    if s.lat is not None:
        d.lat, d.lon, d.accuracy_m, d.position = s.lat, s.lon, round(s.accuracy_m, 1), "ground"
        d.division_code = locate(s.lon, s.lat) or camera.division
    return d


def weigh(verifier: Verifier, image: np.ndarray, found: list[Candidate]) -> list[Candidate]:
    """The learned verifier as a confidence term on flame candidates (not a veto): a box scoring at or above
    the model's threshold keeps its confidence; below it, confidence falls towards ``VERIFY_FLOOR`` of
    itself, in proportion to the shortfall and to how much the box's size lets the verifier judge."""
    judged = [c for c in found if c.cue == "flame" and max(c.box[2], c.box[3]) >= VERIFY_FROM_PX]
    if not judged:
        return found
    scores = dict(zip((c.track for c in judged), verifier.score(image, [c.box for c in judged]), strict=True))
    out = []
    for c in found:
        if c.track not in scores:
            out.append(c)
            continue
        say = min(1.0, (max(c.box[2], c.box[3]) - VERIFY_FROM_PX) / (VERIFY_FULL_PX - VERIFY_FROM_PX))
        shortfall = max(0.0, 1.0 - scores[c.track] / verifier.card.threshold)
        out.append(replace(c, confidence=round(c.confidence * (1 - say * (1 - VERIFY_FLOOR) * shortfall), 3)))
    return out


def _caption(camera: Camera, preset: int | None, at: dt.datetime) -> str:
    return f"{camera.code}  preset {preset if preset is not None else '-'}  {at:%Y-%m-%d %H:%M:%S} UTC"
