"""HJ 212-2017 packets (环保数采仪 ↔ platform over TCP): framing, CRC, fields, values, replies.

A packet is ``##`` + 4-digit data-segment length + data segment + CRC16 (4 hex digits) + CRLF.
The data segment is ``QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;[PNUM=…;PNO=…;]CP=&&…&&``; the CP data
area holds ``name=value`` pairs, ``,`` between the values of one item and ``;`` between items.

Tolerant on input (HJ/T 212-2005 factor codes and frames without QN or Flag, lower-case CRC,
several frames in one read or one frame over several reads), strict on output. The CRC is the
standard's own (Appendix A), not CRC-16/MODBUS.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field

HEADER = b"##"
REDACTED = "***"
MAX_SEGMENT = 1024
_BEIJING = dt.timezone(dt.timedelta(hours=8))
_FRAME = re.compile(rb"^##(\d{4})(.*)([0-9A-Fa-f]{4})\r\n$", re.DOTALL)
_MN = re.compile(r"[0-9A-Za-z]{1,24}")
"""What the ledger accepts as an MN: a frame naming anything else cannot be a logger of ours."""
_FIELD_START = re.compile(r";|##\d{4}")
"""Where a field may begin in raw bytes: after a ``;`` or a frame's ``##`` and length (and at the start)."""
_FIELD_START_BEGUN = re.compile(r"#(#\d{0,3})?$")
_FACTOR = re.compile(r"[0-9A-Za-z_]{1,16}")

# HJ/T 212-2005 factor codes that loggers still send, and their HJ 212-2017 codes (Table B.1 "old" column).
OLD_CODES = {"B01": "w00000", "001": "w01001", "003": "w01012", "010": "w01017", "011": "w01018",
             "060": "w21003", "065": "w21001", "101": "w21011"}
VALUE_KINDS = ("Rtd", "Avg", "Min", "Max", "Cou")

# QnRtn (Table 7)
READY, REJECTED, PW_ERROR, MN_ERROR, ST_ERROR, FLAG_ERROR, QN_ERROR, CN_ERROR, CRC_ERROR = 1, 2, 3, 4, 5, 6, 7, 8, 9


class FrameError(ValueError):
    """A frame that cannot be used; ``qn_rtn`` is the QnRtn code the standard defines for it, if any."""

    def __init__(self, message: str, qn_rtn: int | None = None) -> None:
        super().__init__(message)
        self.qn_rtn = qn_rtn


def _rounds(value: int) -> int:
    """Appendix A's eight shift-and-xor rounds on a register value."""
    for _ in range(8):
        lsb = value & 1
        value >>= 1
        if lsb:
            value ^= 0xA001
    return value


# The rounds are linear and the high byte only shifts down, so eight rounds on a register equal
# (register >> 8) ^ TABLE[register & 0xFF]: one lookup per byte instead of eight rounds.
_TABLE = tuple(_rounds(low) for low in range(256))


