"""NASA FIRMS active-fire CSV files (VIIRS 375 m and MODIS), read by column name (fire-detection.md §3.1).

Archive files add ``type``, some old ones lack ``instrument``: columns are found by header, never by
position. ``acq_date`` is a UTC date and ``acq_time`` UTC HHMM (zero-padded here: some files say ``112``).
VIIRS confidence is l / n / h (or low / nominal / high), MODIS 0–100.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass

REQUIRED = ("latitude", "longitude", "acq_date", "acq_time", "confidence")
BRIGHTNESS = ("bright_ti4", "brightness")
VIIRS_CONFIDENCE = {"l": 0.3, "low": 0.3, "n": 0.6, "nominal": 0.6, "h": 0.9, "high": 0.9}
STATIC_TYPES = {"1": "active volcano", "2": "static land source", "3": "offshore"}
"""FIRMS ``type`` values that are not vegetation fires."""
_LINE_END = re.compile(r"\r\n|\r|\n")


class FirmsError(ValueError):
    """A file that cannot be read as FIRMS data at all."""


@dataclass(frozen=True)
class Hotspot:
    row: int
    lat: float
    lon: float
    at: dt.datetime
    instrument: str
    satellite: str
    confidence: float
    confidence_text: str
    brightness_k: float | None
    frp_mw: float | None
    scan_km: float
    track_km: float
    daynight: str | None
    fire_type: str | None

    @property
    def key(self) -> str:
        """The same overpass pixel, whichever file it comes in."""
        return f"{self.satellite}:{self.at:%Y%m%dT%H%M}:{self.lat:.4f}:{self.lon:.4f}"

    @property
    def accuracy_m(self) -> float:
        """Half the pixel's larger side: the fire is somewhere in it."""
        return 500.0 * max(self.scan_km, self.track_km)


def parse(text: str) -> tuple[list[Hotspot], list[tuple[int, str, str]]]:
    """Rows, and (line number, raw line, reason) of each row that could not be read.

    Each line is one row (FIRMS never quotes a line break), split on CRLF, LF or a bare CR, so a stray quote or
    line break spoils only its own row. A line holding NUL is refused whole: PostgreSQL could store none of it.
    """
    lines = _LINE_END.split(text.lstrip("\ufeff"))
    if "\x00" in lines[0]:
        raise FirmsError("not a FIRMS file: the header holds a NUL character")
    header = [h.strip().lower() for h in next(csv.reader(lines[:1]), [])]
    missing = [c for c in REQUIRED if c not in header]
    if not any(b in header for b in BRIGHTNESS):
        missing.append(" or ".join(BRIGHTNESS))
    if missing:
        raise FirmsError(f"not a FIRMS file: missing column(s) {', '.join(missing)} "
                         f"(found: {', '.join(header) or 'no header'})")
    rows, errors = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            if "\x00" in line:
                raise ValueError("the line holds a NUL character")
            rows.append(_hotspot(number, dict(zip(header, next(csv.reader([line])), strict=False))))
        except (ValueError, TypeError, KeyError, csv.Error) as exc:
            errors.append((number, line, f"row {number}: {exc}"))
    return rows, errors


def _hotspot(number: int, raw: dict) -> Hotspot:
    lat, lon = _float(raw, "latitude"), _float(raw, "longitude")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"latitude/longitude {lat}, {lon} out of range")
    instrument = (raw.get("instrument") or ("VIIRS" if "bright_ti4" in raw else "MODIS")).strip().upper()
    text = (raw.get("confidence") or "").strip().lower()
    if instrument == "VIIRS" or text in VIIRS_CONFIDENCE:
        if text not in VIIRS_CONFIDENCE:
            raise ValueError(f"VIIRS confidence {text!r} is not l, n or h")
        confidence = VIIRS_CONFIDENCE[text]
    else:
        value = float(text)
        if not 0 <= value <= 100:
            raise ValueError(f"MODIS confidence {value} is not 0–100")
        confidence = value / 100
    brightness = raw.get("bright_ti4") or raw.get("brightness")
    frp = (raw.get("frp") or "").strip()
    return Hotspot(
        row=number, lat=lat, lon=lon, at=_when(raw), instrument=instrument,
        satellite=(raw.get("satellite") or "?").strip(), confidence=confidence, confidence_text=text,
        brightness_k=float(brightness) if brightness and brightness.strip() else None,
        frp_mw=float(frp) if frp else None,
        scan_km=float(raw.get("scan") or (0.375 if instrument == "VIIRS" else 1.0)),
        track_km=float(raw.get("track") or (0.375 if instrument == "VIIRS" else 1.0)),
        daynight=(raw.get("daynight") or "").strip() or None,
        fire_type=(raw.get("type") or "").strip() or None,
    )


def _float(raw: dict, column: str) -> float:
    value = (raw.get(column) or "").strip()
    if not value:
        raise ValueError(f"{column} is empty")
    return float(value)


def _when(raw: dict) -> dt.datetime:
    day = dt.date.fromisoformat((raw.get("acq_date") or "").strip())
    hhmm = (raw.get("acq_time") or "").strip().split(".")[0].zfill(4)
    if len(hhmm) != 4 or not hhmm.isdigit() or int(hhmm[:2]) > 23 or int(hhmm[2:]) > 59:
        raise ValueError(f"acq_time {raw.get('acq_time')!r} is not HHMM")
    return dt.datetime.combine(day, dt.time(int(hhmm[:2]), int(hhmm[2:])), dt.UTC)
