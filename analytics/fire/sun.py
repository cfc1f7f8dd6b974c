"""Where the sun is in a tower camera's picture, from date, time and pose.

A low sun ahead of the camera (and its glint on wet stubble or water below it) is flame-coloured,
bright and shimmers under thin cloud; what gives it away is that it sits where the sun is. The sun's
azimuth and elevation come from ``astral`` (Apache-2.0, NOAA's algorithm); the column from the pinhole
pose (``geometry``).
"""

from __future__ import annotations

import datetime as dt
import math

from astral import Observer
from astral.sun import azimuth, elevation

from analytics.fire.geometry import Pose, angle_diff, focal_px

LOW_SUN_DEG = 12.0
"""Above this the sun is out of a tower camera's (slightly down-tilted) view and its glint is weak."""
GLINT_HALF_DEG = 1.5
"""Half-width, in degrees of azimuth, of the band below a low sun where glints are expected: the glint path
on wet stubble lies straight under the sun, about as wide as the sun's halo behind thin cloud (a few sun
diameters). A fire beside it, even a few degrees off, is not a glint and is judged like any other."""


def position(lat: float, lon: float, when: dt.datetime) -> tuple[float, float]:
    """(azimuth°, elevation°) of the sun at an aware ``when``."""
    if when.tzinfo is None:
        raise ValueError("the time must carry its zone")
    observer = Observer(latitude=lat, longitude=lon)
    return azimuth(observer, when), elevation(observer, when)


def glint_columns(pose: Pose, width: int, when: dt.datetime) -> tuple[float, float] | None:
    """The column band (left, right) under a low sun in view, or None when the sun is high, set or behind."""
    az, el = position(pose.lat, pose.lon, when)
    if not -1.0 < el < LOW_SUN_DEG:
        return None
    off = angle_diff(az, pose.heading_deg)
    if abs(off) > pose.hfov_deg / 2 + GLINT_HALF_DEG:
        return None
    f = focal_px(pose, width)
    column = width / 2 + f * math.tan(math.radians(off))
    half = f * math.tan(math.radians(GLINT_HALF_DEG))
    return column - half, column + half


def under_glint(band: tuple[float, float] | None, left: float, right: float) -> bool:
    """Whether a box spanning columns ``left``..``right`` reaches into the glint band."""
    return band is not None and left < band[1] and right > band[0]


def is_night(lat: float, lon: float, when: dt.datetime) -> bool:
    """Civil night: the sun more than 6° below the horizon."""
    return position(lat, lon, when)[1] < -6.0
