"""Bulk import of census sheets, exports and the blank template."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.auth import Steward
from api.deps import ConnDep
from api.geojson import TerminalCollection, inline_schema
from api.guard import MAX_UPLOAD_BYTES
from api.routes.filters import TerminalSearch
from api.schemas import BINARY, ErrorOut
from registry import exporter, queries
from registry.importer import run_import

router = APIRouter(prefix="/api/v1/ledger", tags=["import and export"])

_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_GEOJSON = {"schema": inline_schema(TerminalCollection)}


class RowProblem(BaseModel):
    row: int = Field(description="spreadsheet row number; the header is row 1")
    column: str | None
    message: str


class ImportReport(BaseModel):
    rows: int
    poles: int
    terminals: int
    created: int
    updated: int
    unchanged: int
    rejected: int = Field(description="rows with at least one problem")
    errors: list[RowProblem]
    encoding: str
    batch_id: str = Field(description="the change log's batch id of this import")
    dry_run: bool
    applied: bool


class ImportRefused(ImportReport):
    """The report of a file that was not applied, with the fields of every error body."""

    detail: str
    field: str | None = "file"


@router.post("/import", max_body_size=MAX_UPLOAD_BYTES, response_model=ImportReport, responses={
    413: {"model": ErrorOut, "description": f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB; split it",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    422: {"model": ImportRefused | ErrorOut,
          "description": "not applied: the report of every bad row, or an unreadable file"},
})
def import_sheet(
    conn: ConnDep,
    who: Steward,
    file: Annotated[UploadFile, File(description="CSV (UTF-8, UTF-8 BOM or GBK) or XLSX census sheet")],
    dry_run: Annotated[bool, Query(description="check everything, write nothing")] = False,
    skip_invalid: Annotated[bool, Query(description="apply the good rows even if some are bad")] = False,
) -> JSONResponse:
    """Upsert poles and terminals by city code. Every bad row is reported with its row number, column and
    reason; unless ``skip_invalid``, nothing is written when any row is bad (422). A steward admin's rows must all
    be its own department's."""
    report = run_import(conn, file.file.read(), file.filename or "", who.actor(), dry_run=dry_run,
                        skip_invalid=skip_invalid, steward=who.department if who.scope else None)
    if report.applied or (dry_run and not report.errors):
        return JSONResponse(dataclasses.asdict(report))
    detail = f"{report.rejected} of {report.rows} row(s) are invalid; nothing was written"
    return JSONResponse({"detail": detail, "field": "file", **dataclasses.asdict(report)}, status_code=422)


@router.get("/export", response_class=Response, responses={200: {"content": {
    "text/csv": BINARY, _MEDIA["xlsx"]: BINARY, "application/geo+json": _GEOJSON}}})
def export(
    conn: ConnDep,
    search: TerminalSearch,
    format: Literal["csv", "xlsx", "geojson"] = "csv",
    lang: Annotated[Literal["zh", "en"], Query(description="header language of CSV and XLSX")] = "zh",
) -> Response:
    """The terminals matching the filters, in a form the import reads back."""
    terminals = queries.search_terminals(conn, search, limit=1_000_000)
    if format == "geojson":
        return JSONResponse(exporter.to_geojson(terminals), media_type="application/geo+json")
    body = exporter.to_csv(terminals, lang) if format == "csv" else exporter.to_xlsx(terminals, lang)
    return Response(body, media_type=_MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="ganzhi-terminals.{format}"'})


@router.get("/template", response_class=Response,
            responses={200: {"content": {"text/csv": BINARY, _MEDIA["xlsx"]: BINARY}}})
def template(format: Literal["csv", "xlsx"] = "xlsx") -> Response:
    """A blank census sheet with the headers the import reads (XLSX has a help sheet of accepted values)."""
    body = exporter.template_csv() if format == "csv" else exporter.template_xlsx()
    return Response(body, media_type=_MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="ganzhi-ledger-template.{format}"'})
