"""Extra candidate crops for training the fire verifier: real crops shrunk to tower range, and crops from
the simulator's tower renderings.

A photograph's fire fills the picture; a straw fire seen from a mast 1–4 km away is 8–40 px across,
re-encoded at the camera's JPEG quality. A verifier that has only seen close-ups scores such a flame near
0 and would veto it, so every real training crop is also shown at tower range (its surround resampled so
the box's longer side is 8–40 px, then JPEG-encoded at quality 45–80), keeping its label. The simulator's
tower sequences (``simulators.tower_scenes`` and ``simulators.scenes``, tuning seeds only: the tower
benchmark's held-out seeds are never rendered here) add far flames, lamps, beacons, vehicles, dust and
low sun as the video detector and the colour stage see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from analytics.fire.colour import flame_mask, land_means
from analytics.fire.verifier_features import candidate_boxes, patch

TOWER_SIDE_PX = (8.0, 40.0)
"""Range of a shrunk crop's longer side."""
TOWER_JPEG = (45, 81)
SIM_SEEDS = (0, 1, 2)
"""Inside ``tower_scenes.TUNING_SEEDS`` (0–9); ``simulators.scenes`` benchmarks from seed 100, tests use 11–22."""
SIM_FPS = 2.0
SIM_EVERY = 3
"""On every third frame, the box of the flame-coloured pixels inside the labelled fire (burning frames) or
the colour stage's candidates (look-alike sequences and frames before ignition) are added."""


def shrunk(image: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray | None:
    """The patch of ``box`` seen at tower range, or None when the box is already that small. The box and
    twice its size around it are resampled (area averaging), JPEG round-tripped, then cut as any patch."""
    x, y, w, h = box
    factor = rng.uniform(*TOWER_SIDE_PX) / max(w, h)
    if factor >= 1:
        return None
    fh, fw = image.shape[:2]
    x0, y0 = max(0, x - 2 * w), max(0, y - 2 * h)
    x1, y1 = min(fw, x + 3 * w), min(fh, y + 3 * h)
    size = (max(4, round((x1 - x0) * factor)), max(4, round((y1 - y0) * factor)))
    region = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    quality = int(rng.integers(*TOWER_JPEG))
    region = cv2.imdecode(cv2.imencode(".jpg", region, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    small = (round((x - x0) * factor), round((y - y0) * factor), max(1, round(w * factor)), max(1, round(h * factor)))
    return patch(region, small)


@dataclass(frozen=True)
class SimCrop:
    sequence: str
    patch: np.ndarray
    fire: bool


def simulator_crops(seeds: tuple[int, ...] = SIM_SEEDS) -> Iterator[SimCrop]:
    """The video detector's flame candidates on the simulators' sequences (the boxes the pipeline asks the
    verifier about), plus on every ``SIM_EVERY``-th frame the flame-coloured part of a burning fire's box,
    or the colour stage's candidates where nothing burns (warm fields, lamps, vehicles the detector
    already rejects). Smoke-only scenes are left out: the verifier judges flames. A candidate is fire when
    its frame is burning and it touches the labelled fire box."""
    from simulators import scenes, tower_scenes

    for seed in seeds:
        for kind in tower_scenes.KINDS:
            if kind == "smoke_shelterbelt":
                continue
            spec = tower_scenes.TowerSpec(kind, seed, fps=SIM_FPS)
            detect = _detector(spec.horizon, spec.at, tower_scenes.POSE)
            yield from _sequence(f"tower:{kind}:{seed}", tower_scenes.render(spec), spec.horizon, detect,
                                 spec.has_fire)
        for kind in scenes.KINDS:
            if kind == "smoke":
                continue
            spec = scenes.SceneSpec(kind, seed)
            detect = _detector(spec.horizon, lambda i: None, None)
            yield from _sequence(f"scene:{kind}:{seed}", scenes.render(spec), spec.horizon, detect, spec.has_fire)


def _detector(horizon: float, at, pose):
    from analytics.fire.video import VideoDetector

    detector = VideoDetector()
    return lambda image, label: [c.box for c in detector.process(
        "sim", None, image, horizon, at=at(getattr(label, "t", label.index)), pose=pose) if c.cue == "flame"]


def _sequence(name: str, frames, horizon: float, detect, has_fire: bool) -> Iterator[SimCrop]:
    for i, (image, label) in enumerate(frames):
        boxes = detect(image, label)
        means = land_means(image[int(horizon):])
        if i % SIM_EVERY == 0:
            boxes += _flame_box(image, label.box, means) if has_fire and label.fire else candidate_boxes(
                image, means=means)
        for box in boxes:
            fire = bool(label.fire and label.box is not None and _touch(box, label.box))
            yield SimCrop(name, patch(image, box), fire)


def _flame_box(image: np.ndarray, box: tuple[int, int, int, int] | None, means: tuple[float, float, float]
               ) -> list[tuple[int, int, int, int]]:
    """The bounding box of the flame-coloured pixels inside a labelled fire box (which also holds smoke)."""
    if box is None:
        return []
    x, y, w, h = (max(0, v) for v in box)
    ys, xs = np.nonzero(flame_mask(image[y:y + h, x:x + w], means))
    if xs.size < 4:
        return []
    return [(x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1)]


def _touch(a: tuple, b: tuple, grow: int = 4) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax - grow < bx + bw and bx - grow < ax + aw and ay - grow < by + bh and by - grow < ay + ah
