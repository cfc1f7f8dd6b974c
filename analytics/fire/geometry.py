"""From a pixel of a tower camera to a bearing and a point on the ground; two bearings to one point.

Pinhole camera with square pixels and no roll, on flat ground (the Songnen plain around Suihua is
within a few metres of level over a camera's range). A camera ``tilt`` below zero looks down. For
pixel (u, v) with x = u − cx, y = v − cy and focal length f = (W/2) / tan(hfov/2), the ray in the
world has a horizontal part f·cos t + y·sin t along the heading, x to the right, and a vertical part
f·sin t − y·cos t (negative: below the horizon). The horizon is the row v = cy + f·tan t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0
MAX_RANGE_M = 15_000.0
"""Beyond this a tower camera's ground estimate is meaningless (and a straw fire too small to see)."""
TILT_ERROR_DEG = 0.5
"""A pose's tilt uncertainty unless the ledger gives one (``Pose.tilt_error_deg``)."""
BASE_ROWS = 3
"""How many rows a detection's base may be off (in the accuracy estimate)."""


@dataclass(frozen=True)
class Pose:
    lat: float
    lon: float
    mast_height_m: float
    heading_deg: float
    tilt_deg: float
    hfov_deg: float
    tilt_error_deg: float = TILT_ERROR_DEG
    """How far the tilt may be off (a surveyed preset drifts, a mast leans in the wind): the horizon may lie
    this much lower in the picture than ``horizon_row`` says."""


@dataclass(frozen=True)
class Sighting:
    """Where a detection points: always a bearing; a ground point when the pixel is well below the horizon."""
    bearing_deg: float
    halfwidth_deg: float
    lat: float | None = None
    lon: float | None = None
    range_m: float | None = None
    accuracy_m: float | None = None


def focal_px(pose: Pose, width: int) -> float:
    return (width / 2) / math.tan(math.radians(pose.hfov_deg) / 2)


def horizon_row(pose: Pose, width: int, height: int) -> float:
    """The image row of the horizon (may lie outside the frame)."""
    return height / 2 + focal_px(pose, width) * math.tan(math.radians(pose.tilt_deg))


def sky_row(pose: Pose, width: int, height: int) -> float:
    """The lowest row the sky may reach: the horizon were the camera tilted ``tilt_error_deg`` less far down."""
    return height / 2 + focal_px(pose, width) * math.tan(math.radians(pose.tilt_deg + pose.tilt_error_deg))


def far_band(pose: Pose, width: int, height: int, size_m: float, max_px: float) -> tuple[float, float]:
    """(top, bottom) rows of the ground where something ``size_m`` across spans under ``max_px`` pixels: from
    below the lowest the sky may reach (``sky_row``) down to the range where it is ``max_px`` pixels; it
    follows the zoom (a narrow field of view sees a 3 m flame resolved to a longer range)."""
    return sky_row(pose, width, height), range_row(pose, width, height, size_m * focal_px(pose, width) / max_px)


def row_range(pose: Pose, width: int, height: int, row: float) -> float:
    """The ground range in the centre column at an image row (infinite at or above the horizon)."""
    found = ground_range(pose, width, height, width / 2, row)
    return math.inf if found is None else found


def range_row(pose: Pose, width: int, height: int, range_m: float) -> float:
    """The image row (in the centre column) where the ground lies ``range_m`` away."""
    below = math.atan2(pose.mast_height_m, range_m)
    return height / 2 + focal_px(pose, width) * math.tan(math.radians(pose.tilt_deg) + below)


def bearing(pose: Pose, width: int, height: int, u: float, v: float) -> float:
    f = focal_px(pose, width)
    t = math.radians(pose.tilt_deg)
    x, y = u - width / 2, v - height / 2
    return (pose.heading_deg + math.degrees(math.atan2(x, f * math.cos(t) + y * math.sin(t)))) % 360


def ground_range(pose: Pose, width: int, height: int, u: float, v: float) -> float | None:
    """Horizontal distance to where the pixel's ray meets the ground; None at or above the horizon."""
    f = focal_px(pose, width)
    t = math.radians(pose.tilt_deg)
    x, y = u - width / 2, v - height / 2
    up = f * math.sin(t) - y * math.cos(t)
    if up >= 0:
        return None
    return pose.mast_height_m * math.hypot(f * math.cos(t) + y * math.sin(t), x) / -up


