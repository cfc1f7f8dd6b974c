"""Synthetic tower-camera sequences, labelled: farmland under drifting clouds and changing light, straw
fires that grow, flicker and smoke, and the hard negatives that fool colour rules (fire-detection.md §1.6):
a sunset over straw, a red lorry crossing, a harvester's dust, lights at night.

Everything is drawn with OpenCV from a seed, so a sequence is the same on every machine. The fire's base
pixel can come from a camera pose and a ground point (``geometry.project``), so the demo towers show a
fire where it burns and the worker's position can be checked against the truth.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

POSITIVE = ("fire", "smoke", "night_fire")
NEGATIVE = ("clear", "sunset", "vehicle", "dust", "night")
KINDS = POSITIVE + NEGATIVE
MAST_M = 40.0


@dataclass(frozen=True)
class SceneSpec:
    kind: str
    seed: int
    frames: int = 40
    width: int = 1280
    height: int = 720
    horizon: float = 250.0
    fire_at: tuple[float, float] | None = None
    """Base pixel (u, v) of the fire; drawn at random below the horizon when None."""
    fire_px_per_m: float | None = None
    """Scale at the fire; from its row when None."""
    ignite: int = 6

    @property
    def has_fire(self) -> bool:
        return self.kind in POSITIVE


@dataclass(frozen=True)
class FrameLabel:
    index: int
    fire: bool
    box: tuple[int, int, int, int] | None
    """x, y, w, h around flame and smoke, full-resolution pixels."""


def render(spec: SceneSpec) -> Iterator[tuple[np.ndarray, FrameLabel]]:
    """The frames of a sequence with their labels."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown scene kind {spec.kind!r}; one of {', '.join(KINDS)}")
    rng = np.random.default_rng(spec.seed)
    scene = _Scene(spec, rng)
    for i in range(spec.frames):
        yield scene.frame(i)


