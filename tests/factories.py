"""Readable builders for ledger objects, with places that lie inside Suihua."""

from __future__ import annotations

from registry.models import PoleIn, TerminalIn

# Points inside each county (near their seats).
BEILIN = (126.98, 46.64)
ZHAODONG = (125.98, 46.07)
ANDA = (125.33, 46.40)
HAILUN = (126.97, 47.47)
HARBIN = (126.63, 45.75)  # outside Suihua

RIVER_ATTRS = {"river": "呼兰河", "chainage_km": 162.0, "target_class": "III"}


def pole_in(name: str = "中兴大街01号杆", at: tuple[float, float] = BEILIN, **fields) -> PoleIn:
    return PoleIn(**{"name": name, "department": "cgj", "lon": at[0], "lat": at[1], **fields})


def terminal_in(name: str = "中兴大街空气微站", kind: str = "air_sensor", at: tuple[float, float] | None = BEILIN,
                **fields) -> TerminalIn:
    location = {"lon": at[0], "lat": at[1]} if at else {}
    return TerminalIn(**{"name": name, "kind": kind, **location, **fields})


def river_station(name: str = "呼兰河05号水质自动站", at: tuple[float, float] = (126.94, 46.53),
                  **fields) -> TerminalIn:
    return terminal_in(name, "water_quality_station", at, attrs=dict(RIVER_ATTRS), **fields)
