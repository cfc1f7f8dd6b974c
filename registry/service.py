"""Units of work on poles and terminals: validate, issue codes, write, log the change.

The same path serves one terminal created through the API and 100,000 rows of an
import: ``prepare_*`` checks every input and reports every problem with its index,
``save_*`` writes what changed and its change rows in the caller's transaction.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import psycopg

from registry import codes, queries
from registry.attributes import validate_attrs
from registry.changes import Actor, change_row, pw_changed, pw_state, snapshot
from registry.errors import Conflict, Invalid, InvalidCode, LedgerError, NotFound
from registry.lookups import METRIC_KEYS, Lookups, terminal_kind
from registry.models import PoleIn, PolePatch, TerminalIn, TerminalPatch

MAX_POLE_DISTANCE_M = 50.0


@dataclass(frozen=True)
class RowError:
    index: int
    field: str | None
    message: str


@dataclass(frozen=True)
class SaveResult:
    created: int
    updated: int
    unchanged: int
    codes: list[str]


def prepare_terminals(
    conn: psycopg.Connection, inputs: list[TerminalIn], lookups: Lookups
) -> tuple[list[dict | None], list[RowError]]:
    """Check every input; returns one row (or None where it failed) per input, and every error."""
    errors: list[RowError] = []
    pole_codes = sorted({_canonical(i.pole) for i in inputs if i.pole})
    poles = queries.poles_by_code(conn, pole_codes) if pole_codes else {}
    rows: list[dict | None] = []
    for index, item in enumerate(inputs):
        try:
            rows.append(_terminal_row(item, lookups, poles))
        except LedgerError as exc:
            rows.append(None)
            errors.append(RowError(index, exc.field, exc.message))
    errors += _locate(rows, lookups)
    errors += _duplicates(rows)
    return rows, sorted(errors, key=lambda e: e.index)


def _terminal_row(item: TerminalIn, lookups: Lookups, poles: dict) -> dict:
    kind = terminal_kind(item.kind)
    code = _check_code(item.code, kind.class_code, kind.key, lookups)
    pole = None
    if item.pole:
        try:
            pole_code = codes.parse(item.pole).value
        except InvalidCode as exc:
            raise Invalid(f"pole: {exc.message}", field="pole") from exc
        pole = poles.get(pole_code)
        if pole is None:
            raise Invalid(f"pole {item.pole!r} is not in the ledger", field="pole")
    lon, lat = item.lon, item.lat
    if (lon is None) != (lat is None):
        raise Invalid("give both longitude and latitude, or neither", field="lon" if lon is None else "lat")
    if lon is None:
        if pole is None:
            raise Invalid("a terminal needs a location: longitude and latitude, or a host pole", field="lon")
        lon, lat = pole.lon, pole.lat
    elif pole is not None and (distance := _distance_m(lon, lat, pole.lon, pole.lat)) > MAX_POLE_DISTANCE_M:
        message = f"terminal is {distance:.0f} m from its pole {pole.code}; a pole's sensors are on it"
        raise Invalid(message, field="lon")
    metrics = item.metrics if item.metrics is not None else list(kind.metrics)
    unknown = [m for m in metrics if m not in METRIC_KEYS]
    if unknown:
        raise Invalid(f"unknown metric(s) {', '.join(unknown)}", field="metrics")
    return {
        "code": code, "name": item.name, "kind": kind.key,
        "department_code": lookups.department(item.department) if item.department else kind.steward,
        "pole": pole.code if pole else None, "division_code": None, "lon": lon, "lat": lat,
        "address": item.address, "install_date": item.install_date, "status": item.status.value,
        "vendor": item.vendor, "model": item.model, "protocol": item.protocol.value,
        "report_interval_s": item.report_interval_s or kind.interval_s,
        "metrics": list(dict.fromkeys(metrics)), "attrs": validate_attrs(kind.key, item.attrs),
        "mn": _check_mn(item), "pw": item.pw,
    }


def _check_mn(item: TerminalIn) -> str | None:
    if item.mn is not None and item.protocol.value != "hj212":
        raise Invalid(f"an MN belongs to an HJ 212 logger; set protocol to hj212 (it is {item.protocol.value})",
                      field="mn")
    return item.mn


def prepare_poles(inputs: list[PoleIn], lookups: Lookups) -> tuple[list[dict | None], list[RowError]]:
    errors: list[RowError] = []
    rows: list[dict | None] = []
    for index, item in enumerate(inputs):
        try:
            rows.append({
                "code": _check_code(item.code, codes.POLE_CLASS, "smart_pole", lookups),
                "name": item.name, "department_code": lookups.department(item.department),
                "division_code": None, "lon": item.lon, "lat": item.lat, "address": item.address,
                "install_date": item.install_date, "status": item.status.value,
            })
        except LedgerError as exc:
            rows.append(None)
            errors.append(RowError(index, exc.field, exc.message))
    errors += _locate(rows, lookups)
    errors += _duplicates(rows)
    return rows, sorted(errors, key=lambda e: e.index)


def _check_code(raw: str | None, class_code: str, kind_key: str, lookups: Lookups) -> str | None:
    if not raw:
        return None
    parsed = codes.parse(raw, lookups.counties)
    if parsed.class_code != class_code:
        raise Invalid(
            f"code {parsed.value} has class {parsed.class_code} ({parsed.kind}) but the kind here is {kind_key} "
            f"(class {class_code})", field="code",
        )
    return parsed.value


def _locate(rows: list[dict | None], lookups: Lookups) -> list[RowError]:
    """Fill ``division_code`` by point-in-polygon; a point outside Suihua is an error."""
    live = [i for i, r in enumerate(rows) if r is not None]
    if not live:
        return []
    lons = np.array([rows[i]["lon"] for i in live], dtype=float)
    lats = np.array([rows[i]["lat"] for i in live], dtype=float)
    found = lookups.index.locate_many(lons, lats)
    errors = []
    for i, division in zip(live, found, strict=True):
        if division is not None:
            rows[i]["division_code"] = division
            continue
        lon, lat = rows[i]["lon"], rows[i]["lat"]
        hint = ""
        if -90 <= lon <= 90 and -90 <= lat <= 180 and lookups.index.locate(lat, lon) is not None:
            hint = "; longitude and latitude look swapped"
        errors.append(RowError(i, "lon", f"point ({lon}, {lat}) lies outside Suihua's divisions{hint}"))
        rows[i] = None
    return errors


def _duplicates(rows: list[dict | None]) -> list[RowError]:
    seen: dict[str, int] = {}
    errors = []
    for i, row in enumerate(rows):
        if row is None or row["code"] is None:
            continue
        if row["code"] in seen:
            first = seen[row["code"]] + 1
            errors.append(RowError(i, "code", f"code {row['code']} appears twice (first in entry {first})"))
        else:
            seen[row["code"]] = i
    return errors


def assign_codes(conn: psycopg.Connection, rows: list[dict], class_of) -> None:
    """Issue a code to every row without one, from its county's serials."""
    wanting: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row["code"] is None:
            wanting[(row["division_code"][:6], class_of(row))].append(row)
    for (county, class_code), group in sorted(wanting.items()):
        first = queries.issue_serials(conn, county, class_code, len(group))
        if first + len(group) - 1 > codes.MAX_SERIAL:
            raise Conflict(f"division {county} has run out of class {class_code} serials")
        for offset, row in enumerate(group):
            row["code"] = codes.make(county, class_code, first + offset).value