def crc16(data: bytes) -> int:
    """HJ 212-2017 Appendix A CRC16 (register 0xFFFF, ``(crc >> 8) ^ byte``, polynomial 0xA001)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        crc = (crc >> 8) ^ _TABLE[crc & 0xFF]
    return crc


@dataclass(frozen=True)
class Packet:
    qn: str | None
    st: str
    cn: str
    pw: str | None
    mn: str
    flag: int | None
    cp: str
    """The data area between ``CP=&&`` and ``&&``."""
    pnum: int | None = None
    pno: int | None = None

    @property
    def wants_reply(self) -> bool:
        """Flag bit A: the sender asks for an answer."""
        return bool(self.flag is not None and self.flag & 1)

    @property
    def version_2017(self) -> bool:
        return self.flag is not None and (self.flag >> 2) & 0b111111 == 1

    def items(self) -> list[dict[str, str]]:
        """The data area as a list of items, each a dict of its name=value pairs."""
        result = []
        for item in self.cp.split(";"):
            pairs = {}
            for pair in item.split(","):
                name, sep, value = pair.partition("=")
                if sep and name:
                    pairs[name.strip()] = value.strip()
            if pairs:
                result.append(pairs)
        return result

    def values(self) -> dict[str, str]:
        """All name=value pairs of the data area in one dict."""
        merged: dict[str, str] = {}
        for item in self.items():
            merged.update(item)
        return merged


def encode(packet: Packet) -> bytes:
    """The packet as bytes on the wire: upper-case CRC, every field the 2017 standard asks for."""
    fields = []
    if packet.qn is not None:
        fields.append(f"QN={packet.qn}")
    fields += [f"ST={packet.st}", f"CN={packet.cn}"]
    if packet.pw is not None:
        fields.append(f"PW={packet.pw}")
    fields.append(f"MN={packet.mn}")
    if packet.flag is not None:
        fields.append(f"Flag={packet.flag}")
    if packet.pnum is not None:
        fields += [f"PNUM={packet.pnum}", f"PNO={packet.pno}"]
    fields.append(f"CP=&&{packet.cp}&&")
    segment = ";".join(fields).encode("utf-8")
    if len(segment) > MAX_SEGMENT:
        raise FrameError(f"data segment of {len(segment)} bytes is longer than {MAX_SEGMENT}")
    return b"##%04d%s%04X\r\n" % (len(segment), segment, crc16(segment))


def decode(frame: bytes) -> Packet:
    """One complete frame (with ``##`` and CRLF) into a packet; raises ``FrameError``."""
    match = _FRAME.match(frame)
    if match is None:
        raise FrameError("not a frame: ## + 4-digit length + data + 4-hex CRC + CRLF expected")
    declared, segment, crc_text = int(match.group(1)), match.group(2), match.group(3)
    if declared != len(segment):
        raise FrameError(f"length field says {declared} but the data segment has {len(segment)} bytes")
    if len(segment) > MAX_SEGMENT:
        raise FrameError(f"data segment of {len(segment)} bytes is longer than {MAX_SEGMENT}")
    if int(crc_text, 16) != crc16(segment):
        raise FrameError(f"CRC {crc_text.decode()} does not match {crc16(segment):04X}", CRC_ERROR)
    try:
        text = segment.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"data segment is not UTF-8 (byte {exc.start})") from exc
    return _fields(text)


def _fields(text: str) -> Packet:
    head, sep, rest = text.partition("CP=&&")
    if not sep or not rest.endswith("&&"):
        raise FrameError("no CP=&&…&& data area")
    found: dict[str, str] = {}
    for part in head.split(";"):
        parsed = _field(part)
        if parsed is not None:
            found[parsed[0]] = part[parsed[1]:].strip()
    for required, code in (("ST", ST_ERROR), ("CN", CN_ERROR), ("MN", MN_ERROR)):
        if not found.get(required):
            raise FrameError(f"field {required} is missing", code)
    if not _MN.fullmatch(found["MN"]):
        raise FrameError(f"MN={found['MN']!r} is not 1 to 24 letters and digits", MN_ERROR)
    return Packet(qn=found.get("QN"), st=found["ST"], cn=found["CN"], pw=found.get("PW"), mn=found["MN"],
                  flag=_int(found.get("Flag"), "Flag", FLAG_ERROR), cp=rest[:-2],
                  pnum=_int(found.get("PNUM"), "PNUM", None), pno=_int(found.get("PNO"), "PNO", None))


def _field(part: str) -> tuple[str, int] | None:
    """A head field ``name=value`` as the decoder reads it: its stripped name and where its value starts (None
    without ``=``). The one reading of a field shared by the decoder and ``redact_pw``."""
    name, eq, _ = part.partition("=")
    return (name.strip(), len(name) + 1) if eq else None


