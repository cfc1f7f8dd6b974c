"""The FastAPI application: one pool, opened in the lifespan, and the routers."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.routes import (
    alerts,
    codes,
    credentials,
    fire,
    health,
    poles,
    reference,
    sharing,
    telemetry,
    terminals,
    transfer,
)
from core.db import new_pool
from core.settings import Settings


def create_app(settings: Settings, database_url: str) -> FastAPI:
    """The API for the database at ``database_url`` (already migrated)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool.open(wait=True, timeout=30)
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(
        title="Ganzhi 感知",
        version="0.1.0",
        description="Suihua's unified city sensing platform: the ledger of poles and terminals, city codes, "
        "sharing grants and change log.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = new_pool(database_url, max_size=16)
    errors.install(app)
    for module in (health, reference, terminals, poles, codes, credentials, sharing, transfer, telemetry, alerts,
                   fire):
        app.include_router(module.router)
    return app