@dataclass(frozen=True)
class _Kind:
    """How ``_save`` treats one kind of ledger object."""

    object_type: str
    class_of: object
    existing: object
    snapshot: object
    upsert: object
    related: object


def save_terminals(conn: psycopg.Connection, rows: list[dict], actor: Actor) -> SaveResult:
    """Write prepared terminal rows and their change rows; no-op rows are skipped."""
    return _save(conn, rows, actor, _TERMINALS)


def save_poles(conn: psycopg.Connection, rows: list[dict], actor: Actor) -> SaveResult:
    """Write prepared pole rows and their change rows; no-op rows are skipped."""
    return _save(conn, rows, actor, _POLES)


def _save(conn: psycopg.Connection, rows: list[dict], actor: Actor, kind: _Kind) -> SaveResult:
    assign_codes(conn, rows, kind.class_of)
    existing = kind.existing(conn, [r["code"] for r in rows])
    changed, changes = [], []
    for row in rows:
        current = existing.get(row["code"])
        if "pw" in row and row["pw"] is None and current is not None:
            row["pw"] = current.pw  # a blank password (an exported sheet has none) keeps the current one
        before = snapshot(current)
        after = kind.snapshot(row)
        if "pw" in row:
            pw_changed(before, after, current and current.pw, row["pw"])
        if before == after:
            continue
        changed.append(row)
        action = "update" if before else "create"
        changes.append(change_row(actor, action, kind.object_type, row["code"], before, after,
                                  related=kind.related(row)))
    if changed:
        kind.upsert(conn, changed)
        queries.insert_changes(conn, changes)
    created = sum(1 for c in changes if c["action"] == "create")
    return SaveResult(created, len(changes) - created, len(rows) - len(changes), [r["code"] for r in rows])


