"""The FastAPI application: one pool, opened in the lifespan, and the routers."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.gzip import GZipMiddleware

from api import errors, observability
from api.auth import authenticated
from api.guard import MAX_JSON_BYTES, refuse_unstorable_input
from api.routes import (
    alerts,
    auth,
    codes,
    credentials,
    dashboard,
    fire,
    health,
    poles,
    reference,
    sharing,
    stream,
    tasks,
    telemetry,
    terminals,
    transfer,
    users,
    webhooks,
)
from core.db import new_pool
from core.settings import Settings

_DEGRADED = {"description": "the database or the broker does not answer; the body says which",
             "content": {"application/json": {"schema": {"type": "object"}}}}


def create_app(settings: Settings, database_url: str) -> FastAPI:
    """The API for the database at ``database_url`` (already migrated)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool.open(wait=True, timeout=30)
        try:
            yield
        finally:
            if getattr(app.state, "feed_listener", None) is not None:
                app.state.feed_listener.stop()
            app.state.pool.close()

    app = FastAPI(
        title="Ganzhi 感知",
        version="0.1.0",
        description="Suihua's unified city sensing platform: the ledger of poles and terminals, city codes, "
        "sharing grants, accounts and the audit log. Every route but /healthz, /readyz and this document needs a "
        "bearer token or a session (see POST /api/v1/auth/login).",
        lifespan=lifespan,
        max_body_size=MAX_JSON_BYTES,
        dependencies=[Depends(refuse_unstorable_input)],
    )
    app.state.settings = settings
    app.state.pool = new_pool(database_url, max_size=16)
    app.state.database_url = database_url  # the live stream's LISTEN connection
    errors.install(app)
    observability.install(app)
    app.include_router(health.router, responses={500: errors.ERROR_RESPONSES[500], 503: _DEGRADED})
    app.include_router(auth.router, responses=errors.ERROR_RESPONSES)  # logging in needs no credentials
    for module in (reference, terminals, poles, codes, credentials, sharing, transfer, telemetry, alerts, fire, users,
                   webhooks, tasks, dashboard):
        app.include_router(module.router, dependencies=[Depends(authenticated)],  # denied by default
                           responses=errors.ERROR_RESPONSES)
    # the stream authenticates on a connection it gives back at once (a stream lasts)
    app.include_router(stream.router, responses=errors.ERROR_RESPONSES)
    stream.document_events(app)  # each event's schema where OpenAPI 3.2 puts it (and declares 3.2)
    dashboard.install(app, settings)  # the page and its vendored scripts (its data comes through the routes above)
    app.add_middleware(GZipMiddleware, minimum_size=2048)  # the map's points and the scripts; never the stream
    return app
