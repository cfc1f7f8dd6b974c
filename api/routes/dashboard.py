"""The dashboard (态势大屏): its page and vendored scripts, served from this package with no internet, and the
compact reads it needs: the map's points, the alert counts, an alert's incident and dispatch record.

The page is static; everything it shows comes from the API with the caller's session, through their rights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import Scope

from alerts import board, dispatch
from alerts import queries as alert_queries
from api.auth import Reader
from api.deps import ConnDep, SettingsDep
from api.routes.tasks import Task
from api.schemas import Alert, Bureau, Incident, Severity
from core.settings import Settings
from registry.errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "dashboard"
PATH = "/dashboard"

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])

State = Literal["online", "offline", "silent", "never"]


class TerminalPoints(BaseModel):
    """Columns, one entry per terminal (the n-th of each list belong together): 4,100 terminals fit in one
    small response."""

    code: list[str]
    name: list[str]
    kind: list[str]
    lon: list[float]
    lat: list[float]
    pole: list[str | None] = Field(description="the smart pole or tower carrying it; the map draws the pole")
    state: list[State] = Field(description="connection state, as GET /terminals/{code}/state")
    alert: list[Severity | None] = Field(description="severity of its worst open or acknowledged alert")


class PolePoints(BaseModel):
    code: list[str]
    name: list[str]
    lon: list[float]
    lat: list[float]
    terminals: list[int] = Field(description="terminals on it that the caller reads")
    tower: list[bool] = Field(description="a straw-burning watch tower (it carries only cameras)")


class MapPoints(BaseModel):
    poles: PolePoints
    terminals: TerminalPoints


class BureauCount(BaseModel):
    bureau: Bureau
    open: int
    acknowledged: int


class CountyCount(BaseModel):
    code: str
    name: str
    open: int
    acknowledged: int


class Counts(BaseModel):
    bureaus: list[BureauCount]
    counties: list[CountyCount]


class AlertContext(BaseModel):
    incident: Incident | None = Field(description="the incident the alert belongs to, if any")
    members: list[Alert] = Field(description="the incident's alerts the caller receives (itself included)")
    tasks: list[Task] = Field(description="dispatch tasks sent to the alert, its incident or its fire event")


class DashboardConfig(BaseModel):
    tile_url: str | None = Field(description="Leaflet tile URL template of the deployment's own tile server; "
                                             "null: county outlines on a plain background")
    tile_attribution: str
    tile_max_zoom: int


def _columns(rows: list[dict], names: tuple[str, ...]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in names}


@router.get("/map", response_model=MapPoints)
def map_points(conn: ConnDep, who: Reader) -> MapPoints:
    """Every pole, tower and terminal the caller reads, with state and worst active alert, as columns."""
    poles, terminals = board.map_points(conn, who.scope)
    return MapPoints(poles=PolePoints(**_columns(poles, tuple(PolePoints.model_fields))),
                     terminals=TerminalPoints(**_columns(terminals, tuple(TerminalPoints.model_fields))))


@router.get("/counts", response_model=Counts)
def counts(conn: ConnDep, who: Reader) -> Counts:
    """Open and acknowledged alerts the caller receives, per bureau and per county."""
    bureaus, counties = board.alert_counts(conn, who.scope)
    return Counts(bureaus=bureaus, counties=counties)


@router.get("/alerts/{alert_id}", response_model=AlertContext)
def alert_context(conn: ConnDep, who: Reader, alert_id: int) -> AlertContext:
    """What the alert's detail panel shows beside GET /alerts/{id}: its incident's members and the dispatch."""
    alert = alert_queries.get_alert(conn, alert_id, who.scope)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist", field="alert_id")
    subjects = [("alert", alert_id)]
    incident = None
    members: list[dict] = [alert]
    if alert["incident_id"] is not None:
        incident = board.incident(conn, alert["incident_id"], who.scope)
        members = board.incident_members(conn, alert["incident_id"], who.scope)
        subjects.append(("incident", alert["incident_id"]))
    if alert["fire_event_id"] is not None:
        subjects.append(("fire_event", alert["fire_event_id"]))
    return AlertContext(incident=incident, members=members, tasks=dispatch.tasks_about(conn, who, subjects))


@router.get("/config", response_model=DashboardConfig)
def config(settings: SettingsDep, who: Reader) -> DashboardConfig:
    """The deployment's base map (see docs/dashboard.md)."""
    return DashboardConfig(tile_url=settings.dashboard_tile_url, tile_attribution=settings.dashboard_tile_attribution,
                           tile_max_zoom=settings.dashboard_tile_max_zoom)


_HOST = re.compile(r"^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$")


def tile_source(template: str | None) -> str | None:
    """The CSP source the tile URL template's images come from: its scheme, host and port, a host label holding
    a placeholder (Leaflet's ``t{s}.tianditu.gov.cn``) and those left of it as ``*``; None for no template or a
    template on the page's own origin (a path). A template that yields no plain host source is refused."""
    if not template or (template.startswith("/") and not template.startswith("//")):
        return None
    parts = urlsplit(template)
    try:
        port = parts.port
    except ValueError:
        port = -1
    labels = (parts.hostname or "").split(".")
    placeholder = max((n for n, label in enumerate(labels) if "{" in label or "}" in label), default=None)
    if placeholder is not None:
        labels = ["*", *labels[placeholder + 1:]]
    host = ".".join(labels)
    if parts.scheme not in ("http", "https", "") or not _HOST.match(host) or port == -1:
        raise ValueError(f"GANZHI_DASHBOARD_TILE_URL {template!r} is not an http(s) URL template with a host name")
    origin = f"{parts.scheme}://{host}" if parts.scheme else host
    return f"{origin}:{port}" if port else origin


def security_headers(settings: Settings) -> dict[str, str]:
    """The page's headers: it runs only its own scripts and styles, talks only to the platform (fetch and the
    EventSource), shows images from the platform (and the tile server when set), and is framed by nobody."""
    images = " ".join(filter(None, ("'self'", "data:", tile_source(settings.dashboard_tile_url))))
    policy = ("default-src 'none'", "script-src 'self'", "style-src 'self'", f"img-src {images}",
              "connect-src 'self'", "font-src 'self'", "form-action 'self'", "base-uri 'none'",
              "frame-ancestors 'none'", "object-src 'none'")
    return {"Content-Security-Policy": "; ".join(policy), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


class _Files(StaticFiles):
    """The page's files, each with the page's security headers."""

    def __init__(self, headers: dict[str, str], **options) -> None:
        super().__init__(**options)
        self._headers = headers

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self._headers)
        return response


def install(app: FastAPI, settings: Settings) -> None:
    """The page at /dashboard/ (/ leads there); its files need no login, its data does."""
    app.mount(PATH, _Files(security_headers(settings), directory=STATIC, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/")
