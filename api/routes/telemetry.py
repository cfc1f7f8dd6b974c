"""Telemetry: raw and bucketed readings, newest values, connection state, dead letters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.auth import Reader
from api.deps import ConnDep
from api.routes.filters import TerminalSearch
from api.routes.paging import After, Limit, cursor, page
from api.schemas import (
    Buckets,
    DeadLetter,
    Instant,
    Page,
    PoleLatest,
    Readings,
    StateCount,
    TerminalLatest,
    TerminalState,
    TerminalStateRow,
)
from devices import metric as metric_spec
from ingest import queries as store
from registry import queries, service
from registry.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["telemetry"])

_INTERVAL = re.compile(r"^(\d+)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_BUCKETS = 20_000


def _interval(text: str) -> dt.timedelta:
    match = _INTERVAL.match(text)
    if not match or int(match.group(1)) == 0:
        raise Invalid(f"interval must look like 30s, 15m, 1h or 1d, got {text!r}", field="interval")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _window(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    end = end or dt.datetime.now(dt.UTC)
    start = start or end - dt.timedelta(days=1)
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise Invalid(f"'{name}' needs a time zone (Z or +08:00)", field=name)
    if start >= end:
        raise Invalid("'from' must be before 'to'", field="from")
    return start, end


def _cursor(text: str | None) -> tuple[dt.datetime, str] | None:
    if text is None:
        return None
    try:
        ts, metric = text.rsplit("|", 1)
        return dt.datetime.fromisoformat(ts), metric
    except ValueError as exc:
        raise Invalid(f"cursor {text!r} is not one this API gave out", field="after") from exc


@router.get("/terminals/{code}/readings", response_model=Readings | Buckets,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
def terminal_readings(
    conn: ConnDep,
    who: Reader,
    code: str,
    metric: Annotated[str | None, Query(description="one metric key; all when left out")] = None,
    start: Annotated[Instant | None, Query(alias="from", description="RFC 3339; default: 24 h before `to`")] = None,
    end: Annotated[Instant | None, Query(alias="to", description="RFC 3339, exclusive; default: now")] = None,
    interval: Annotated[str | None, Query(description="bucket size (30s, 15m, 1h, 1d): avg/min/max/count")] = None,
    after: Annotated[str | None, Query(description="cursor: the `next` of the previous page (raw readings)")] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 1_000,
    format: Literal["json", "csv"] = "json",
):
    """Readings of one terminal by observation time, raw (paged) or in time buckets."""
    terminal = service.require_terminal(conn, code, who.scope)
    if metric is not None and metric not in terminal.metrics:
        raise Invalid(f"terminal {terminal.code} does not report {metric!r}; it reports {terminal.metrics}",
                      field="metric")
    window = _window(start, end)
    terminal_id = store.terminal_ids(conn, [terminal.code])[terminal.code]
    if interval is not None:
        size = _interval(interval)
        if (window[1] - window[0]) / size > MAX_BUCKETS:
            raise Invalid(f"{interval} buckets over that window are more than {MAX_BUCKETS}; widen the interval",
                          field="interval")
        rows = store.buckets(conn, terminal_id, metric, *window, size)
        return _csv(rows) if format == "csv" else {"code": terminal.code, "interval": interval, "data": rows}
    rows = store.readings(conn, terminal_id, metric, *window, _cursor(after), limit + 1)
    next_cursor = f"{rows[limit - 1]['ts'].isoformat()}|{rows[limit - 1]['metric']}" if len(rows) > limit else None
    rows = rows[:limit]
    if format == "csv":
        return _csv(rows)
    return {"code": terminal.code, "data": rows, "next": next_cursor}


@router.get("/terminals/{code}/latest", response_model=TerminalLatest)
def terminal_latest(conn: ConnDep, who: Reader, code: str) -> dict:
    """The newest value of each metric, with unit, and the terminal's connection state."""
    terminal = service.require_terminal(conn, code, who.scope)
    return _latest(conn, [terminal.code])[0]


@router.get("/poles/{code}/latest", response_model=PoleLatest)
def pole_latest(conn: ConnDep, who: Reader, code: str) -> dict:
    """Newest values and state of every terminal the pole carries that the caller reads."""
    pole = service.require_pole(conn, code, who.scope)
    search = queries.Search(pole=pole.code, visible_to=who.scope)
    hosted = [t.code for t in queries.search_terminals(conn, search, 10_000)]
    return {"pole": pole.code, "terminals": _latest(conn, hosted) if hosted else []}


def _latest(conn, codes: list[str]) -> list[dict]:
    ids = store.terminal_ids(conn, codes)
    values: dict[str, list[dict]] = {code: [] for code in codes}
    for row in store.latest(conn, list(ids.values())):
        spec = metric_spec(row["metric"])
        values[row["code"]].append({"metric": row["metric"], "ts": row["ts"], "value": row["value"],
                                    "flag": row["flag"], "unit": spec.unit if spec else None})
    states = {row["code"]: row for row in store.states(conn, list(ids.values()))}
    return [{"code": code, "state": states[code]["state"], "last_seen_at": states[code]["last_seen_at"],
             "readings": values[code]} for code in codes]


@router.get("/terminals/{code}/state", response_model=TerminalState)
def terminal_state(conn: ConnDep, who: Reader, code: str) -> dict:
    """online, offline (its last will or its pole's), silent (nothing for 3 expected intervals) or never."""
    terminal = service.require_terminal(conn, code, who.scope)
    ids = store.terminal_ids(conn, [terminal.code])
    return store.states(conn, list(ids.values()))[0]


@router.get("/terminal-states", response_model=Page[TerminalStateRow])
def terminal_states(
    conn: ConnDep,
    search: TerminalSearch,
    state: Literal["online", "offline", "silent", "never"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> dict:
    """Which terminals are online, offline (their or their pole's last will), silent (nothing for three expected
    intervals) or never heard, with the terminal search filters: e.g. every silent gas sensor in a county."""
    rows = store.state_list(conn, search, state, limit + 1)
    next_cursor = rows[limit - 1]["code"] if len(rows) > limit else None
    return {"data": rows[:limit], "next": next_cursor}


@router.get("/terminal-states/summary", response_model=Page[StateCount])
def terminal_state_summary(conn: ConnDep, search: TerminalSearch) -> Page[StateCount]:
    """Active terminals per department and state: the data-completeness view for each steward; every count in one
    page (`next` is null)."""
    return Page[StateCount](data=store.state_counts(conn, search), next=None)


@router.get("/dead-letters", response_model=Page[DeadLetter])
def dead_letters(
    conn: ConnDep,
    who: Reader,
    publisher: Annotated[str | None, Query(description="city code in the topic")] = None,
    reason: Annotated[str | None, Query(description="text in the reason")] = None,
    start: Annotated[Instant | None, Query(alias="from")] = None,
    end: Annotated[Instant | None, Query(alias="to")] = None,
    after: After = None,
    limit: Limit = 100,
) -> Page[DeadLetter]:
    """Messages refused in whole or in part, newest first, one page at a time, with the reason and the raw
    payload."""
    rows = store.dead_letters(conn, publisher=publisher, reason=reason, start=start, end=end,
                              before_id=cursor(after), limit=limit + 1, visible_to=who.scope)
    for row in rows:
        row["payload_text"] = bytes(row.pop("payload_head")).decode("utf-8", "replace")
    data, next_cursor = page(rows, limit)
    return Page[DeadLetter](data=data, next=next_cursor)


def _csv(rows: list[dict]) -> Response:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    return Response(out.getvalue().encode("utf-8-sig"), media_type="text/csv; charset=utf-8")
