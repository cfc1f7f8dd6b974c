"""Import by upload, exports and the template over HTTP."""

from __future__ import annotations

import io

from openpyxl import load_workbook

HEADER = "设备名称,设备类型,所属部门,经度,纬度,河流,里程(km),水质目标"
GOOD = ["呼兰河05号水质自动站,水质自动监测站,生态环境局,126.94,46.53,呼兰河,162,III",
        "中兴大街空气微站,空气质量监测微站,生态环境局,126.98,46.64,,,"]


def _upload(http, text: str, encoding: str = "gbk", **params):
    files = {"file": ("普查表.csv", text.encode(encoding), "text/csv")}
    return http.post("/api/v1/ledger/import", files=files, params=params)


def test_upload_dry_run_then_apply(http):
    body = "\r\n".join([HEADER, *GOOD])
    dry = _upload(http, body, dry_run="true")
    assert dry.status_code == 200
    assert (dry.json()["created"], dry.json()["applied"]) == (2, False)
    assert http.get("/api/v1/terminals", params={"count": "true"}).json()["count"] == 0
    applied = _upload(http, body)
    assert applied.status_code == 200
    report = applied.json()
    assert (report["created"], report["applied"], report["encoding"]) == (2, True, "gbk")
    changes = http.get("/api/v1/changes", params={"batch_id": report["batch_id"]}).json()["data"]
    assert len(changes) == 2


def test_upload_with_bad_rows_is_refused_with_every_row(http):
    body = "\r\n".join([HEADER, GOOD[0], "坏站,空气质量监测微站,生态环境局,126.63,45.75,,,", "x,toaster,,1,2,,,"])
    response = _upload(http, body, encoding="utf-8")
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(3, "经度"), (4, "设备类型")]
    assert http.get("/api/v1/terminals", params={"count": "true"}).json()["count"] == 0
    wrong = {"file": ("a.csv", "颜色\r\nred\r\n".encode(), "text/csv")}
    wrong_columns = http.post("/api/v1/ledger/import", files=wrong)
    assert wrong_columns.status_code == 422
    assert "unknown column" in wrong_columns.json()["detail"]


def test_exports_round_trip(http):
    _upload(http, "\r\n".join([HEADER, *GOOD]))
    csv_export = http.get("/api/v1/ledger/export", params={"format": "csv"})
    assert csv_export.content.startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 with a BOM
    again = http.post("/api/v1/ledger/import", files={"file": ("export.csv", csv_export.content, "text/csv")})
    assert (again.json()["unchanged"], again.json()["created"]) == (2, 0)

    xlsx = http.get("/api/v1/ledger/export", params={"format": "xlsx", "lang": "en", "kind": "air_sensor"})
    sheet = load_workbook(io.BytesIO(xlsx.content)).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("code", "name", "kind")
    assert [r[2] for r in rows[1:]] == ["air_sensor"]

    geo = http.get("/api/v1/ledger/export", params={"format": "geojson"}).json()
    assert {f["properties"]["division"] for f in geo["features"]} == {"231202"}


def test_template_downloads(http):
    xlsx = http.get("/api/v1/ledger/template")
    book = load_workbook(io.BytesIO(xlsx.content))
    assert [c.value for c in book.worksheets[0][1]][:3] == ["设备编码", "设备名称", "设备类型"]
    assert len(book.worksheets) == 2  # the help sheet lists accepted values
    csv_template = http.get("/api/v1/ledger/template", params={"format": "csv"})
    assert csv_template.content.decode("utf-8-sig").startswith("设备编码,设备名称,设备类型")
