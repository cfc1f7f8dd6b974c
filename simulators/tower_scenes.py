"""Harsher tower-camera sequences for the fire benchmark, rendered in continuous time.

Unlike ``simulators.scenes`` (flames drawn anew each frame, a still camera, no compression), every
sequence here is a function of time in seconds, sampled at whatever frame rate is asked for, and goes
through what a tower's camera does to a picture:

- the mast sways (a smooth sum of sines, 0.3–2 px at 1280×720) and the picture is resampled sub-pixel;
- auto-exposure drifts and steps; sensor noise; the frame is JPEG-encoded at tower quality (45–80) and
  decoded again, as the worker receives it;
- flames keep their shape: a fire line of tongues fixed on the ground, each flickering with a sum of
  1.5–11 Hz components (so a low frame rate aliases them as a real camera does), the line spreading;
  smoke is puffs emitted at fixed times and advected analytically, so it is the same smoke at any rate.

Look-alikes (never a fire): a static sodium lamp at night, an amber rotating beacon, a lamp flickering
with the mains, a slow red tractor, a walker in an orange jacket, harvester dust, a low sun glinting on
wet stubble, autumn foliage under moving cloud shadows. Fires: near, far, at night, at low sun, in a
strong wind (more sway), and smoke rising behind a shelterbelt under a grey sky (no flame in view).

Every scene can also be seen from a second tower (``TowerSpec.tower = 1``, pose from ``tower_pose``): the
same fire or look-alike at the same ground point, from a mast 0.8–1.25 times as far away whose bearing
crosses the first tower's at 40–110°, turned so the subject lies anywhere in the middle 60 % of its view,
with its own sway, exposure, JPEG quality and cloud shadows (the fields and tree line are the first tower's;
a mover crosses the second view at its ground speed). The low sun and the foliage have no ground point: the
second tower looks at the middle of the first one's view, 1.5 km out.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from analytics.fire import geometry as geo
from analytics.fire.geometry import Pose, angle_diff, focal_px, horizon_row
from analytics.fire.sun import position

POSITIVE = ("fire", "fire_far", "night_fire", "fire_low_sun", "fire_windy", "smoke_shelterbelt")
NEGATIVE = ("sodium_lamp", "beacon", "mains_lamp", "tractor", "walker", "dust", "low_sun", "foliage")
KINDS = POSITIVE + NEGATIVE
NIGHT = ("night_fire", "sodium_lamp", "beacon", "mains_lamp")
LOW_SUN = ("low_sun", "fire_low_sun")
UNPLACED = ("low_sun", "foliage")
"""Look-alikes with no ground point of their own (the sun; leaves all over the view)."""
TUNING_SEEDS = range(0, 10)
"""Seeds the detector may be tuned on; the benchmark reports seeds from HELD_OUT_FROM up."""
HELD_OUT_FROM = 1000
BURST_S, BURST_FPS = 2.0, 10.0
POSE = Pose(lat=46.70, lon=126.80, mast_height_m=40.0, heading_deg=250.0, tilt_deg=-2.0, hfov_deg=55.0)
CROSSING_DEG = (40.0, 110.0)
"""The angle at which the second tower's bearing to the subject crosses the first's."""


@dataclass(frozen=True)
class TowerSpec:
    kind: str
    seed: int
    fps: float = 2.0
    duration_s: float = 24.0
    ignite_s: float = 8.0
    width: int = 1280
    height: int = 720

    @property
    def has_fire(self) -> bool:
        return self.kind in POSITIVE

    @property
    def horizon(self) -> float:
        return horizon_row(POSE, self.width, self.height)

    burst_every_s: float = 0.0
    """When set, the camera also sends a BURST_S burst at BURST_FPS this often (docs/devices.md)."""
    tower: int = 0
    """0: the scene's first tower (``POSE``); 1: a second tower seeing the same subject (``tower_pose``)."""

    @property
    def pose(self) -> Pose:
        return tower_pose(self)

    @property
    def frames(self) -> int:
        return len(self.times())

    def times(self) -> list[float]:
        """Capture times in seconds: every 1/fps, plus the bursts' frames."""
        times = {round(i / self.fps, 4) for i in range(int(self.duration_s * self.fps))}
        if self.burst_every_s > 0:
            start = 0.0
            while start < self.duration_s:
                times |= {round(start + j / BURST_FPS, 4) for j in range(int(BURST_S * BURST_FPS))
                          if start + j / BURST_FPS < self.duration_s}
                start += self.burst_every_s
        return sorted(times)

    @property
    def start(self) -> dt.datetime:
        """When the sequence starts (UTC; Suihua is UTC+8), mid-October of the autumn ban: late morning,
        night, or a low sun ahead of the camera (heading 250°) for the low-sun kinds."""
        day = dt.datetime(2026, 10, 15, tzinfo=dt.UTC) + dt.timedelta(days=self.seed % 20)
        if self.kind in NIGHT:
            return day + dt.timedelta(hours=14, minutes=self.seed % 50)
        if self.kind in LOW_SUN:
            return day + dt.timedelta(hours=7, minutes=45 + self.seed % 30)
        return day + dt.timedelta(hours=3, minutes=self.seed % 50)

    def at(self, t: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=t)


