"""The Suihua demo ledger: realistic counts, each device inside the right division.

Camera towers over farmland for straw burning, about 1,000 smart poles in the towns
carrying several departments' sensors, water-quality stations along 呼兰河, 通肯河,
肇兰新河 and 安肇新河 in chainage order, a sewage plant per county seat, gas, water
supply and heating points in the towns. Deterministic: the same seed gives the same
ledger. River courses are hand-drawn approximations (no public polylines were found).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import psycopg

from registry import credentials, service
from registry.changes import Actor
from registry.errors import Conflict
from registry.lookups import Lookups
from registry.models import PoleIn, TerminalIn

# County seats (GB/T 2260 code, name, lon, lat), from standards.md §7.
SEATS = (
    ("231202", "北林区", 126.98, 46.63), ("231221", "望奎县", 126.48, 46.83), ("231222", "兰西县", 126.28, 46.27),
    ("231223", "青冈县", 126.10, 46.68), ("231224", "庆安县", 127.52, 46.88), ("231225", "明水县", 125.90, 47.18),
    ("231226", "绥棱县", 127.10, 47.25), ("231281", "安达市", 125.33, 46.40), ("231282", "肇东市", 125.98, 46.07),
    ("231283", "海伦市", 126.97, 47.47),
)
POLES_PER_SEAT = {"231202": 280, "231282": 150, "231281": 120, "231283": 90}
DEFAULT_POLES = 60
TOWERS = 300

# (name, km at the first waypoint, target class, waypoints lon/lat from upstream to downstream)
RIVERS = (
    ("呼兰河", 60.0, "III", ((128.10, 46.95), (127.55, 46.85), (127.20, 46.62), (126.90, 46.52), (126.55, 46.40),
                            (126.30, 46.22), (126.25, 46.05))),
    ("通肯河", 20.0, "III", ((127.05, 47.75), (126.75, 47.45), (126.50, 47.15), (126.35, 46.90), (126.30, 46.60),
                            (126.30, 46.35))),
    ("肇兰新河", 0.0, "IV", ((125.75, 46.25), (126.00, 46.12), (126.25, 46.00), (126.45, 45.90))),
    ("安肇新河", 0.0, "IV", ((125.40, 46.55), (125.35, 46.30), (125.45, 46.05), (125.55, 45.85))),
)
POLE_SENSORS = (
    ("video_camera", "cgj", "海康威视", "DS-2DE4425IW"),
    ("air_sensor", "sthjj", "先河环保", "XHAQMS-M"),
    ("water_pressure_point", "swj", "威派格", "WPG-P100"),
    ("methane_detector", "zjj", "汉威科技", "HW-JT-C"),
)


@dataclass
class DemoLedger:
    poles: list[PoleIn]
    terminals: list[TerminalIn]
    """Terminals whose ``pole`` is the index of their pole in ``poles`` (as text) until codes exist."""


def build(lookups: Lookups, seed: int = 2312, secret_key: str = "ganzhi-demo") -> DemoLedger:
    rng = np.random.default_rng(seed)
    ledger = DemoLedger([], [])
    _towers(ledger, lookups, rng)
    _town_poles(ledger, lookups, rng)
    _rivers(ledger, lookups, rng)
    _seat_networks(ledger, lookups, rng)
    for terminal in ledger.terminals:  # HJ 212 loggers log in with an MN and PW the simulators can derive
        if terminal.protocol.value == "hj212":
            terminal.mn, terminal.pw = credentials.demo_logger_login(secret_key, terminal.name)
    return ledger


def load(conn: psycopg.Connection, actor: Actor | None = None, secret_key: str = "ganzhi-demo") -> tuple[int, int]:
    """Write the demo ledger in one transaction, with broker secrets derived from ``secret_key`` for every
    pole and terminal (so the simulators can log in as each device); returns (poles, terminals)."""
    actor = actor or Actor("demo")
    if conn.execute("select exists (select 1 from terminal) or exists (select 1 from pole)").fetchone()[0]:
        raise Conflict("the ledger is not empty; the demo ledger loads only into an empty one")
    lookups = Lookups.load(conn)
    ledger = build(lookups, secret_key=secret_key)
    with conn.transaction():
        pole_rows, errors = service.prepare_poles(ledger.poles, lookups)
        service.raise_errors(errors)
        service.save_poles(conn, pole_rows, actor)
        for terminal in ledger.terminals:
            if terminal.pole is not None:
                terminal.pole = pole_rows[int(terminal.pole)]["code"]
        rows, errors = service.prepare_terminals(conn, ledger.terminals, lookups)
        service.raise_errors(errors)
        service.save_terminals(conn, rows, actor)
        codes = [r["code"] for r in pole_rows + rows]
        hashed = [(code, credentials.hash_secret(credentials.demo_secret(secret_key, code))) for code in codes]
        credentials.store(conn, hashed, actor.name)
    return len(pole_rows), len(rows)


def _towers(ledger: DemoLedger, lookups: Lookups, rng: np.random.Generator) -> None:
    """Camera towers in farmland, at least 6 km from any county seat."""
    points = _farmland_points(lookups, rng, TOWERS)
    for n, (lon, lat) in enumerate(points, start=1):
        index = len(ledger.poles)
        ledger.poles.append(PoleIn(name=f"秸秆禁烧监控塔{n:03d}", department="sthjj", lon=lon, lat=lat,
                                   address=f"{_county_name(lookups, lon, lat)}农田"))
        pose = {"mast_height_m": float(rng.choice([30, 40, 50, 60])), "heading_deg": float(rng.integers(0, 360)),
                "tilt_deg": float(rng.uniform(-8, -3)), "hfov_deg": 55.0}
        ledger.terminals.append(TerminalIn(name=f"监控塔{n:03d}可见光", kind="video_camera", department="sthjj",
                                           pole=str(index), vendor="海康威视", model="DS-2DF8C442IXS", attrs=pose))
        if n % 3 == 0:
            thermal = {**pose, "hfov_deg": 25.0}
            ledger.terminals.append(TerminalIn(name=f"监控塔{n:03d}热成像", kind="thermal_camera", department="sthjj",
                                               pole=str(index), vendor="高德红外", model="TC-H640", attrs=thermal))


def _town_poles(ledger: DemoLedger, lookups: Lookups, rng: np.random.Generator) -> None:
    for code, name, lon, lat in SEATS:
        count = POLES_PER_SEAT.get(code, DEFAULT_POLES)
        for n, (plon, plat) in enumerate(_town_points(lookups, rng, code, lon, lat, count), start=1):
            index = len(ledger.poles)
            street = f"{name}智慧杆{n:03d}"
            ledger.poles.append(PoleIn(name=street, department="cgj", lon=plon, lat=plat, address=f"{name}城区"))
            chosen = rng.choice(len(POLE_SENSORS), size=int(rng.integers(2, 5)), replace=False)
            for i in sorted(chosen):
                kind, department, vendor, model = POLE_SENSORS[i]
                attrs = _pole_sensor_attrs(kind, rng, n)
                ledger.terminals.append(TerminalIn(name=f"{street}-{kind}", kind=kind, department=department,
                                                   pole=str(index), vendor=vendor, model=model, attrs=attrs))


def _pole_sensor_attrs(kind: str, rng: np.random.Generator, n: int) -> dict:
    if kind == "video_camera":
        return {"mast_height_m": 8.0, "heading_deg": float(rng.integers(0, 360)), "tilt_deg": -15.0, "hfov_deg": 60.0}
    if kind == "water_pressure_point":
        return {"district": f"DMA-{n % 12 + 1:02d}", "min_service_mpa": 0.14}
    return {}


def _rivers(ledger: DemoLedger, lookups: Lookups, rng: np.random.Generator) -> None:
    for river, start_km, target, waypoints in RIVERS:
        n = 0
        for lon, lat, km in _along(waypoints, start_km, spacing_km=12.0):
            if lookups.index.locate(lon, lat) is None:
                continue
            n += 1
            attrs = {"river": river, "chainage_km": round(km, 1), "target_class": target}
            ledger.terminals.append(TerminalIn(
                name=f"{river}{n:02d}号水质自动站", kind="water_quality_station", lon=lon, lat=lat, protocol="hj212",
                vendor="聚光科技", model="EXPEC 2000", address=f"{river} K{km:.0f}", attrs=attrs))
            if n % 3 == 1:
                ledger.terminals.append(TerminalIn(
                    name=f"{river}{n:02d}号水位站", kind="water_level_gauge", lon=lon + 0.002, lat=lat,
                    attrs={"river": river, "chainage_km": round(km, 1), "warning_level_m": 4.5}))


def _seat_networks(ledger: DemoLedger, lookups: Lookups, rng: np.random.Generator) -> None:
    """Per county seat: a sewage plant, gas stations, water districts, heating substations."""
    for code, name, lon, lat in SEATS:
        plant = f"{name}污水处理厂"
        grade, year = ("1A", 2012) if code in ("231202", "231282", "231281") else ("1B", 2005 + len(name))
        slon, slat = _town_points(lookups, rng, code, lon, lat - 0.02, 1)[0]
        ledger.terminals.append(TerminalIn(name=f"{plant}总排口", kind="sewage_outlet_analyser", lon=slon, lat=slat,
                                           protocol="hj212", vendor="聚光科技", model="CODmax III",
                                           attrs={"plant": plant, "grade": grade, "build_year": year}))
        for n, (glon, glat) in enumerate(_town_points(lookups, rng, code, lon, lat, 12), start=1):
            pressure = {"pressure_class": "medium_b", "set_point_kpa": 200.0} if n % 4 else \
                {"pressure_class": "low", "set_point_kpa": 3.0}
            ledger.terminals.append(TerminalIn(name=f"{name}燃气调压站{n:02d}", kind="gas_pressure_sensor",
                                               lon=glon, lat=glat, vendor="汉威科技", model="HW-P200", attrs=pressure))
        for n, (mlon, mlat) in enumerate(_town_points(lookups, rng, code, lon, lat, 15), start=1):
            ledger.terminals.append(TerminalIn(name=f"{name}燃气阀井{n:02d}甲烷", kind="methane_detector",
                                               lon=mlon, lat=mlat, vendor="汉威科技", model="HW-JT-W"))
        for n, (flon, flat) in enumerate(_town_points(lookups, rng, code, lon, lat, 4), start=1):
            ledger.terminals.append(TerminalIn(name=f"{name}DMA-{n:02d}入口流量计", kind="district_flow_meter",
                                               lon=flon, lat=flat, vendor="上海肯特", model="KEF-100",
                                               attrs={"district": f"DMA-{n:02d}", "night_allowance_m3h": 12.0}))
        for n, (hlon, hlat) in enumerate(_town_points(lookups, rng, code, lon, lat, 8), start=1):
            station = f"{name}换热站{n:02d}"
            ledger.terminals.append(TerminalIn(name=station, kind="heating_substation_sensor", lon=hlon, lat=hlat,
                                               vendor="哈工大卓能", model="HRZ-8", attrs={"substation": station}))
            for b in range(1, 4):
                ledger.terminals.append(TerminalIn(
                    name=f"{station}{b}号楼室温", kind="indoor_temp_sensor", lon=hlon + 0.001 * b, lat=hlat,
                    attrs={"substation": station, "building": f"{b}号楼"}))


def _town_points(lookups: Lookups, rng: np.random.Generator, county: str, lon: float, lat: float, count: int):
    """Points scattered around a seat (σ ≈ 1.5 km), kept inside the county."""
    points = []
    while len(points) < count:
        lons = lon + rng.normal(0, 0.02, count * 2)
        lats = lat + rng.normal(0, 0.014, count * 2)
        for plon, plat, found in zip(lons, lats, lookups.index.locate_many(lons, lats), strict=True):
            if found == county and len(points) < count:
                points.append((round(float(plon), 6), round(float(plat), 6)))
    return points


def _farmland_points(lookups: Lookups, rng: np.random.Generator, count: int):
    min_lon, min_lat, max_lon, max_lat = lookups.index.bounds
    points = []
    while len(points) < count:
        lons = rng.uniform(min_lon, max_lon, count)
        lats = rng.uniform(min_lat, max_lat, count)
        found = lookups.index.locate_many(lons, lats)
        for plon, plat, division in zip(lons, lats, found, strict=True):
            far = all(_km(plon, plat, s[2], s[3]) > 6 for s in SEATS)
            if division and far and len(points) < count:
                points.append((round(float(plon), 6), round(float(plat), 6)))
    return points


def _along(waypoints, start_km: float, spacing_km: float):
    """Points every ``spacing_km`` along a polyline, with their chainage."""
    km = start_km
    carry = spacing_km / 2
    for (lon1, lat1), (lon2, lat2) in itertools.pairwise(waypoints):
        length = _km(lon1, lat1, lon2, lat2)
        position = carry
        while position < length:
            f = position / length
            yield lon1 + f * (lon2 - lon1), lat1 + f * (lat2 - lat1), km + position
            position += spacing_km
        carry = position - length
        km += length


def _km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon2 - lon1) * 111.32 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, (lat2 - lat1) * 110.57)


def _county_name(lookups: Lookups, lon: float, lat: float) -> str:
    code = lookups.index.locate(lon, lat)
    return lookups.index.name(code) or ""
