"""City codes over HTTP: issue, validate, QR labels that decode back to the code."""

from __future__ import annotations

import cv2
import numpy as np

from registry import codes


def test_issue_and_validate(http):
    issued = http.post("/api/v1/codes/issue", json={"division": "231283", "kind": "gas_pressure_sensor", "count": 3})
    assert issued.status_code == 201
    values = issued.json()["codes"]
    assert [codes.parse(v).serial for v in values] == ["000001", "000002", "000003"]
    info = http.get(f"/api/v1/codes/{values[0].lower()}").json()
    assert info["kind"] == "gas_pressure_sensor"
    assert info["display"] == f"{values[0][:6]}-{values[0][6:8]}-{values[0][8:14]}-{values[0][14]}"
    # The next terminal of that kind and county continues after the reserved codes.
    made = http.post("/api/v1/terminals", json={"name": "海伦调压站", "kind": "gas_pressure_sensor", "lon": 126.97,
                                                 "lat": 47.47, "attrs": {"pressure_class": "low", "set_point_kpa": 3}})
    assert codes.parse(made.json()["code"]).serial == "000004"


def test_wrong_check_character_is_a_clear_error(http):
    good = codes.make("231202", "21", 17).value
    wrong = good[:-1] + ("A" if good[-1] != "A" else "B")
    response = http.get(f"/api/v1/codes/{wrong}")
    assert response.status_code == 422
    assert f"should be '{good[-1]}'" in response.json()["detail"]
    foreign = codes.make("110101", "21", 1).value  # Beijing
    assert "not a county-level division of Suihua" in http.get(f"/api/v1/codes/{foreign}").json()["detail"]
    refused = http.post("/api/v1/codes/issue", json={"division": "110101", "kind": "air_sensor"})
    assert refused.status_code == 422


def test_qr_labels_decode_to_the_code(http):
    code = codes.make("231202", "24", 5).value
    png = http.get(f"/api/v1/codes/{code}/qr.png")
    assert png.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert decoded == code
    svg = http.get(f"/api/v1/codes/{code}/qr.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.lstrip().startswith(("<?xml", "<svg")) and code in svg.text
    assert http.get("/api/v1/codes/BAD/qr.png").status_code == 422
