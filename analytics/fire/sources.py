"""Frames that do not come over MQTT: a camera's snapshot URL polled, or an RTSP stream or video file read
through OpenCV, sampled at a few frames per second (colour and smoke need no more; flicker aliases but
still shows, fire-detection.md §1.3)."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2

from analytics.fire.frames import Frame, FrameError, decode

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source that cannot be opened."""


def frames(uri: str, fps: float, stop: threading.Event) -> Iterator[tuple[Frame, float | None]]:
    """Frames from a snapshot URL (http/https, one JPEG per request) or anything OpenCV opens, each with
    its offset in seconds from the start of a video *file* (None for live sources, whose frames are
    stamped on arrival): a file is read faster than it was filmed, and the detector's windows are
    seconds of the film."""
    if uri.startswith(("http://", "https://")):
        yield from ((frame, None) for frame in _snapshots(uri, fps, stop))
    else:
        yield from _capture(uri, fps, stop)


def _snapshots(url: str, fps: float, stop: threading.Event) -> Iterator[Frame]:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                yield decode(response.read())
        except FrameError as exc:
            log.warning("snapshot %s: %s", url, exc)
        except OSError as exc:
            log.warning("snapshot %s unreachable: %s", url, exc)
        stop.wait(max(0.0, 1 / fps - (time.monotonic() - started)))


def _capture(uri: str, fps: float, stop: threading.Event) -> Iterator[tuple[Frame, float | None]]:
    is_file = Path(uri).exists()
    capture = cv2.VideoCapture(uri)
    if not capture.isOpened():
        raise SourceError(f"OpenCV cannot open {uri!r}")
    try:
        native = capture.get(cv2.CAP_PROP_FPS) or fps
        step = max(1, round(native / fps)) if is_file else 1
        index = 0
        while not stop.is_set():
            ok, image = capture.read()
            if not ok:
                if is_file:
                    return  # end of the file
                raise SourceError(f"stream {uri!r} ended")
            index += 1
            if (index - 1) % step == 0:
                yield Frame("visible", image), ((index - 1) / native if is_file else None)
                if not is_file:
                    stop.wait(1 / fps)
    finally:
        capture.release()
