"""Reading the departments' census spreadsheets: CSV or XLSX, UTF-8 (with or without
BOM), GBK/GB18030 or UTF-16, Chinese or English headers.

An import holds every row in memory until it commits (about 4 KB a row once checked), so a sheet may have at most
``MAX_ROWS`` rows: reading stops at the first row past it, and an .xlsx whose parts unpack to more than
``MAX_XLSX_UNPACKED`` bytes (a zip bomb, or far too many rows) is refused before it is opened.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import unicodedata
import zipfile
from dataclasses import dataclass

from registry.errors import Invalid

MAX_ROWS = 100_000
MAX_XLSX_UNPACKED = 256 * 2**20
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"


@dataclass(frozen=True)
class Sheet:
    headers: list[str]
    rows: list[tuple[int, list[str]]]
    """(spreadsheet row number, cell texts); the header is row 1."""
    encoding: str


def read_sheet(data: bytes, filename: str = "") -> Sheet:
    """Parse an uploaded file; raises ``Invalid`` with a message a clerk can act on."""
    if not data.strip():
        raise Invalid("the file is empty", field="file")
    if data.startswith(_OLE_MAGIC) or filename.lower().endswith(".xls"):
        raise Invalid("legacy .xls files are not read; save the sheet as .xlsx or CSV", field="file")
    if data.startswith(_ZIP_MAGIC):
        return _read_xlsx(data)
    return _read_csv(data)


def decode(data: bytes) -> tuple[str, str]:
    """The text and the encoding it was in: UTF-8 (BOM or not), UTF-16 with BOM, else GB18030 (GBK)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"the file is neither UTF-8 nor GBK (undecodable byte at offset {exc.start}); "
            "save it as CSV UTF-8 or as .xlsx", field="file"
        ) from exc


def _read_csv(data: bytes) -> Sheet:
    text, encoding = decode(data)
    if "\x00" in text:
        raise Invalid("the file contains NUL bytes; is it really a CSV?", field="file")
    first_line = text.split("\n", 1)[0]
    delimiter = max(",\t;", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        records = _bounded(reader)
    except csv.Error as exc:
        raise Invalid(f"the CSV cannot be read: {exc}", field="file") from exc
    return _sheet(records, encoding)


def _read_xlsx(data: bytes) -> Sheet:
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(part.file_size for part in archive.infolist())
        workbook = None if unpacked > MAX_XLSX_UNPACKED else load_workbook(io.BytesIO(data), read_only=True,
                                                                           data_only=True)
    except Exception as exc:  # zipfile and openpyxl raise many kinds for a broken file
        raise Invalid(f"the .xlsx file cannot be opened: {exc}", field="file") from exc
    if workbook is None:
        raise Invalid(f"the .xlsx file unpacks to {unpacked // 2**20} MiB, more than {MAX_XLSX_UNPACKED // 2**20} "
                      "MiB; split it", field="file")
    try:
        sheet = workbook.worksheets[0]
        records = _bounded([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
    finally:
        workbook.close()
    return _sheet(records, "xlsx")


def _bounded(records) -> list[list[str]]:
    """The header and at most ``MAX_ROWS`` rows; the rest of the file is not read."""
    kept = list(itertools.islice(records, MAX_ROWS + 1))
    if any(any(cell.strip() for cell in row) for row in records):
        raise Invalid(f"the sheet has more than {MAX_ROWS:,} rows; split it into files of at most {MAX_ROWS:,}",
                      field="file")
    return kept


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value).strip()


def _sheet(records: list[list[str]], encoding: str) -> Sheet:
    while records and not any(c.strip() for c in records[-1]):
        records.pop()
    if not records:
        raise Invalid("the file has no header row", field="file")
    headers = [h.strip() for h in records[0]]
    while headers and not headers[-1]:
        headers.pop()
    rows = [(number, [c.strip() for c in cells]) for number, cells in enumerate(records[1:], start=2)]
    return Sheet(headers, rows, encoding)


def header_key(header: str) -> str:
    """Headers compared without case, width, spaces or a unit in brackets: 上报间隔（秒） = 上报间隔(秒) = 上报间隔."""
    text = unicodedata.normalize("NFKC", header).strip().lower().replace(" ", "").replace("_", "")
    if text.endswith(")") and "(" in text:
        text = text[: text.rindex("(")]
    return text
