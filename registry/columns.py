"""The census columns: what departments call them, and how a cell becomes a value."""

from __future__ import annotations

import datetime as dt
import json
import re

from registry.errors import Invalid
from registry.tabular import header_key

# field → (Chinese header used in templates and exports, English header, other names seen in census sheets)
TERMINAL_COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "code": ("设备编码", "code", ("城市码", "编码", "city_code", "设备城市码")),
    "name": ("设备名称", "name", ("名称",)),
    "kind": ("设备类型", "kind", ("类型", "type", "设备种类")),
    "department": ("所属部门", "department", ("权属部门", "管理部门", "责任部门", "steward")),
    "pole": ("所属杆体", "pole", ("挂载杆体", "杆体编码", "所属灯杆", "灯杆编码")),
    "lon": ("经度", "lon", ("longitude", "lng")),
    "lat": ("纬度", "lat", ("latitude",)),
    "address": ("安装地址", "address", ("地址", "安装位置")),
    "install_date": ("安装日期", "install_date", ("安装时间",)),
    "status": ("状态", "status", ("设备状态", "运行状态")),
    "vendor": ("厂商", "vendor", ("生产厂家", "厂家", "manufacturer")),
    "model": ("型号", "model", ("设备型号", "规格型号")),
    "protocol": ("接入协议", "protocol", ("协议", "通信协议")),
    "report_interval_s": ("上报间隔(秒)", "report_interval_s", ("上报周期", "上报间隔", "采集频率")),
    "metrics": ("监测指标", "metrics", ("监测因子", "监测项目")),
    "attrs": ("扩展属性", "attrs", ("属性",)),
    "division": ("所属区划", "division", ("行政区划", "区划代码")),
    "mn": ("数采仪MN", "mn", ("MN", "设备唯一标识")),
    "pw": ("访问密码", "pw", ("PW", "数采仪密码")),
}

# attribute → (Chinese header, other names); their cells go into ``attrs``.
ATTR_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "river": ("河流", ("河流名称", "所在河流")),
    "chainage_km": ("里程(km)", ("里程", "河道里程")),
    "target_class": ("水质目标", ("目标水质类别", "目标水质", "水质类别目标")),
    "water_body": ("水体类型", ()),
    "plant": ("污水厂", ("所属污水厂", "污水处理厂")),
    "grade": ("排放标准", ("排放等级", "执行标准")),
    "build_year": ("建厂年份", ("建设年份", "投运年份")),
    "pressure_class": ("压力级制", ("压力等级",)),
    "set_point_kpa": ("设定压力(kPa)", ("设定压力", "调压设定值")),
    "mast_height_m": ("杆高(m)", ("安装高度", "塔高")),
    "heading_deg": ("朝向(°)", ("方位角", "朝向")),
    "tilt_deg": ("俯仰角(°)", ("俯仰角", "俯仰")),
    "hfov_deg": ("视场角(°)", ("水平视场角", "视场角")),
    "tilt_error_deg": ("俯仰误差(°)", ("俯仰误差",)),
    "preset": ("预置位", ()),
    "district": ("计量分区", ("dma", "分区")),
    "night_allowance_m3h": ("夜间流量限值(m³/h)", ("夜间最小流量限值", "夜间流量限值")),
    "min_service_mpa": ("最低服务压力(MPa)", ("最低服务压力",)),
    "warning_level_m": ("警戒水位(m)", ("警戒水位",)),
    "substation": ("换热站", ("所属换热站",)),
    "building": ("楼栋", ("建筑",)),
}

DERIVED = frozenset({"division"})
"""Exported for reading, ignored on import: the ledger derives them."""

_STATUS = {
    "规划": "planned", "计划": "planned", "待建": "planned", "在建": "planned",
    "在用": "active", "运行": "active", "正常": "active", "在线": "active", "启用": "active",
    "维护": "maintenance", "检修": "maintenance", "维修": "maintenance", "故障": "maintenance",
    "停用": "retired", "报废": "retired", "退役": "retired", "拆除": "retired",
}
_GRADE = {"一级a": "1A", "一级b": "1B", "1a": "1A", "1b": "1B", "一级a标准": "1A", "一级b标准": "1B"}
_PRESSURE_CLASS = {
    "低压": "low", "中压b": "medium_b", "中压a": "medium_a", "次高压b": "sub_high_b", "次高压a": "sub_high_a",
    "高压b": "high_b", "高压a": "high_a",
}
_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "Ⅰ": "I", "Ⅱ": "II", "Ⅲ": "III", "Ⅳ": "IV", "Ⅴ": "V"}
_NUMERIC_ATTRS = {"chainage_km", "set_point_kpa", "mast_height_m", "heading_deg", "tilt_deg", "hfov_deg",
                  "tilt_error_deg", "night_allowance_m3h", "min_service_mpa", "warning_level_m"}
_INT_ATTRS = {"build_year", "preset"}


def header_index() -> dict[str, str]:
    """Normalised header → field name (attributes as ``attr:name``)."""
    index: dict[str, str] = {}
    for field, (zh, en, others) in TERMINAL_COLUMNS.items():
        for name in (zh, en, field, *others):
            index[header_key(name)] = field
    for attr, (zh, others) in ATTR_COLUMNS.items():
        for name in (zh, attr, *others):
            index[header_key(name)] = f"attr:{attr}"
    return index


def parse_cell(field: str, text: str):
    """A cell's value for ``field``; raises ``Invalid`` naming the problem."""
    if field in ("lon", "lat"):
        return _number(text, field)
    if field == "report_interval_s":
        return int(_number(text, field))
    if field == "install_date":
        return _date(text)
    if field == "status":
        return _STATUS.get(text, text.lower())
    if field == "protocol":
        return text.lower().replace(" ", "").replace("-", "")
    if field == "metrics":
        return [m for m in re.split(r"[,;，；、|\s]+", text) if m]
    if field == "attrs":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(f"is not JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise Invalid("must be a JSON object")
        return value
    return text


def parse_attr(attr: str, text: str):
    if attr in _NUMERIC_ATTRS:
        return _number(text, attr)
    if attr in _INT_ATTRS:
        return int(_number(text, attr))
    if attr == "grade":
        return _GRADE.get(text.lower().replace(" ", ""), text)
    if attr == "pressure_class":
        return _PRESSURE_CLASS.get(text.lower().replace(" ", ""), text)
    if attr == "target_class":
        cleaned = text.upper().replace("类", "").strip()
        return _ROMAN.get(cleaned, cleaned)
    if attr == "water_body":
        return {"河流": "river", "湖库": "lake", "湖泊": "lake", "水库": "lake"}.get(text, text)
    return text


def _number(text: str, field: str) -> float:
    try:
        return float(text.replace(",", "").replace("，", ""))
    except ValueError as exc:
        raise Invalid(f"{text!r} is not a number") from exc


def _date(text: str) -> dt.date:
    cleaned = text.replace("年", "-").replace("月", "-").replace("日", "").replace("/", "-").replace(".", "-")
    try:
        return dt.date.fromisoformat("-".join(part.zfill(2) for part in cleaned.strip("-").split("-")))
    except ValueError as exc:
        raise Invalid(f"{text!r} is not a date (use 2024-05-01)") from exc
