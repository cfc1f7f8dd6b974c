"""Export of the ledger as CSV (UTF-8 with BOM, opens in Excel), XLSX and GeoJSON, and the
blank import template. Exports use the import's headers, so an export can be edited and
imported back."""

from __future__ import annotations

import csv
import io
import json

from devices import KINDS, METRICS
from registry.columns import ATTR_COLUMNS, TERMINAL_COLUMNS
from registry.models import Terminal
from registry.reference import DEPARTMENTS

_FIELDS = ("code", "name", "kind", "department", "pole", "lon", "lat", "division", "address", "install_date",
           "status", "vendor", "model", "protocol", "report_interval_s", "metrics", "attrs", "mn")
_KIND_ZH = {k.key: k.name_zh for k in KINDS}
_DEPARTMENT_NAME = {d.code: d.name for d in DEPARTMENTS}


def headers(language: str = "zh") -> list[str]:
    position = 0 if language == "zh" else 1
    return [TERMINAL_COLUMNS[f][position] for f in _FIELDS]


def _cells(t: Terminal, language: str) -> list:
    zh = language == "zh"
    return [
        t.code, t.name, _KIND_ZH[t.kind] if zh else t.kind, _DEPARTMENT_NAME.get(t.department, t.department) if zh
        else t.department, t.pole or "", t.lon, t.lat, t.division, t.address or "",
        t.install_date.isoformat() if t.install_date else "", t.status.value, t.vendor or "", t.model or "",
        t.protocol.value, t.report_interval_s, ",".join(t.metrics),
        json.dumps(t.attrs, ensure_ascii=False) if t.attrs else "", t.mn or "",
    ]


def to_csv(terminals: list[Terminal], language: str = "zh") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers(language))
    for terminal in terminals:
        writer.writerow(_cells(terminal, language))
    return out.getvalue().encode("utf-8-sig")


def to_xlsx(terminals: list[Terminal], language: str = "zh") -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("terminals")
    sheet.append(headers(language))
    for terminal in terminals:
        sheet.append(_cells(terminal, language))
    _append_help(workbook)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def to_geojson(terminals: list[Terminal]) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": t.code,
                "geometry": {"type": "Point", "coordinates": [t.lon, t.lat]},
                "properties": t.model_dump(mode="json", exclude={"lon", "lat"}),
            }
            for t in terminals
        ],
    }


def template_csv() -> bytes:
    return to_csv([])


def template_xlsx() -> bytes:
    return to_xlsx([])


def _append_help(workbook) -> None:
    """A second sheet listing what the coded columns accept."""
    sheet = workbook.create_sheet("说明 help")
    sheet.append(["设备类型 kind", "key", "class", "默认部门 steward", "监测指标 metrics", "上报间隔(秒)"])
    for kind in KINDS:
        sheet.append([kind.name_zh, kind.key, kind.class_code, kind.steward, ",".join(kind.metrics), kind.interval_s])
    sheet.append(["智慧杆", "smart_pole", "10", "", "", ""])
    sheet.append([])
    sheet.append(["所属部门 department", "code"])
    for department in DEPARTMENTS:
        sheet.append([department.name, department.code])
    sheet.append([])
    sheet.append(["监测指标 metric", "key", "unit"])
    for metric in METRICS:
        sheet.append([metric.name_zh, metric.key, metric.unit])
    sheet.append([])
    sheet.append(["属性列 attribute columns", "key"])
    for attr, (zh, _) in ATTR_COLUMNS.items():
        sheet.append([zh, attr])
    sheet.append([])
    sheet.append(["状态 status", "planned / active / maintenance / retired (规划 / 在用 / 维护 / 停用)"])