def redact_pw(data: bytes, before: bytes = b"") -> bytes:
    """``data`` (a frame, a piece of one, or several frames run together) with every value the decoder could
    read as a PW replaced by ``***``. A field may start where the decoder starts one (the start, after ``;``,
    after ``##`` and a length) and is read by ``_field``; its value is hidden up to the next ``;``, which is
    never before the decoder's value ends. ``before``: what came before ``data`` in the same stream
    (``open_field`` of it), so a PW cut by the boundary is hidden too."""
    text = (before + data).decode("utf-8", "surrogateescape")
    hidden: dict[int, int] = {}
    """End of a PW value → where it starts (every such value ends at a ``;`` or the end)."""
    for start in [0, *(m.end() for m in _FIELD_START.finditer(text))]:
        end = text.find(";", start)
        end = len(text) if end < 0 else end
        parsed = _field(text[start:end])
        if parsed is not None and parsed[0] == "PW":
            hidden[end] = min(hidden.get(end, end), start + parsed[1])
    for end, start in sorted(hidden.items(), reverse=True):
        text = text[:start] + REDACTED + text[end:]
    return text.encode("utf-8", "surrogateescape")[len(before):]


def open_field(data: bytes) -> bytes:
    """What of the field ``data`` ends in (the last one started, not ended) the bytes after it need to tell a PW
    value: ``PW=`` when it is a PW (its value goes on after ``data``), its name so far when that could still
    become ``PW`` (stripped: bounded, and taking a name split by spaces for a PW only hides more), the start of a
    ``##`` and length it ends in, else nothing.
    Feed it its own result followed by the next bytes to follow a stream."""
    text = data.decode("utf-8", "surrogateescape")
    start = text.rfind(";") + 1
    for match in _FIELD_START.finditer(text, start):
        start = match.end()
    name, eq, _ = text[start:].partition("=")
    name = name.strip()
    if eq:
        return b"PW=" if name == "PW" else b""
    if "PW".startswith(name):
        return name.encode()
    marker = _FIELD_START_BEGUN.search(text)  # a ``##`` and length cut short: a field may start after the rest
    return marker.group().encode() if marker else b""


def _int(value: str | None, name: str, code: int | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise FrameError(f"{name}={value!r} is not a number", code)
    return int(value)


class Splitter:
    """Cuts a TCP byte stream into frames: several per read, or one over several reads.

    Bytes before a ``##`` are garbage; a declared length over the limit is garbage too. Each call
    returns the complete frames and the garbage found, so the caller can dead-letter it.
    """

    def __init__(self, limit: int = MAX_SEGMENT) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> tuple[list[bytes], list[bytes]]:
        self._buffer += data
        frames: list[bytes] = []
        garbage: list[bytes] = []
        while True:
            start = self._buffer.find(HEADER)
            if start < 0:
                keep = 1 if self._buffer.endswith(b"#") else 0
                if len(self._buffer) > keep:
                    garbage.append(bytes(self._buffer[: len(self._buffer) - keep]))
                    del self._buffer[: len(self._buffer) - keep]
                return frames, garbage
            if start > 0:
                garbage.append(bytes(self._buffer[:start]))
                del self._buffer[:start]
            if len(self._buffer) < 6:
                return frames, garbage
            length_text = bytes(self._buffer[2:6])
            if not length_text.isdigit() or int(length_text) > self._limit:
                garbage.append(bytes(self._buffer[:2]))  # skip this "##" and look for the next one
                del self._buffer[:2]
                continue
            end = 6 + int(length_text) + 6
            if len(self._buffer) < end:
                return frames, garbage
            frames.append(bytes(self._buffer[:end]))
            del self._buffer[:end]

    @property
    def pending(self) -> int:
        return len(self._buffer)


@dataclass(frozen=True)
class HjValue:
    """One value of a data packet: a factor, what kind of value (Rtd, Avg, Min, Max, Cou) and its flag."""

    factor: str
    kind: str
    value: float
    flag: str | None
    observed: dt.datetime


@dataclass
class DataPacketValues:
    observed: dt.datetime
    values: list[HjValue] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def data_time(text: str) -> dt.datetime:
    """``YYYYMMDDhhmmss`` (a trailing ``zzz`` of milliseconds allowed) on Beijing time."""
    digits = text.strip()
    if not digits.isdigit() or len(digits) not in (14, 17):
        raise FrameError(f"DataTime={text!r} is not YYYYMMDDhhmmss")
    try:
        parsed = dt.datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=_BEIJING)
    except ValueError as exc:
        raise FrameError(f"DataTime={text!r} is not a valid time") from exc
    return parsed + dt.timedelta(milliseconds=int(digits[14:] or 0))