def sight(pose: Pose, width: int, height: int, box: tuple[int, int, int, int]) -> Sighting:
    """A detection box (x, y, w, h) seen from ``pose``: bearing of its centre, ground point of its base.

    The base row is where a fire touches the ground; the accuracy is how far ``BASE_ROWS`` pixels up or
    down move the estimate (a flame's base is hidden by stubble, smoke or its own glow), which grows fast
    towards the horizon.
    """
    x, y, w, h = box
    u, v = x + w / 2, y + h - 0.5
    centre = bearing(pose, width, height, u, v)
    halfwidth = max(abs(angle_diff(bearing(pose, width, height, x, v), centre)),
                    abs(angle_diff(bearing(pose, width, height, x + w, v), centre))) + 0.5
    far = ground_range(pose, width, height, u, v - BASE_ROWS)
    near = ground_range(pose, width, height, u, v + BASE_ROWS)
    distance = ground_range(pose, width, height, u, v)
    if distance is None or far is None or near is None or distance > MAX_RANGE_M:
        return Sighting(centre, halfwidth)
    lat, lon = destination(pose.lat, pose.lon, centre, distance)
    accuracy = max(far - distance, distance - near) + distance * math.radians(halfwidth)
    return Sighting(centre, halfwidth, lat, lon, distance, accuracy)


def project(pose: Pose, width: int, height: int, lat: float, lon: float, above_ground_m: float = 0.0
            ) -> tuple[float, float] | None:
    """The pixel where a point on (or above) the ground appears; None when it is behind the camera."""
    east, north = offset_m(pose.lat, pose.lon, lat, lon)
    hd, t = math.radians(pose.heading_deg), math.radians(pose.tilt_deg)
    forward = east * math.sin(hd) + north * math.cos(hd)
    right = east * math.cos(hd) - north * math.sin(hd)
    up = above_ground_m - pose.mast_height_m
    z = forward * math.cos(t) + up * math.sin(t)
    if z <= 0:
        return None
    y = forward * math.sin(t) - up * math.cos(t)
    f = focal_px(pose, width)
    return width / 2 + f * right / z, height / 2 + f * y / z


# -- on the ground ------------------------------------------------------------------------------------------

def offset_m(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    """(east, north) metres from the first point to the second, on a local tangent plane."""
    north = math.radians(lat - lat0) * EARTH_RADIUS_M
    east = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians((lat + lat0) / 2))
    return east, north


def destination(lat: float, lon: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    b = math.radians(bearing_deg)
    north, east = distance_m * math.cos(b), distance_m * math.sin(b)
    lat2 = lat + math.degrees(north / EARTH_RADIUS_M)
    lon2 = lon + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians((lat + lat2) / 2))))
    return lat2, lon2


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return math.hypot(*offset_m(lat1, lon1, lat2, lon2))


def bearing_to(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    east, north = offset_m(lat1, lon1, lat2, lon2)
    return math.degrees(math.atan2(east, north)) % 360


def angle_diff(a: float, b: float) -> float:
    """a − b in (−180, 180]."""
    return (a - b + 180) % 360 - 180


def within_cone(lat: float, lon: float, cam_lat: float, cam_lon: float, bearing_deg: float, halfwidth_deg: float,
                max_range_m: float = MAX_RANGE_M) -> bool:
    """Whether a ground point lies inside a camera's sighting cone."""
    if distance_m(cam_lat, cam_lon, lat, lon) > max_range_m:
        return False
    return abs(angle_diff(bearing_to(cam_lat, cam_lon, lat, lon), bearing_deg)) <= halfwidth_deg


@dataclass(frozen=True)
class Fix:
    lat: float
    lon: float
    accuracy_m: float


def triangulate(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
                max_range_m: float = MAX_RANGE_M) -> Fix | None:
    """Where two bearings (lat, lon, bearing°, half-width°) from two towers cross.

    None when they do not cross in front of both towers within range, or cross at less than 10°
    (two nearly parallel rays give no usable point). The accuracy is the larger half-width's spread
    at the longer range, divided by the sine of the crossing angle.
    """
    lat1, lon1, b1, w1 = a
    lat2, lon2, b2, w2 = b
    east, north = offset_m(lat1, lon1, lat2, lon2)
    d1 = (math.sin(math.radians(b1)), math.cos(math.radians(b1)))
    d2 = (math.sin(math.radians(b2)), math.cos(math.radians(b2)))
    cross = d1[0] * d2[1] - d1[1] * d2[0]
    angle = math.degrees(math.asin(min(1.0, abs(cross))))
    if angle < 10:
        return None
    s1 = (east * d2[1] - north * d2[0]) / cross
    s2 = (east * d1[1] - north * d1[0]) / cross
    if s1 <= 0 or s2 <= 0 or max(s1, s2) > max_range_m:
        return None
    lat, lon = destination(lat1, lon1, b1, s1)
    spread = max(s1, s2) * math.radians(max(w1, w2))
    return Fix(lat, lon, spread / math.sin(math.radians(angle)))
