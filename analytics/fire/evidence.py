"""The annotated picture kept with a detection: what the operator sees before sending someone out."""

from __future__ import annotations

import cv2
import numpy as np

from analytics.fire.frames import Frame
from analytics.fire.video import Candidate

_COLOURS = {"flame": (0, 0, 255), "smoke": (255, 160, 0), "hotspot": (0, 255, 255)}
MAX_WIDTH = 1280


def annotate(frame: Frame, candidates: list[Candidate], caption: str) -> bytes:
    """A JPEG of the frame with each candidate's box, cue and confidence, and a caption line."""
    image = _displayable(frame)
    for c in candidates:
        x, y, w, h = c.box
        colour = _COLOURS.get(c.cue, (255, 255, 255))
        cv2.rectangle(image, (x - 3, y - 3), (x + w + 3, y + h + 3), colour, 2)
        cv2.putText(image, f"{c.cue} {c.confidence:.2f}", (x, max(12, y - 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    colour, 1, cv2.LINE_AA)
    cv2.rectangle(image, (0, 0), (image.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(image, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    if image.shape[1] > MAX_WIDTH:
        image = cv2.resize(image, (MAX_WIDTH, image.shape[0] * MAX_WIDTH // image.shape[1]))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes() if ok else b""


def _displayable(frame: Frame) -> np.ndarray:
    if frame.kind == "visible":
        return frame.image.copy()
    k = frame.image
    low, high = np.percentile(k, 1), max(float(k.max()), float(np.percentile(k, 1)) + 1)
    scaled = np.clip((k - low) / (high - low) * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO)
