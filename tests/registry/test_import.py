"""Census sheets: CSV and XLSX, UTF-8, BOM and GBK, Chinese and English headers; every bad
row reported; all or nothing."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook

from registry import audit, codes, exporter, queries, service
from registry.changes import Actor
from registry.errors import Invalid
from registry.importer import run_import
from tests.factories import pole_in

HEADER_ZH = "设备编码,设备名称,设备类型,所属部门,经度,纬度,安装地址,安装日期,状态,河流,里程(km),水质目标"
ROWS_ZH = [
    ",呼兰河05号水质自动站,水质自动监测站,生态环境局,126.94,46.53,呼兰河K162,2023年5月1日,在用,呼兰河,162,Ⅲ类",
    ",北林区中兴大街空气微站,空气质量监测微站,绥化市生态环境局,126.98,46.64,中兴大街,2024/06/30,运行,,,",
    ",肇东燃气阀井甲烷,methane_detector,住建局,125.98,46.07,,,维护,,,",
]


def _csv(header: str, rows: list[str], encoding: str = "utf-8") -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode(encoding)


def _import(conn, data: bytes, name: str = "census.csv", **options):
    return run_import(conn, data, name, Actor("clerk"), **options)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_chinese_csv_in_every_encoding(conn, encoding):
    report = _import(conn, _csv(HEADER_ZH, ROWS_ZH, encoding))
    assert report.errors == []
    assert (report.applied, report.created, report.terminals) == (True, 3, 3)
    assert report.encoding == {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gbk": "gbk"}[encoding]
    station = queries.search_terminals(conn, queries.Search(kind="water_quality_station"), 10)[0]
    assert station.attrs == {"river": "呼兰河", "chainage_km": 162.0, "target_class": "III", "water_body": "river"}
    assert station.install_date.isoformat() == "2023-05-01"
    gas = queries.search_terminals(conn, queries.Search(kind="methane_detector"), 10)[0]
    assert (gas.department, gas.status.value, gas.division) == ("zjj", "maintenance", "231282")


def test_english_headers_and_xlsx(conn):
    book = Workbook()
    sheet = book.active
    sheet.append(["code", "name", "kind", "department", "lon", "lat", "status", "report_interval_s", "metrics"])
    sheet.append([None, "Anda PM station", "air_sensor", "sthjj", 125.33, 46.40, "active", 60, "a34004,a34002"])
    out = io.BytesIO()
    book.save(out)
    report = _import(conn, out.getvalue(), "census.xlsx")
    assert (report.applied, report.created, report.encoding) == (True, 1, "xlsx")
    terminal = queries.search_terminals(conn, queries.Search(), 10)[0]
    assert (terminal.report_interval_s, terminal.metrics) == (60, ["a34004", "a34002"])


def test_every_bad_row_is_reported_and_nothing_is_written(conn):
    rows = [
        ROWS_ZH[0],
        ",坏坐标,空气质量监测微站,生态环境局,abc,46.64,,,,,,",                   # row 3: not a number
        ",哈尔滨的站,空气质量监测微站,生态环境局,126.63,45.75,,,,,,",             # row 4: outside Suihua
        ",,空气质量监测微站,生态环境局,126.98,46.64,,,,,,",                       # row 5: no name
        ",,,,,,,,,,,",                                                            # row 6: empty
        "23120221000017C,错误编码,水质自动监测站,生态环境局,126.9,46.7,,,,呼兰河,1,III",  # row 7: check char
        ",无类别河站,水质自动监测站,生态环境局,126.9,46.7,,,,呼兰河,1,",             # row 8: attrs
        ",日期错,空气质量监测微站,环保部门,126.98,46.64,,2024-13-45,,,,",           # row 9: date, department
    ]
    report = _import(conn, _csv(HEADER_ZH, rows))
    assert not report.applied
    by_row = {}
    for problem in report.errors:
        by_row.setdefault(problem.row, []).append((problem.column, problem.message))
    assert sorted(by_row) == [3, 4, 5, 6, 7, 8, 9]
    assert by_row[3] == [("经度", "'abc' is not a number")]
    assert "outside Suihua" in by_row[4][0][1]
    assert by_row[5] == [("设备名称", "Field required")]
    assert "empty" in by_row[6][0][1]
    assert by_row[7][0][0] == "设备编码" and "check character" in by_row[7][0][1]
    assert "target_class" in by_row[8][0][1]
    assert ("安装日期", "'2024-13-45' is not a date (use 2024-05-01)") in by_row[9]
    assert report.rejected == 7
    assert queries.count_terminals(conn, queries.Search()) == 0
    assert audit.entries(conn, object_type=None, object_code=None, batch_id=None, before_id=None, limit=5) == []


def test_skip_invalid_applies_the_good_rows(conn):
    rows = [ROWS_ZH[0], ",哈尔滨的站,空气质量监测微站,生态环境局,126.63,45.75,,,,,,"]
    report = _import(conn, _csv(HEADER_ZH, rows), skip_invalid=True)
    assert (report.applied, report.created, report.rejected) == (True, 1, 1)
    assert queries.count_terminals(conn, queries.Search()) == 1


def test_dry_run_reports_what_would_happen_and_writes_nothing(conn):
    report = _import(conn, _csv(HEADER_ZH, ROWS_ZH), dry_run=True)
    assert (report.applied, report.created, report.errors) == (False, 3, [])
    assert queries.count_terminals(conn, queries.Search()) == 0
    assert conn.execute("select count(*) from code_sequence").fetchone()[0] == 0  # no serial consumed


def test_reimport_upserts_by_code_and_logs_one_batch(conn):
    first = _import(conn, _csv(HEADER_ZH, ROWS_ZH))
    export = exporter.to_csv(queries.search_terminals(conn, queries.Search(), 100))
    again = _import(conn, export)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    edited = export.decode("utf-8-sig").replace(",active,", ",retired,", 1).encode("utf-8-sig")
    third = _import(conn, edited)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 2)
    batch = audit.entries(conn, object_type=None, object_code=None, batch_id=first.batch_id, before_id=None,
                                 limit=10)
    assert len(batch) == 3 and {c.actor for c in batch} == {"clerk"}


def test_poles_and_their_terminals_in_one_file(conn):
    pole_code = codes.make("231202", "10", 77).value
    data = _csv("设备编码,设备名称,设备类型,所属部门,经度,纬度,所属杆体", [
        f"{pole_code},中兴大街77号杆,智慧杆,城市管理综合执法局,126.98,46.64,",
        f",77号杆摄像机,视频监控摄像机,城管局,,,{pole_code}",
    ])
    report = _import(conn, data)
    assert report.errors == []
    assert (report.poles, report.terminals, report.created) == (1, 1, 2)
    assert queries.get_pole(conn, pole_code).terminal_count == 1


def test_existing_pole_referenced_by_code(conn):
    pole = service.create_pole(conn, pole_in(), Actor("x"))
    report = _import(conn, _csv("设备名称,设备类型,所属杆体", [f"杆上空气站,空气质量监测微站,{pole}"]))
    assert report.applied
    assert queries.search_terminals(conn, queries.Search(pole=pole), 10)[0].lon == 126.98


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "x.csv", "empty"),
        (b"\xd0\xcf\x11\xe0rest", "old.xls", "legacy .xls"),
        (_csv("设备名称,设备类型,颜色", ["a,air_sensor,red"]), "x.csv", "unknown column(s) '颜色'"),
        (_csv("设备名称,经度,纬度", ["a,126.9,46.6"]), "x.csv", "required column(s) missing: 设备类型"),
        (_csv("设备名称,名称,设备类型", ["a,b,air_sensor"]), "x.csv", "both mean name"),
        (b"\x81\xff\xfe\x00\x81" * 10, "x.csv", "neither UTF-8 nor GBK"),
        (b"PK\x03\x04broken", "x.xlsx", "cannot be opened"),
    ],
)
def test_bad_files_are_refused_whole(conn, data, name, message):
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        _import(conn, data, name)


def test_headers_ignore_width_case_and_units(conn):
    data = _csv("设备名称, 设备类型 ,经度,纬度,上报间隔（秒）", ["站,空气质量监测微站,126.98,46.64,120"])
    report = _import(conn, data)
    assert report.applied
    assert queries.search_terminals(conn, queries.Search(), 1)[0].report_interval_s == 120
