"""City codes: issue, validate and print as QR labels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.auth import Steward
from api.deps import ConnDep, SettingsDep
from api.schemas import BINARY
from registry import codes, labels, service
from registry.lookups import Lookups

router = APIRouter(prefix="/api/v1/codes", tags=["codes"])


class IssueRequest(BaseModel):
    division: str = Field(description="county-level GB/T 2260 code, e.g. 231202")
    kind: str = Field(description="terminal kind key, or smart_pole")
    count: int = Field(default=1, ge=1, le=10_000)


class IssuedCodes(BaseModel):
    codes: list[str] = Field(description="the city codes reserved, in order")


class CodeInfo(BaseModel):
    code: str
    display: str
    division: str
    class_code: str
    kind: str
    serial: str
    check: str
    valid: bool = True


@router.post("/issue", status_code=201, response_model=IssuedCodes)
def issue(conn: ConnDep, who: Steward, request: IssueRequest) -> IssuedCodes:
    """Reserve new codes, e.g. to print labels before the devices are installed (steward admins)."""
    with conn.transaction():
        issued = service.issue_codes(conn, request.division, request.kind, request.count, who.actor())
    return IssuedCodes(codes=issued)


@router.get("/{code}", response_model=CodeInfo)
def validate(conn: ConnDep, code: str) -> CodeInfo:
    """Check a code: 200 with its parts, or 422 saying what is wrong (a mistyped character fails the check)."""
    parsed = codes.parse(code, Lookups.load(conn).counties)
    return CodeInfo(code=parsed.value, display=parsed.display, division=parsed.division,
                    class_code=parsed.class_code, kind=parsed.kind, serial=parsed.serial, check=parsed.check)


@router.get("/{code}/qr.png", response_class=Response, responses={200: {"content": {"image/png": BINARY}}})
def qr_png(code: str, settings: SettingsDep, scale: Annotated[int, Query(ge=1, le=40)] = 8) -> Response:
    parsed = codes.parse(code)
    return Response(labels.qr_png(labels.qr_content(parsed.value, settings.qr_base_url), scale), media_type="image/png")


@router.get("/{code}/qr.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": BINARY}}})
def qr_svg(code: str, settings: SettingsDep, scale: Annotated[int, Query(ge=1, le=40)] = 8) -> Response:
    parsed = codes.parse(code)
    return Response(labels.qr_svg(labels.qr_content(parsed.value, settings.qr_base_url), scale),
                    media_type="image/svg+xml")
