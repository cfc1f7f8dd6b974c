"""What a camera sends on ``ganzhi/v1/{code}/frame``, decoded: a JPEG (or 8-bit PNG) picture, or a
radiometric thermal array (16-bit PNG or .npy). The payload's first bytes say which; nothing else does."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np

MIN_SIDE, MAX_SIDE = 64, 4096
MIN_K, MAX_K = 200.0, 2000.0


class FrameError(ValueError):
    """A payload that is not a usable frame; the message says why."""


@dataclass(frozen=True)
class Frame:
    kind: str
    """visible (BGR uint8) or thermal (kelvin, float32)."""
    image: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def decode(payload: bytes) -> Frame:
    if payload[:3] == b"\xff\xd8\xff":
        return _checked(_visible(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR), "JPEG"))
    if payload[:8] == b"\x89PNG\r\n\x1a\n":
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is not None and image.dtype == np.uint16 and image.ndim == 2:
            return _checked(Frame("thermal", image.astype(np.float32) / 100))
        return _checked(_visible(image if image is None or image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                                 "PNG"))
    if payload[:6] == b"\x93NUMPY":
        return _checked(Frame("thermal", _array(payload)))
    raise FrameError(f"not a JPEG, PNG or .npy frame (starts with {payload[:8].hex() or 'nothing'})")


def encode_thermal(kelvin: np.ndarray) -> bytes:
    """A radiometric frame as a 16-bit PNG in centikelvin, the contract's thermal format."""
    ok, data = cv2.imencode(".png", np.clip(kelvin * 100, 0, 65535).astype(np.uint16))
    if not ok:
        raise FrameError("could not encode the thermal frame")
    return data.tobytes()


def _visible(image: np.ndarray | None, what: str) -> Frame:
    if image is None:
        raise FrameError(f"corrupt {what}: OpenCV could not decode it")
    if image.dtype != np.uint8:
        raise FrameError(f"a {image.dtype} colour {what} is neither an 8-bit picture nor a 1-channel thermal frame")
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return Frame("visible", image)


def _array(payload: bytes) -> np.ndarray:
    """uint16 arrays are centikelvin, float arrays degrees Celsius."""
    try:
        array = np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FrameError(f"corrupt .npy frame: {exc}") from exc
    if array.ndim != 2:
        raise FrameError(f"a thermal frame is a 2-D array, got shape {array.shape}")
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 100
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32) + 273.15
    raise FrameError(f"a thermal .npy frame is uint16 centikelvin or float °C, got {array.dtype}")


def _checked(frame: Frame) -> Frame:
    width, height = frame.size
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise FrameError(f"frame size {width}×{height} is outside {MIN_SIDE}–{MAX_SIDE} pixels a side")
    if frame.kind == "thermal":
        low, high = float(np.nanmin(frame.image)), float(np.nanmax(frame.image))
        if not (low >= MIN_K and high <= MAX_K) or np.isnan(frame.image).any():
            raise FrameError(f"thermal values {low:.1f}–{high:.1f} K are not temperatures ({MIN_K:.0f}–{MAX_K:.0f} K)")
    return frame