def _terminal_snapshot(row: dict) -> dict:
    """The change-log form of a prepared row: the same keys and JSON values as ``snapshot(Terminal)``."""
    return {
        "code": row["code"], "name": row["name"], "kind": row["kind"], "department": row["department_code"],
        "pole": row["pole"], "division": row["division_code"], "lon": row["lon"], "lat": row["lat"],
        "address": row["address"], "install_date": row["install_date"] and row["install_date"].isoformat(),
        "status": row["status"], "vendor": row["vendor"], "model": row["model"], "protocol": row["protocol"],
        "report_interval_s": row["report_interval_s"], "metrics": row["metrics"], "attrs": row["attrs"],
        "mn": row["mn"], "pw": pw_state(row["pw"]),
    }


def _pole_snapshot(row: dict) -> dict:
    return snapshot({
        "code": row["code"], "name": row["name"], "department": row["department_code"],
        "division": row["division_code"], "lon": row["lon"], "lat": row["lat"], "address": row["address"],
        "install_date": row["install_date"], "status": row["status"],
    })


_TERMINALS = _Kind("terminal", lambda r: terminal_kind(r["kind"]).class_code, queries.terminals_by_code,
                   _terminal_snapshot, queries.upsert_terminals, lambda r: ("pole", r["pole"]) if r["pole"] else None)
_POLES = _Kind("pole", lambda r: codes.POLE_CLASS, queries.poles_by_code, _pole_snapshot, queries.upsert_poles,
               lambda r: None)


def create_terminal(conn: psycopg.Connection, item: TerminalIn, actor: Actor, *, replace: bool = False) -> str:
    """Create one terminal (or, with ``replace``, create or replace it); returns its code."""
    lookups = Lookups.load(conn)
    rows, errors = prepare_terminals(conn, [item], lookups)
    raise_errors(errors)
    if not replace and rows[0]["code"] and queries.get_terminal(conn, rows[0]["code"]):
        raise Conflict(f"terminal {rows[0]['code']} already exists", field="code")
    return save_terminals(conn, rows, actor).codes[0]


def update_terminal(conn: psycopg.Connection, code: str, patch: TerminalPatch, actor: Actor) -> str:
    current = require_terminal(conn, code)
    merged = current.model_dump(
        include={"name", "department", "pole", "lon", "lat", "address", "install_date", "status", "vendor",
                 "model", "protocol", "report_interval_s", "metrics", "attrs", "mn"}
    ) | patch.model_dump(exclude_unset=True)
    if "pole" in patch.model_fields_set and not {"lon", "lat"} & patch.model_fields_set:
        merged.pop("lon"), merged.pop("lat")  # moving to another pole moves the terminal with it
    return create_terminal(conn, TerminalIn(code=current.code, kind=current.kind, **merged), actor, replace=True)


def delete_terminal(conn: psycopg.Connection, code: str, actor: Actor) -> None:
    current = require_terminal(conn, code)
    queries.delete_terminal(conn, current.code)
    related = ("pole", current.pole) if current.pole else None
    queries.insert_changes(conn, [change_row(actor, "delete", "terminal", current.code, snapshot(current), None,
                                             related=related)])