@dataclass(frozen=True)
class TowerLabel:
    index: int
    t: float
    """Seconds from the start of the sequence."""
    fire: bool
    box: tuple[int, int, int, int] | None
    """x, y, w, h around flame and smoke in the delivered (swayed) frame."""


@functools.lru_cache(maxsize=64)
def tower_pose(spec: TowerSpec) -> Pose:
    """The pose of the scene's tower ``spec.tower`` (the second one is placed by the subject's ground point)."""
    return POSE if spec.tower == 0 else _Tower(spec).pose


def render(spec: TowerSpec) -> Iterator[tuple[np.ndarray, TowerLabel]]:
    """The sequence's frames (BGR uint8, JPEG round-tripped) with their labels."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown scene kind {spec.kind!r}; one of {', '.join(KINDS)}")
    if not 1 <= spec.fps <= 25:
        raise ValueError(f"frame rate {spec.fps} is outside 1–25 fps")
    scene = _Tower(spec)
    for i, t in enumerate(spec.times()):
        yield scene.frame(i, t)


class _Tower:
    def __init__(self, spec: TowerSpec) -> None:
        self.s = spec
        self.rng = np.random.default_rng([spec.seed, KINDS.index(spec.kind)])
        rng = self.rng
        self.f = focal_px(POSE, spec.width)
        self.hz = spec.horizon
        self.pose: Pose | None = POSE if spec.tower == 0 else None
        """The second tower's pose is set by ``site`` once the subject is placed."""
        self.night = spec.kind in NIGHT
        self.sway = _Sway(rng, 2.5 if spec.kind == "fire_windy" else float(rng.uniform(0.6, 2.0)))
        self.exposure = _Exposure(rng)
        self.quality = int(rng.integers(45, 81))
        self.clock = 1 + float(rng.uniform(-0.003, 0.003))
        """The camera's clock is a little off the mains: 100 Hz flicker beats slowly, as in real video."""
        self.base = _landscape(rng, spec, grey_sky=spec.kind == "smoke_shelterbelt",
                               low_sun=spec.kind in ("low_sun", "fire_low_sun"), autumn=spec.kind == "foliage")
        w, h = spec.width, spec.height
        self.shadows = _noise_field(rng, h, 2 * w, 70.0, 0.45)
        self.shadow_depth = 0.4 if spec.kind == "foliage" else 0.18
        self.shadow_speed = float(rng.uniform(25, 45) if spec.kind == "foliage" else rng.uniform(6, 15))
        self.shadow_start = 0.0
        """Where in the (twice as wide) cloud-shadow field the view starts: the second tower sees other clouds,
        and none wraps around within the sequence (a seam would be a hard shadow edge)."""
        self.noise = [rng.normal(0, 5.0 if self.night else 2.0, (h, w)).astype(np.float32) for _ in range(3)]
        if spec.kind in UNPLACED:
            self.site(spec.width / 2, 1500.0)  # nothing on the ground to look at: the middle of the first view
        self.actor = _actor(spec, rng, self)
        self.fire = _Fire(spec, rng, self) if spec.has_fire else None
        if spec.tower == 1:
            self._own_camera(np.random.default_rng([spec.seed, KINDS.index(spec.kind), 1]))

    def site(self, u: float, range_m: float) -> tuple[float, float]:
        """Where a subject drawn at column ``u``, ``range_m`` away in the first tower's view lies in this
        tower's: (column, range). The first call places the second tower."""
        if self.s.tower == 0:
            return u, range_m
        seen = geo.bearing(POSE, self.s.width, self.s.height, u, self.range_row(range_m))
        lat, lon = geo.destination(POSE.lat, POSE.lon, seen, range_m)
        if self.pose is None:
            self.pose = self._second_pose(lat, lon, range_m)
        ahead = angle_diff(geo.bearing_to(self.pose.lat, self.pose.lon, lat, lon), self.pose.heading_deg)
        return (self.s.width / 2 + self.f * math.tan(math.radians(ahead)),
                geo.distance_m(self.pose.lat, self.pose.lon, lat, lon))

    def _second_pose(self, lat: float, lon: float, range_m: float) -> Pose:
        rng = np.random.default_rng([self.s.seed, KINDS.index(self.s.kind), 2])
        seen_a = geo.bearing_to(POSE.lat, POSE.lon, lat, lon)
        seen_b = seen_a + float(rng.choice([-1, 1]) * rng.uniform(*CROSSING_DEG))
        mast = geo.destination(lat, lon, (seen_b + 180.0) % 360, range_m * float(rng.uniform(0.8, 1.25)))
        column = float(rng.uniform(0.2, 0.8) * self.s.width)
        heading = seen_b - math.degrees(math.atan((column - self.s.width / 2) / self.f))
        return Pose(mast[0], mast[1], POSE.mast_height_m, heading % 360, POSE.tilt_deg, POSE.hfov_deg)

    def _own_camera(self, rng: np.random.Generator) -> None:
        """The second tower's own mast, exposure, encoder and cloud shadows."""
        self.sway = _Sway(rng, self.sway.a)
        self.exposure = _Exposure(rng)
        self.quality = int(rng.integers(45, 81))
        self.clock = 1 + float(rng.uniform(-0.003, 0.003))
        self.shadow_start = float(rng.uniform(0, max(1.0, self.s.width - self.shadow_speed * self.s.duration_s)))

    def range_row(self, range_m: float) -> float:
        return self.hz + self.f * POSE.mast_height_m / range_m

    def frame(self, i: int, t: float) -> tuple[np.ndarray, TowerLabel]:
        s = self.s
        img = self._land(t)
        if self.actor is not None:
            self.actor.draw(img, t * self.clock)
        box = None
        burning = self.fire is not None and t >= s.ignite_s
        if burning:
            box = self.fire.draw(img, t - s.ignite_s)
        img *= self.exposure.gain(t)
        img += self.noise[i % 3][..., None]
        picture = np.clip(img, 0, 255).astype(np.uint8)
        dx, dy = self.sway.at(t)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        picture = cv2.warpAffine(picture, shift, (s.width, s.height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        _, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        picture = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if box is not None:
            box = (int(box[0] + dx), int(box[1] + dy), box[2], box[3])
        return picture, TowerLabel(i, t, burning, box)

    def _land(self, t: float) -> np.ndarray:
        w, hz = self.s.width, int(self.hz)
        img = self.base.copy()
        shift = int(self.shadow_start + t * self.shadow_speed) % w
        shade = 1.0 - self.shadow_depth * self.shadows[hz:, shift:shift + w]
        img[hz:] *= shade[..., None]
        return img


class _Sway:
    """The mast in the wind: two slow sines per axis; amplitude in full-resolution pixels."""

    def __init__(self, rng: np.random.Generator, amplitude: float) -> None:
        self.a = amplitude
        self.f = rng.uniform(0.15, 1.2, 4)
        self.phase = rng.uniform(0, 2 * math.pi, 4)

    def at(self, t: float) -> tuple[float, float]:
        s = np.sin(2 * math.pi * self.f * t + self.phase)
        return float(self.a * (0.7 * s[0] + 0.3 * s[1])), float(0.5 * self.a * (0.7 * s[2] + 0.3 * s[3]))


class _Exposure:
    """Auto-exposure: a slow drift plus steps that settle over half a second."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.phase = float(rng.uniform(0, 2 * math.pi))
        self.steps = [(float(rng.uniform(2, 22)), float(rng.choice([-1, 1]) * rng.uniform(0.08, 0.18)))
                      for _ in range(2)]

    def gain(self, t: float) -> float:
        g = 1 + 0.06 * math.sin(2 * math.pi * t / 17 + self.phase)
        for at, size in self.steps:
            if t > at:
                g *= 1 + size * min(1.0, (t - at) / 0.5)
        return g


class _Fire:
    """A straw-fire line at a fixed ground point: tongues with persistent bases that flicker, and smoke."""

    def __init__(self, spec: TowerSpec, rng: np.random.Generator, tower: _Tower) -> None:
        far = spec.kind == "fire_far"
        hidden = spec.kind == "smoke_shelterbelt"
        range_m = float(rng.uniform(2500, 4000) if far else rng.uniform(800, 1500) if hidden
                        else rng.uniform(300, 1200))
        self.u, self.range_m = tower.site(float(rng.uniform(0.2, 0.8) * spec.width), range_m)
        self.k = tower.f / self.range_m
        """Pixels per metre at the fire."""
        self.v = tower.range_row(self.range_m)
        self.hidden = hidden
        self.night = tower.night
        self.belt_top = tower.hz - 22 if hidden else None
        """A shelterbelt (crowns up to 22 px above the horizon) hides the fire; only its smoke shows above."""
        self.spread = float(rng.uniform(0.4, 1.0))
        """Metres a second the fire line lengthens (straw stubble in wind)."""
        n = 40
        self.tongue_x = rng.uniform(-0.5, 0.5, n)
        """Position along the line, as a share of the final length."""
        self.tongue_h = rng.uniform(1.0, 3.0, n)
        self.tongue_w = rng.uniform(0.8, 1.6, n)
        self.freq = rng.uniform(1.5, 11.0, (n, 3))
        self.phase = rng.uniform(0, 2 * math.pi, (n, 3))
        self.wind = float(rng.uniform(-2.0, 2.0)) * (2.0 if spec.kind == "fire_windy" else 1.0)
        grey = 60.0 if self.night else float(rng.uniform(115, 145) if hidden else rng.uniform(150, 200))
        self.smoke = _Plume(rng, wind=self.wind, colour=grey,  # straw smoke over a grey sky: a darker grey
                            scale=self.k)

    def length_m(self, age: float) -> float:
        return min(40.0, 2.0 + self.spread * age)

    def draw(self, img: np.ndarray, age: float) -> tuple[int, int, int, int]:
        half = self.length_m(age) / 2
        x0, y0, x1, y1 = self.u - half * self.k, self.v - 3.5 * self.k, self.u + half * self.k, self.v + 1
        sx0, sy0, sx1, sy1 = self.smoke.draw(img, self.u, self.v - self.k, age, below=self.belt_top)
        if self.hidden:
            return int(sx0), int(sy0), int(sx1 - sx0) + 1, int(sy1 - sy0) + 1
        self._flames(img, age)
        x0, y0, x1, y1 = min(x0, sx0), min(y0, sy0), max(x1, sx1), max(y1, sy1)
        return int(x0) - 1, int(y0) - 1, int(x1 - x0) + 3, int(y1 - y0) + 3

    def _flames(self, img: np.ndarray, age: float) -> None:
        k, u, v = self.k, self.u, self.v
        pad = int(4 * k * 3.5 + 4)
        length = self.length_m(age)
        left, right = int(u - length * k / 2) - pad, int(u + length * k / 2) + pad
        top, bottom = int(v - 4 * 3.5 * k) - 4, int(v + 3)
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, img.shape[1]), min(bottom, img.shape[0])
        if right <= left or bottom <= top:
            return
        roi = img[top:bottom, left:right]
        alpha = np.zeros(roi.shape[:2], np.float32)
        colour = np.zeros(roi.shape, np.float32)
        flicker = 1 + 0.18 * np.sin(2 * math.pi * self.freq * age + self.phase).sum(axis=1)
        for j in np.flatnonzero(np.abs(self.tongue_x) * 40.0 <= length / 2 + 0.5):
            x = u + self.tongue_x[j] * 40.0 * k - left
            height = max(1.2, self.tongue_h[j] * flicker[j] * k)
            half_w = max(0.7, self.tongue_w[j] * k / 2)
            lean = self.wind * 0.15 * height + 0.2 * height * math.sin(2 * math.pi * self.freq[j, 0] * age * 0.5)
            base = v - top
            pts = np.array([[x - half_w, base], [x + half_w, base], [x + lean, base - height]], np.float32)
            cv2.fillPoly(alpha, [np.round(pts * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
            cv2.fillPoly(colour, [np.round(pts * 4).astype(np.int32)], (30.0, 120.0 + 30 * (j % 3), 255.0),
                         lineType=cv2.LINE_AA, shift=2)
            core = np.array([[x - half_w / 2, base], [x + half_w / 2, base], [x + lean / 2, base - height / 2]])
            cv2.fillPoly(colour, [np.round(core * 4).astype(np.int32)], (150.0, 235.0, 255.0),
                         lineType=cv2.LINE_AA, shift=2)
        roi[:] = roi * (1 - alpha[..., None]) + colour * alpha[..., None]


class _Plume:
    """Smoke puffs emitted every quarter second; each puff's place, size and opacity is a function of its
    age, so the plume is the same whatever the frame rate."""

    EVERY_S = 0.25
    LIFE_S = 14.0

    def __init__(self, rng: np.random.Generator, wind: float, colour: float | tuple, scale: float) -> None:
        self.wind, self.scale = wind, scale
        self.colour = np.array(colour, np.float32)
        """Grey smoke (one value) or brown dust (B, G, R)."""
        self.jitter = rng.uniform(-1, 1, (4096, 3))

    def draw(self, img: np.ndarray, u: float, v: float, age: float, below: float | None
             ) -> tuple[float, float, float, float]:
        if age <= 0:
            return u, v, u, v
        first = max(0, int((age - self.LIFE_S) / self.EVERY_S))
        last = int(age / self.EVERY_S)
        ages = age - np.arange(first, last + 1) * self.EVERY_S
        j = self.jitter[np.arange(first, last + 1) % len(self.jitter)]
        s = self.scale
        rise = 9.0 * ages * s / (1 + 0.08 * ages)  # a hot plume rises at 9 m/s, slowing as it cools
        x = u + (self.wind * ages + 2.0 * j[:, 0] * np.sqrt(ages)) * s
        y = v - rise
        r = (4.0 + 2.5 * ages) * s
        opacity = 0.65 * np.exp(-ages / 6.0) * (0.8 + 0.2 * j[:, 2])
        x0, y0 = int(max(0, (x - r).min() - 8)), int(max(0, (y - r).min() - 8))
        x1, y1 = int(min(img.shape[1], (x + r).max() + 8)), int(min(img.shape[0], v + 4))
        if x1 <= x0 or y1 <= y0:
            return u, v, u, v
        layer = np.zeros((y1 - y0, x1 - x0), np.float32)
        for px, py, pr, po in zip(x - x0, y - y0, r, opacity, strict=True):
            cv2.circle(layer, (int(px), int(py)), max(1, int(pr)), float(po), -1, lineType=cv2.LINE_AA)
        layer = np.clip(cv2.GaussianBlur(layer, (0, 0), 2.5), 0, 0.8)
        if below is not None:
            cut = int(below) - y0
            layer[max(cut, 0):] = 0  # behind the shelterbelt: the trees hide the plume's foot
        roi = img[y0:y1, x0:x1]
        roi[:] = roi * (1 - layer[..., None]) + self.colour * layer[..., None]
        seen = np.argwhere(layer > 0.08)
        if seen.size == 0:
            return u, v, u, v
        return x0 + float(seen[:, 1].min()), y0 + float(seen[:, 0].min()), x0 + float(seen[:, 1].max()), \
            y0 + float(seen[:, 0].max())


# -- look-alikes ------------------------------------------------------------------------------------------------

@dataclass
class _Light:
    """A lamp: a bright core and a glow, its brightness a function of time."""
    u: float
    v: float
    radius: float
    colour: tuple[float, float, float]
    brightness: object

    def draw(self, img: np.ndarray, t: float) -> None:
        b = float(self.brightness(t))
        r = self.radius
        x0, y0 = int(self.u - 4 * r), int(self.v - 4 * r)
        glow = np.zeros((int(8 * r) + 1, int(8 * r) + 1), np.float32)
        cv2.circle(glow, (int(4 * r), int(4 * r)), int(2.5 * r), 0.5, -1, lineType=cv2.LINE_AA)
        cv2.circle(glow, (int(4 * r), int(4 * r)), int(r), 1.0, -1, lineType=cv2.LINE_AA)
        glow = cv2.GaussianBlur(glow, (0, 0), max(r / 2, 1)) * b
        roi = img[y0:y0 + glow.shape[0], x0:x0 + glow.shape[1]]
        g = glow[:roi.shape[0], :roi.shape[1], None]
        roi[:] = roi * (1 - np.clip(g, 0, 1)) + np.array(self.colour, np.float32) * g


@dataclass
class _Mover:
    """Something flame-coloured travelling across the field: a tractor or a walker."""
    u0: float
    v: float
    speed_px: float
    size: tuple[float, float]
    body: tuple[float, float, float]
    limbs: bool

    def draw(self, img: np.ndarray, t: float) -> None:
        w, h = self.size
        x = self.u0 + self.speed_px * t
        top = self.v - h
        if self.limbs:  # a walker: dark legs swinging under an orange jacket
            swing = 0.25 * w * math.sin(2 * math.pi * 1.8 * t)
            for side in (-1, 1):
                leg = np.array([[x + w / 2, self.v - h * 0.45], [x + w / 2 + side * swing, self.v]], np.float32)
                cv2.line(img, tuple(np.round(leg[0]).astype(int)), tuple(np.round(leg[1]).astype(int)),
                         (40.0, 40.0, 50.0), max(1, int(w / 3)), cv2.LINE_AA)
            cv2.rectangle(img, (int(x), int(top + 0.15 * h)), (int(x + w), int(self.v - 0.45 * h)), self.body, -1)
            cv2.circle(img, (int(x + w / 2), int(top + 0.08 * h)), max(1, int(w / 3)), (90.0, 120.0, 170.0), -1)
            return
        cv2.rectangle(img, (int(x), int(top)), (int(x + w), int(self.v)), self.body, -1)
        cv2.rectangle(img, (int(x + 0.6 * w), int(top - 0.4 * h)), (int(x + 0.95 * w), int(top)),
                      (60.0, 60.0, 70.0), -1)
        for cx in (x + 0.2 * w, x + 0.8 * w):
            cv2.circle(img, (int(cx), int(self.v)), max(1, int(0.22 * h)), (25.0, 25.0, 25.0), -1)


@dataclass
class _Harvester:
    """A combine moving slowly, trailing a brown dust cloud that drifts with the wind."""
    u0: float
    v: float
    k: float
    plume: _Plume

    def draw(self, img: np.ndarray, t: float) -> None:
        x = self.u0 + 2.0 * self.k * t
        self.plume.draw(img, x - 2 * self.k, self.v, t + 6.0, below=None)
        cv2.rectangle(img, (int(x), int(self.v - 3.5 * self.k)), (int(x + 8 * self.k), int(self.v)),
                      (40.0, 150.0, 60.0), -1)


@dataclass
class _Glint:
    """A low sun behind thin moving cloud, and its glint on wet stubble below it: flame-coloured, below the
    horizon, its brightness wandering with the cloud."""
    u: float
    v: float
    hz: float
    phase: np.ndarray
    freq: np.ndarray

    def draw(self, img: np.ndarray, t: float) -> None:
        b = 0.75 + 0.25 * float(np.sin(2 * math.pi * self.freq * t + self.phase).mean())
        cv2.circle(img, (int(self.u), int(self.hz - 10)), 16, (120.0 * b, 215.0 * b, 255.0), -1, cv2.LINE_AA)
        for row in range(4):
            y = self.v + row * 9
            half = 10 + 6 * row + 4 * math.sin(2 * math.pi * 0.3 * t + row)
            cv2.ellipse(img, (int(self.u), int(y)), (int(half), 2), 0, 0, 360,
                        (60.0 * b, 160.0 * b, 250.0 * b), -1, cv2.LINE_AA)


def _actor(spec: TowerSpec, rng: np.random.Generator, tower: _Tower):
    kind, w = spec.kind, spec.width
    u = float(rng.uniform(0.25, 0.75) * w)
    if kind == "sodium_lamp":
        u, range_m = tower.site(u, float(rng.uniform(300, 900)))
        return _Light(u, tower.range_row(range_m) - 6, 3.0, (60.0, 170.0, 255.0), lambda t: 1.0)
    if kind == "beacon":
        period = float(rng.uniform(0.7, 1.6))
        u, range_m = tower.site(u, float(rng.uniform(200, 600)))
        return _Light(u, tower.range_row(range_m) - 8, 3.0, (20.0, 150.0, 255.0),
                      lambda t: max(0.0, math.cos(2 * math.pi * t / period)) ** 3)
    if kind == "mains_lamp":
        u, range_m = tower.site(u, float(rng.uniform(200, 600)))
        return _Light(u, tower.range_row(range_m) - 6, 3.5, (90.0, 190.0, 255.0),
                      lambda t: 0.45 + 0.55 * abs(math.cos(math.pi * 100.0 * t)))
    if kind in ("tractor", "walker"):
        u, range_m = tower.site(u, float(rng.uniform(300, 700) if kind == "tractor" else rng.uniform(80, 200)))
        k = tower.f / range_m
        speed = float(rng.uniform(1.0, 2.0) if kind == "tractor" else rng.uniform(0.8, 1.4))
        size = (4.5 * k, 2.2 * k) if kind == "tractor" else (0.5 * k, 1.8 * k)
        body = (30.0, 60.0, 210.0) if kind == "tractor" else (20.0, 110.0, 250.0)
        return _Mover(u - 6 * k, tower.range_row(range_m), float(rng.choice([-1, 1])) * speed * k, size, body,
                      kind == "walker")
    if kind == "dust":
        u, range_m = tower.site(u, float(rng.uniform(300, 800)))
        k = tower.f / range_m
        return _Harvester(u, tower.range_row(range_m), k,
                          _Plume(rng, wind=float(rng.uniform(-2, 2)), colour=(105.0, 135.0, 165.0), scale=k))
    if kind == "low_sun":
        return _Glint(_sun_column(spec, tower.f, tower.pose), tower.hz + 14, tower.hz,
                      rng.uniform(0, 2 * math.pi, 3), rng.uniform(0.1, 0.6, 3))
    return None


def _sun_column(spec: TowerSpec, f: float, pose: Pose) -> float:
    """The image column of the sun at the sequence's start, from its azimuth (a low sun in October sets
    in the WSW, ahead of the first tower's camera)."""
    az, _ = position(pose.lat, pose.lon, spec.start)
    off = angle_diff(az, pose.heading_deg)
    if abs(off) > 80:
        return -spec.width  # far out of view (the second tower may look away from the sun)
    return spec.width / 2 + f * math.tan(math.radians(off))


# -- the still world ---------------------------------------------------------------------------------------------

def _landscape(rng: np.random.Generator, spec: TowerSpec, grey_sky: bool, low_sun: bool, autumn: bool
               ) -> np.ndarray:
    """Sky, a shelterbelt along the horizon, fields in perspective with texture; float32 BGR."""
    w, h, hz = spec.width, spec.height, int(spec.horizon)
    img = np.zeros((h, w, 3), np.float32)
    t = np.linspace(0, 1, hz, dtype=np.float32)[:, None]
    if grey_sky:
        top, low = (168, 168, 165), (182, 182, 180)
    elif low_sun:
        top, low = (150, 110, 120), (90, 170, 245)
    else:
        top, low = (215, 165, 120), (230, 215, 205)
    for c in range(3):
        img[:hz, :, c] = top[c] * (1 - t) + low[c] * t
    crops = [(95, 165, 200), (60, 95, 130), (45, 60, 80), (70, 120, 95), (110, 175, 210)]
    vx = rng.uniform(0.3, 0.7) * w
    img[hz:] = crops[0]
    edges = np.concatenate([[-40 * w], np.sort(rng.uniform(-2 * w, 3 * w, 12)), [40 * w]])
    for a, b in itertools.pairwise(edges):
        colour = np.array(crops[int(rng.integers(len(crops)))], np.float32)
        if low_sun:
            colour = colour * np.array([0.6, 0.8, 1.05], np.float32)
        cv2.fillPoly(img, [np.array([[vx, hz], [a, h], [b, h]], np.int32)], colour.tolist())
    texture = cv2.GaussianBlur(rng.normal(0, 14, (h, w)).astype(np.float32), (0, 0), 1.2)
    img[hz:] += texture[hz:, :, None]
    belt = (30, 75, 45) if not autumn else (30, 120, 200)
    tall = 18 if grey_sky else 10
    for x in range(0, w, 7):
        height = int(rng.integers(tall // 2, tall + 4))
        leaf = np.array(belt, np.float32) * float(rng.uniform(0.8, 1.2))
        cv2.ellipse(img, (x, hz), (int(rng.integers(4, 9)), height), 0, 180, 360, leaf.tolist(), -1)
    if autumn:  # orange-yellow poplars in the foreground, their leaves catching the light
        for _ in range(40):
            x, y = int(rng.uniform(0, w)), int(rng.uniform(hz + 20, h))
            cv2.circle(img, (x, y), int(rng.integers(4, 14)), (20.0, float(rng.uniform(110, 170)), 235.0), -1)
    if spec.kind in NIGHT:
        img *= np.array([0.16, 0.12, 0.1], np.float32)
    return np.clip(img, 0, 255)


def _noise_field(rng: np.random.Generator, h: int, w: int, sigma: float, cut: float) -> np.ndarray:
    """Soft blobs in [0, 1]: cloud shadows on the land."""
    small = rng.random((max(2, h // 8), max(2, w // 8))).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 8)
    small = (small - small.min()) / max(float(np.ptp(small)), 1e-6)
    return np.clip(cv2.resize(np.clip((small - cut) / (1 - cut), 0, 1), (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