class _Scene:
    def __init__(self, spec: SceneSpec, rng: np.random.Generator) -> None:
        self.s, self.rng = spec, rng
        w, h, hz = spec.width, spec.height, int(spec.horizon)
        self.night = spec.kind in ("night", "night_fire")
        self.land = _landscape(rng, w, h, hz, sunset=spec.kind == "sunset")
        self.clouds = _noise_field(rng, h, w * 2, 60.0, 0.55)
        self.shadows = _noise_field(rng, h, w * 2, 90.0, 0.5)
        self.wind = float(rng.uniform(-1.5, 1.5))
        self.phase = float(rng.uniform(0, 2 * math.pi))
        self.road_v = float(rng.uniform(hz + 60, h - 60))
        u = float(rng.uniform(0.15, 0.85) * w)
        v = float(rng.uniform(hz + 10, hz + 50) if spec.kind == "smoke" else rng.uniform(hz + 25, h - 40))
        self.fire_u, self.fire_v = spec.fire_at if spec.fire_at else (u, v)
        self.scale = spec.fire_px_per_m or (self.fire_v - hz) / MAST_M  # f / range, small angles
        self.smoke: list[list[float]] = []
        self.vehicle_x = float(rng.uniform(-200, -60))
        self.lamps = [(float(rng.uniform(0, w)), float(rng.uniform(hz + 5, hz + 60))) for _ in range(6)]

    def frame(self, i: int) -> tuple[np.ndarray, FrameLabel]:
        s = self.s
        img = self._sky_and_land(i)
        box = None
        if s.kind == "vehicle":
            self._vehicle(img, i)
        elif s.kind == "dust":
            self._harvester(img, i)
        elif self.night:
            self._lights(img, i)
        if s.has_fire and i >= s.ignite:
            box = self._fire(img, i - s.ignite)
        noise = self.rng.normal(0, 2.0, img.shape).astype(np.float32)
        out = np.clip(img + noise, 0, 255).astype(np.uint8)
        return out, FrameLabel(i, box is not None, box)

    def _sky_and_land(self, i: int) -> np.ndarray:
        s, hz = self.s, int(self.s.horizon)
        gain = 1.0 + 0.08 * math.sin(2 * math.pi * i / 50 + self.phase)
        if s.kind == "sunset":
            gain *= 1.0 - 0.25 * i / max(s.frames, 1)
        img = self.land * gain
        shift = int(i * 3) % s.width
        cloud = self.clouds[:hz, shift:shift + s.width]
        img[:hz] = img[:hz] * (1 - cloud[..., None] * 0.7) + cloud[..., None] * 0.7 * 235 * gain
        shade = 1.0 - 0.22 * self.shadows[hz:, shift:shift + s.width]
        img[hz:] *= shade[..., None]
        if self.night:
            img *= np.array([0.16, 0.12, 0.1], np.float32)
        return img

    def _fire(self, img: np.ndarray, age: int) -> tuple[int, int, int, int]:
        u, v, k = self.fire_u, self.fire_v, self.scale
        far = self.s.kind == "smoke"
        width_m = 0.5 if far else min(60.0, 4.0 * (1 + 0.25 * age))  # a fire line spreading over stubble
        flame = np.zeros(img.shape[:2], np.float32)
        colours = np.zeros(img.shape, np.float32)
        w = max(1.5, width_m * k)
        for _ in range(int(self.rng.integers(5, 10)) + int(w // 6)):
            cx = u + self.rng.uniform(-w / 2, w / 2)
            tall = max(2.0, k * self.rng.uniform(1.0, 3.5) * (0.4 if far else 1.0))
            axes = (max(1, int(w * self.rng.uniform(0.12, 0.3))), max(1, int(tall / 2)))
            centre = (int(cx), int(v - tall / 2))
            outer = (self.rng.uniform(10, 70), self.rng.uniform(120, 200), 255.0)
            cv2.ellipse(colours, centre, axes, 0, 0, 360, outer, -1)
            cv2.ellipse(flame, centre, axes, 0, 0, 360, 1.0, -1)
            core = (max(1, axes[0] // 2), max(1, axes[1] // 2))
            cv2.ellipse(colours, (centre[0], centre[1] + core[1] // 2), core, 0, 0, 360,
                        (self.rng.uniform(140, 220), self.rng.uniform(230, 255), 255.0), -1)
        flame = cv2.GaussianBlur(flame, (3, 3), 0)[..., None]
        img[:] = img * (1 - flame) + colours * flame
        reach = w / 2 + 0.3 * w  # tongue centres lie within ±w/2, their ellipses reach 0.3·w further
        x0, y0 = u - reach - 2, v - 4 * k - 2
        x1, y1 = u + reach + 2, v + 2
        if self.s.kind != "night_fire" or age > 4:
            sx0, sy0, sx1, sy1 = self._smoke(img, u, v - 2 * k, k, age)
            x0, y0, x1, y1 = min(x0, sx0), min(y0, sy0), max(x1, sx1), max(y1, sy1)
        return int(x0), int(y0), int(x1 - x0) + 1, int(y1 - y0) + 1

    def _smoke(self, img: np.ndarray, u: float, v: float, k: float, age: int) -> tuple[float, float, float, float]:
        """Grey puffs rising and spreading from the fire; returns their bounding box."""
        scale = max(k, 1.5)  # a plume is hundreds of metres tall; seen from afar it is still many pixels
        for _ in range(4):
            self.smoke.append([u + self.rng.uniform(-2, 2) * scale, v, 3.0 * scale, 0.8])
        layer = np.zeros(img.shape[:2], np.float32)
        for puff in self.smoke:
            puff[0] += self.wind * scale * 0.5 + self.rng.uniform(-0.5, 0.5)
            puff[1] -= self.rng.uniform(2.0, 4.0) * scale
            puff[2] += 0.6 * scale
            puff[3] *= 0.96
            cv2.circle(layer, (int(puff[0]), int(puff[1])), int(puff[2]), puff[3], -1)
        self.smoke = [p for p in self.smoke if p[3] > 0.08]
        layer = np.clip(cv2.GaussianBlur(layer, (0, 0), 3), 0, 0.75)[..., None]
        grey = 190.0 if not self.night else 60.0
        img[:] = img * (1 - layer) + grey * layer
        xs = [p[0] - p[2] for p in self.smoke] + [p[0] + p[2] for p in self.smoke]
        ys = [p[1] - p[2] for p in self.smoke]
        return min(xs), min(ys), max(xs), v

    def _vehicle(self, img: np.ndarray, i: int) -> None:
        x = self.vehicle_x + i * 14.0
        y = self.road_v
        body = (40.0, 90.0, 225.0)  # an orange-red lorry
        cv2.rectangle(img, (int(x), int(y - 22)), (int(x + 56), int(y)), body, -1)
        cv2.rectangle(img, (int(x + 56), int(y - 16)), (int(x + 72), int(y)), (30.0, 40.0, 200.0), -1)
        cv2.circle(img, (int(x + 2), int(y - 4)), 2, (60.0, 60.0, 255.0), -1)

    def _harvester(self, img: np.ndarray, i: int) -> None:
        x = self.s.width * 0.2 + i * 5.0
        y = self.road_v
        cv2.rectangle(img, (int(x), int(y - 26)), (int(x + 40), int(y)), (40.0, 70.0, 190.0), -1)
        for _ in range(4):
            self.smoke.append([x - self.rng.uniform(0, 20), y - self.rng.uniform(0, 18), 6.0, 0.5])
        layer = np.zeros(img.shape[:2], np.float32)
        for puff in self.smoke:
            puff[0] += self.rng.uniform(-1.5, 0.5)
            puff[1] -= self.rng.uniform(-0.3, 0.5)
            puff[2] += 0.8
            puff[3] *= 0.93
            cv2.circle(layer, (int(puff[0]), int(puff[1])), int(puff[2]), puff[3], -1)
        self.smoke = [p for p in self.smoke if p[3] > 0.08]
        layer = np.clip(cv2.GaussianBlur(layer, (0, 0), 4), 0, 0.7)[..., None]
        dust = np.array([120.0, 145.0, 170.0], np.float32)  # brownish: B < G < R
        img[:] = img * (1 - layer) + dust * layer

    def _lights(self, img: np.ndarray, i: int) -> None:
        for u, v in self.lamps:
            cv2.circle(img, (int(u), int(v)), 7, (60.0, 110.0, 150.0), -1)
            cv2.circle(img, (int(u), int(v)), 3, (170.0, 235.0, 255.0), -1)
        x = -100 + i * 18.0
        for dx in (0, 14):
            cv2.circle(img, (int(x + dx), int(self.road_v)), 3, (210.0, 245.0, 255.0), -1)


def _landscape(rng: np.random.Generator, w: int, h: int, hz: int, sunset: bool) -> np.ndarray:
    """Sky gradient, a tree line, fields in perspective, a road, texture; float32 BGR."""
    img = np.zeros((h, w, 3), np.float32)
    t = np.linspace(0, 1, hz, dtype=np.float32)[:, None]
    top, low = ((150, 90, 120), (70, 150, 250)) if sunset else ((215, 160, 110), (235, 215, 200))
    for c in range(3):
        img[:hz, :, c] = top[c] * (1 - t) + low[c] * t
    if sunset:
        cv2.circle(img, (int(rng.uniform(0.2, 0.8) * w), hz - 6), 22, (140, 235, 255), -1)
    crops = [(95, 165, 200), (60, 95, 130), (45, 60, 80), (70, 120, 95), (110, 175, 210)]
    vx = rng.uniform(0.3, 0.7) * w
    img[hz:] = crops[0]
    edges = np.concatenate([[-40 * w], np.sort(rng.uniform(-2 * w, 3 * w, 12)), [40 * w]])
    for a, b in itertools.pairwise(edges):
        colour = np.array(crops[int(rng.integers(len(crops)))], np.float32)
        if sunset:
            colour = colour * np.array([0.65, 0.8, 1.1], np.float32)
        pts = np.array([[vx, hz], [a, h], [b, h]], np.int32)
        cv2.fillPoly(img, [pts], colour.tolist())
    road = np.array([[vx - 2, hz], [vx + 2, hz], [vx + 0.35 * w, h], [vx + 0.25 * w, h]], np.int32)
    cv2.fillPoly(img, [road], (115, 118, 120))
    texture = cv2.GaussianBlur(rng.normal(0, 14, (h, w)).astype(np.float32), (0, 0), 1.2)
    img[hz:] += texture[hz:, :, None]
    for x in range(0, w, 9):
        height = int(rng.integers(3, 14))
        cv2.ellipse(img, (x, hz), (int(rng.integers(5, 10)), height), 0, 180, 360, (40, 70, 45), -1)
    return np.clip(img, 0, 255)


def _noise_field(rng: np.random.Generator, h: int, w: int, sigma: float, cut: float) -> np.ndarray:
    """Soft blobs in [0, 1]: clouds in the sky, their shadows on the land."""
    small = rng.random((max(2, h // 8), max(2, w // 8))).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 8)
    small = (small - small.min()) / max(float(np.ptp(small)), 1e-6)
    field = cv2.resize(np.clip((small - cut) / (1 - cut), 0, 1), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0, 1)