def require_terminal(conn: psycopg.Connection, code: str, visible_to: str | None = None):
    """The terminal; NotFound when it is not in the ledger or (with ``visible_to``) not in that department's view."""
    terminal = queries.get_terminal(conn, _canonical(code), visible_to)
    if terminal is None:
        raise NotFound(f"terminal {code} is not in the ledger", field="code")
    return terminal


def create_pole(conn: psycopg.Connection, item: PoleIn, actor: Actor, *, replace: bool = False) -> str:
    rows, errors = prepare_poles([item], Lookups.load(conn))
    raise_errors(errors)
    if not replace and rows[0]["code"] and queries.get_pole(conn, rows[0]["code"]):
        raise Conflict(f"pole {rows[0]['code']} already exists", field="code")
    return save_poles(conn, rows, actor).codes[0]


def update_pole(conn: psycopg.Connection, code: str, patch: PolePatch, actor: Actor) -> str:
    current = require_pole(conn, code)
    merged = current.model_dump(include={"name", "department", "lon", "lat", "address", "install_date", "status"})
    merged |= patch.model_dump(exclude_unset=True)
    code = create_pole(conn, PoleIn(code=current.code, **merged), actor, replace=True)
    if {"lon", "lat"} & patch.model_fields_set:
        _move_hosted_terminals(conn, current.code, actor)
    return code


def _move_hosted_terminals(conn: psycopg.Connection, pole_code: str, actor: Actor) -> None:
    """A pole that moves takes its terminals with it."""
    hosted = queries.search_terminals(conn, queries.Search(pole=pole_code), limit=10_000)
    items = [TerminalIn(**t.model_dump(exclude={"division", "lon", "lat", "created_at", "updated_at"})) for t in hosted]
    if items:
        rows, errors = prepare_terminals(conn, items, Lookups.load(conn))
        raise_errors(errors)
        save_terminals(conn, rows, actor)


def delete_pole(conn: psycopg.Connection, code: str, actor: Actor) -> None:
    current = require_pole(conn, code)
    if current.terminal_count:
        raise Conflict(f"pole {current.code} hosts {current.terminal_count} terminal(s); move or delete them first")
    queries.delete_pole(conn, current.code)
    queries.insert_changes(conn, [change_row(actor, "delete", "pole", current.code, snapshot(current), None)])


def require_pole(conn: psycopg.Connection, code: str, visible_to: str | None = None):
    pole = queries.get_pole(conn, _canonical(code), visible_to)
    if pole is None:
        raise NotFound(f"pole {code} is not in the ledger", field="code")
    return pole


def raise_errors(errors: list[RowError]) -> None:
    if errors:
        raise Invalid("; ".join(e.message for e in errors), field=errors[0].field)


def _canonical(code: str) -> str:
    return codes.normalise(code)


def _distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def issue_codes(conn: psycopg.Connection, division: str, kind: str, count: int, actor: Actor) -> list[str]:
    """Reserve ``count`` new codes for a kind (or ``smart_pole``) in a county, e.g. for labels printed ahead."""
    lookups = Lookups.load(conn)
    if division not in lookups.counties:
        raise Invalid(f"division {division!r} is not a county-level division of Suihua", field="division")
    class_code = codes.POLE_CLASS if kind == "smart_pole" else terminal_kind(kind).class_code
    if not 1 <= count <= 10_000:
        raise Invalid(f"count must be between 1 and 10000, got {count}", field="count")
    first = queries.issue_serials(conn, division, class_code, count)
    if first + count - 1 > codes.MAX_SERIAL:
        raise Conflict(f"division {division} has run out of class {class_code} serials")
    issued = [codes.make(division, class_code, first + i).value for i in range(count)]
    summary = f"issued {count} code(s) {issued[0]}..{issued[-1]}"
    queries.insert_changes(conn, [change_row(actor, "create", "code_sequence", f"{division}{class_code}", None,
                                             {"first": issued[0], "last": issued[-1], "count": count},
                                             summary=summary)])
    return issued