def data_values(packet: Packet) -> DataPacketValues:
    """The values of a 2011/2051/2061/2031 data packet, with 2005 factor codes mapped to 2017 ones.

    DataTime is the sampling instant for real-time data and the start of the period for minute,
    hourly and daily data, which is the observation time Ganzhi stores.
    """
    pairs = packet.values()
    if "DataTime" not in pairs:
        raise FrameError("data packet has no DataTime")
    observed = data_time(pairs["DataTime"])
    result = DataPacketValues(observed)
    flags = {name[:-5]: value.upper() for name, value in pairs.items() if name.endswith("-Flag")}
    for name, text in pairs.items():
        factor, dash, kind = name.rpartition("-")
        if not dash or kind not in VALUE_KINDS:
            continue
        factor = OLD_CODES.get(factor, factor)
        if not _FACTOR.fullmatch(factor):
            result.unreadable.append(f"{name!r} is not a factor code")
            continue
        try:
            value = float(text)
        except ValueError:
            result.unreadable.append(f"{name}={text!r} is not a number")
            continue
        if not math.isfinite(value):
            result.unreadable.append(f"{name}={text!r} is not a finite number")
            continue
        flag = flags.get(name[: -len(kind) - 1])
        if flag and not (flag[:1].isascii() and flag[:1].isalpha()):
            result.unreadable.append(f"{name} has flag {flag!r}, not a letter")
            continue
        result.values.append(HjValue(factor, kind, value, flag[:1] if flag else None, observed))
    return result


_PERIODS = {"2011": "rt", "2051": "min", "2061": "hour", "2031": "day"}
DATA_COMMANDS = frozenset(_PERIODS)


def metric_key(value: HjValue, cn: str) -> str:
    """How a value is stored: real-time values under the factor (``w01001``); minute, hourly and daily
    aggregates apart, as ``factor:kind:period`` (``w01001:avg:hour``, ``w00000:cou:day``)."""
    if value.kind == "Rtd" and cn == "2011":
        return value.factor
    return f"{value.factor}:{value.kind.lower()}:{_PERIODS[cn]}"


def now_qn(at: dt.datetime | None = None) -> str:
    """A QN (request number): Beijing time to the millisecond."""
    at = (at or dt.datetime.now(_BEIJING)).astimezone(_BEIJING)
    return at.strftime("%Y%m%d%H%M%S") + f"{at.microsecond // 1000:03d}"


def reply(packet: Packet, cn: str, cp: str) -> bytes:
    """A platform reply (ST=91 system interaction) echoing the request's QN, PW and MN."""
    return encode(Packet(qn=packet.qn or now_qn(), st="91", cn=cn, pw=packet.pw, mn=packet.mn, flag=4, cp=cp))


def request_answer(packet: Packet, qn_rtn: int) -> bytes:
    """9011 请求应答 with QnRtn."""
    return reply(packet, "9011", f"QnRtn={qn_rtn}")


def data_answer(packet: Packet) -> bytes:
    """9014 数据应答: the data packet was received (and stored)."""
    return reply(packet, "9014", "")


def notify_answer(packet: Packet) -> bytes:
    """9013 通知应答: a notification (such as 1013) was received."""
    return reply(packet, "9013", "")


def time_answer(packet: Packet, at: dt.datetime | None = None) -> bytes:
    """Answer to a 1013 time-calibration request: 1012 set time with the platform's clock (Beijing time)."""
    at = (at or dt.datetime.now(_BEIJING)).astimezone(_BEIJING)
    return encode(Packet(qn=now_qn(at), st=packet.st, cn="1012", pw=packet.pw, mn=packet.mn, flag=5,
                         cp=f"SystemTime={at:%Y%m%d%H%M%S}"))
