"""Bulk import of the departments' census sheets into the ledger.

Every row is checked and every problem reported as "row N, column: reason". The file
is applied in one transaction under one batch id; a dry run does the same work and
rolls it back, so it reports exactly what a real run would do. Rows whose kind is a
smart pole (智慧杆) become poles, written before the terminals that name them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from pydantic import ValidationError

from registry import queries, service
from registry.changes import Actor
from registry.columns import DERIVED, TERMINAL_COLUMNS, header_index, parse_attr, parse_cell
from registry.errors import Invalid
from registry.lookups import Lookups
from registry.models import PoleIn, TerminalIn
from registry.tabular import Sheet, header_key, read_sheet

POLE_KINDS = frozenset({"smart_pole", "智慧杆", "智慧灯杆", "多功能杆", "多功能智慧杆", "杆体", "10"})
_POLE_FIELDS = ("code", "name", "department", "lon", "lat", "address", "install_date", "status")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RowProblem:
    row: int
    column: str | None
    message: str


@dataclass
class ImportReport:
    rows: int = 0
    poles: int = 0
    terminals: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowProblem] = field(default_factory=list)
    encoding: str = ""
    batch_id: str = ""
    dry_run: bool = False
    applied: bool = False


def import_file(
    conn: psycopg.Connection, data: bytes, filename: str, actor: Actor, *,
    dry_run: bool = False, skip_invalid: bool = False, progress: Progress | None = None, steward: str | None = None,
) -> ImportReport:
    """Check and (unless ``dry_run``, or when rows are bad and not ``skip_invalid``) apply a census file.
    With ``steward``, a row of another department (or one that would overwrite another's object) is bad."""
    sheet = read_sheet(data, filename)
    columns = _map_columns(sheet.headers)
    report = ImportReport(rows=len(sheet.rows), encoding=sheet.encoding, batch_id=str(actor.batch_id), dry_run=dry_run)
    headers = {name: sheet.headers[i] for i, name in enumerate(columns) if name}
    poles, terminals = _read_rows(sheet, columns, headers, report, progress)
    report.poles, report.terminals = len(poles), len(terminals)
    with conn.transaction():
        lookups = Lookups.load(conn)
        prepared = _own_only(conn, service.prepare_poles([p for _, p in poles], lookups), steward,
                             queries.poles_by_code)
        pole_rows = _checked(prepared, poles, headers, report)
        _save(service.save_poles, conn, pole_rows, actor, report)
        if progress:
            progress("poles", len(poles), len(poles))
        prepared = _own_only(conn, service.prepare_terminals(conn, [t for _, t in terminals], lookups), steward,
                             queries.terminals_by_code)
        term_rows = _checked(prepared, terminals, headers, report)
        report.errors.sort(key=lambda p: p.row)
        report.rejected = len({p.row for p in report.errors})
        if report.errors and not skip_invalid:
            raise _Rollback(report)
        _save(service.save_terminals, conn, term_rows, actor, report)
        if progress:
            progress("terminals", len(terminals), len(terminals))
        if dry_run:
            raise _Rollback(report)
    report.applied = True
    return report


def _own_only(conn: psycopg.Connection, prepared: tuple[list, list], steward: str | None, existing) -> tuple:
    """Refuse the rows a steward admin may not write: another department's, or overwriting another's object."""
    rows, errors = prepared
    if steward is None:
        return prepared
    current = existing(conn, [r["code"] for r in rows if r is not None and r["code"]])
    for index, row in enumerate(rows):
        if row is None:
            continue
        owner = current[row["code"]].department if row["code"] in current else row["department_code"]
        foreign = {owner, row["department_code"]} - {steward}
        if foreign:
            message = f"this is {', '.join(sorted(foreign))}'s; this account writes only {steward}'s ledger"
            errors.append(service.RowError(index, "department", message))
            rows[index] = None
    return rows, errors


class _Rollback(Exception):
    def __init__(self, report: ImportReport) -> None:
        self.report = report


def run_import(conn: psycopg.Connection, data: bytes, filename: str, actor: Actor, **options) -> ImportReport:
    """``import_file`` that returns its report whether the file was applied or rolled back."""
    try:
        return import_file(conn, data, filename, actor, **options)
    except _Rollback as rollback:
        return rollback.report


def _map_columns(headers: list[str]) -> list[str | None]:
    index = header_index()
    columns: list[str | None] = []
    unknown, seen = [], {}
    for position, header in enumerate(headers):
        if not header:
            columns.append(None)
            continue
        name = index.get(header_key(header))
        if name is None:
            unknown.append(header)
        elif name in seen:
            raise Invalid(f"columns {headers[seen[name]]!r} and {header!r} both mean {name}", field="columns")
        seen[name] = position
        columns.append(name)
    if unknown:
        known = ", ".join(zh for zh, _, _ in TERMINAL_COLUMNS.values())
        raise Invalid(f"unknown column(s) {', '.join(map(repr, unknown))}; known columns include: {known}",
                      field="columns")
    missing = [TERMINAL_COLUMNS[f][0] for f in ("name", "kind") if f not in seen]
    if missing:
        raise Invalid(f"required column(s) missing: {', '.join(missing)}", field="columns")
    return columns


def _read_rows(sheet: Sheet, columns: list[str | None], headers: dict, report: ImportReport,
               progress: Progress | None):
    poles: list[tuple[int, PoleIn]] = []
    terminals: list[tuple[int, TerminalIn]] = []
    for done, (number, cells) in enumerate(sheet.rows, start=1):
        if progress and (done % 5000 == 0 or done == len(sheet.rows)):
            progress("read", done, len(sheet.rows))
        if not any(cells):
            report.errors.append(RowProblem(number, None, "the row is empty; delete it or fill it in"))
            continue
        values, problems = _row_values(cells, columns, headers, number)
        report.errors += problems
        if problems:
            continue
        is_pole = str(values.get("kind", "")).lower() in POLE_KINDS
        try:
            if is_pole:
                poles.append((number, PoleIn(**{k: v for k, v in values.items() if k in _POLE_FIELDS})))
            else:
                terminals.append((number, TerminalIn(**values)))
        except ValidationError as exc:
            report.errors += _validation_problems(exc, number, headers)
    return poles, terminals


def _row_values(cells: list[str], columns: list[str | None], headers: dict, number: int):
    values: dict = {}
    attrs: dict = {}
    problems = []
    for name, text in zip(columns, cells, strict=False):
        if name is None or name in DERIVED or not text:
            continue
        try:
            if name.startswith("attr:"):
                attrs[name[5:]] = parse_attr(name[5:], text)
            else:
                values[name] = parse_cell(name, text)
        except Invalid as exc:
            problems.append(RowProblem(number, headers[name], exc.message))
    if attrs:
        values["attrs"] = {**values.get("attrs", {}), **attrs}
    return values, problems


def _validation_problems(exc: ValidationError, number: int, headers: dict) -> list[RowProblem]:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else None
        column = headers.get(name, name)
        problems.append(RowProblem(number, column, error["msg"]))
    return problems


def _checked(result, items: list[tuple[int, object]], headers: dict, report: ImportReport) -> list[dict]:
    rows, errors = result
    for error in errors:
        column = headers.get(error.field) or TERMINAL_COLUMNS.get(error.field, (error.field,))[0]
        report.errors.append(RowProblem(items[error.index][0], column, error.message))
    return [row for row in rows if row is not None]


def _save(save, conn: psycopg.Connection, rows: list[dict], actor: Actor, report: ImportReport) -> None:
    if not rows:
        return
    result = save(conn, rows, actor)
    report.created += result.created
    report.updated += result.updated
    report.unchanged += result.unchanged
