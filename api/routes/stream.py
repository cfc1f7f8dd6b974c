"""The live stream: Server-Sent Events of alert, incident and fire-event changes, through the caller's rights.

Each event's id is its ``alert_feed`` id, drawn by the database in commit order (migration 0030), so a client
resumes with ``Last-Event-ID`` (or ``?after=``) and gets exactly the rest: nothing missed, nothing twice, also
after the platform restarted. One LISTEN connection per API process wakes every open stream (``FeedListener``);
reads go through the connection pool in the thread pool, so no stream ever blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from alerts.feed import CHANNEL, event_json, last_id, read_feed
from api.auth import _bearer, _cookie, authenticated
from api.errors import ERROR_RESPONSES
from api.schemas import StreamEvent
from core import db
from registry.accounts import Identity

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["stream"])

HEARTBEAT_S = 15.0
"""A comment this often keeps proxies open; the caller's credentials are checked again as often."""
BATCH = 500


class FeedListener:
    """One LISTEN on the feed channel for the whole process; ``wait`` wakes every stream on a new entry."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._changed = asyncio.Event()
        self.version = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self, version: int, seconds: float) -> bool:
        """True once an entry arrived after ``version`` was read; False after ``seconds`` without."""
        if self.version != version:
            return True
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _wake(self) -> None:
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True, **db.LINK) as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    self._wake()  # entries made while not listening
                    async for _ in conn.notifies():
                        self._wake()
            except psycopg.Error as exc:
                log.warning("the live stream's LISTEN connection failed (%s); streams wake every %ss until it is "
                            "back", exc, HEARTBEAT_S)
                await asyncio.sleep(1)


def listener(request: Request) -> FeedListener:
    state = request.app.state
    if getattr(state, "feed_listener", None) is None:
        state.feed_listener = FeedListener(state.database_url)
    state.feed_listener.start()
    return state.feed_listener


@dataclass(frozen=True)
class Caller:
    """The identity a stream was opened with, and the credentials it is checked again with."""

    identity: Identity
    bearer: HTTPAuthorizationCredentials | None
    session: str | None


def _identify(request: Request, bearer: HTTPAuthorizationCredentials | None, session: str | None) -> Identity:
    """``authenticated`` on a connection given back at once: a stream must not hold a pooled connection open."""
    with request.app.state.pool.connection() as conn:
        conn.autocommit = True
        return authenticated(request, conn, bearer, session)


def stream_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(_cookie)],
) -> Caller:
    return Caller(_identify(request, bearer, session), bearer, session)


def _still_allowed(request: Request, caller: Caller) -> bool:
    """The credentials still work and give the same view: a disabled account, a revoked token, an ended session
    or changed roles end the stream (the client reconnects, and is told 401 or gets its new view)."""
    try:
        now = _identify(request, caller.bearer, caller.session)
    except HTTPException:
        return False
    was = caller.identity
    return (now.account_id, now.department, now.roles) == (was.account_id, was.department, was.roles)


def _read(request: Request, after: int, scope: str | None) -> list[dict]:
    with request.app.state.pool.connection() as conn:
        conn.autocommit = True
        return read_feed(conn, after, scope, BATCH)


def _event(entry: dict) -> str:
    data = event_json(entry)
    return f"id: {entry['id']}\nevent: {entry['kind']}\ndata: {data}\n\n"


async def _events(request: Request, feed: FeedListener, after: int, caller: Caller) -> AsyncIterator[str]:
    yield f"retry: 3000\n: resuming after {after}\n\n"
    checked = time.monotonic()
    while not await request.is_disconnected():
        if time.monotonic() - checked >= HEARTBEAT_S:
            if not await run_in_threadpool(_still_allowed, request, caller):
                yield ": the credentials no longer hold; closing\n\n"
                return
            checked = time.monotonic()
        version = feed.version
        entries = await run_in_threadpool(_read, request, after, caller.identity.scope)
        for entry in entries:
            yield _event(entry)
            after = entry["id"]
        if len(entries) == BATCH:
            continue
        if not await feed.wait(version, HEARTBEAT_S):
            yield ": heartbeat\n\n"


class EventStream(StreamingResponse):
    """A stream of Server-Sent Events (its media type is what OpenAPI lists the 200 answer under)."""

    media_type = "text/event-stream"


STREAM_DESCRIPTION = (
    "Server-Sent Events (`text/event-stream`). Each event is `id: <event id>`, `event: <kind>` and one `data:` "
    "line of JSON. As OpenAPI 3.2 describes an event stream, `itemSchema` below is one event as a client's parser "
    "gives it (`id`, `event`, `data`), and its `data` property's `contentSchema` the JSON of the `data:` line (one "
    "of `AlertStreamEvent`, `AlertHistoryStreamEvent`, `IncidentStreamEvent`, `FireStreamEvent`, told apart by "
    "`kind`, which equals the event name): `event: alert` (an alert opened, or its status, severity, incident or "
    "routing changed), `alert_event` (an entry of an alert's history), `incident` (opened or closed), `fire_event` "
    "(a straw fire opened, closed or given a verdict). `payload` is the changed row. To resume, send the last `id` "
    "seen as `Last-Event-ID` (or `?after=`): the stream goes on with exactly the events after it. Lines starting "
    "with `:` are comments (a heartbeat every 15 s); the first lines are `retry: 3000` and a comment."
)
PATH = "/api/v1/stream"
OPENAPI_VERSION = "3.2.0"
"""The version the document declares. ``itemSchema`` (one event of a stream) is OpenAPI 3.2's: under FastAPI's
default ``3.1.0`` the Media Type Object allows only ``schema``, ``example``, ``examples``, ``encoding`` and ``x-``
extensions, and a 3.1 validator refuses the document. The rest of the document is 3.2 as it is (3.2 adds to
3.1; ``tests/api/test_openapi_valid.py`` validates it); schemathesis reads 3.2, and Swagger UI 5 (``/docs``) and
Redoc render it (docs/api.md)."""


def _json_errors() -> dict[int | str, dict]:
    """The error answers, which are JSON (``ErrorOut``) even here: declared with their media type, as a ``model``
    would be listed under the route's (``text/event-stream``)."""
    error = {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
    return {status: {"description": declared["description"],
                     "content": {**declared.get("content", {}), "application/json": error}}
            for status, declared in ERROR_RESPONSES.items()}


def _event_schema(data: dict) -> dict:
    """One event as OpenAPI 3.2 (and FastAPI for its own event-stream routes) describes an item of
    ``text/event-stream``: the fields a client's parser gives, ``data`` a string of JSON whose schema is its
    ``contentSchema``."""
    return {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event id (Last-Event-ID to resume)"},
            "event": {"type": "string", "enum": list(data["discriminator"]["mapping"]),
                      "description": "the kind of change; equals `kind` of the data"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
    }


def document_events(app: FastAPI) -> None:
    """FastAPI lists the 200 answer's ``model`` (``StreamEvent``, the JSON of one ``data:`` line) as the schema of
    ``text/event-stream``, which OpenAPI 3.2 reads as the whole stream: the document moves it to ``itemSchema``, one
    event, with the JSON as its data's ``contentSchema``, and the document declares ``OPENAPI_VERSION``, whose field
    this is. FastAPI remakes its document when a route was added since; each new one is amended once."""
    app.openapi_version = OPENAPI_VERSION
    generate = app.openapi

    def openapi() -> dict:
        document = generate()
        media = document["paths"][PATH]["get"]["responses"]["200"]["content"][EventStream.media_type]
        if "schema" in media:  # a document FastAPI has just made
            media["itemSchema"] = _event_schema(media.pop("schema"))
        return document

    app.openapi = openapi


@router.get(PATH.removeprefix(router.prefix), response_class=EventStream,
            responses={200: {"model": StreamEvent, "description": STREAM_DESCRIPTION}, **_json_errors()})
async def stream(
    request: Request,
    who: Annotated[Caller, Depends(stream_caller)],
    after: Annotated[int | None, Query(ge=0, description="resume after this event id (as Last-Event-ID)")] = None,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> EventStream:
    """Alert, alert-history, incident and fire-event changes the caller may see, as Server-Sent Events: ``id`` is
    the event id to resume from, ``event`` the kind, ``data`` JSON; a comment every 15 s keeps proxies open.
    Without Last-Event-ID or ``after`` the stream starts with what happens next. The credentials are checked
    again every 15 s: the stream ends once the account is disabled, the token revoked or the session ended."""
    feed = listener(request)
    start = last_event_id if last_event_id is not None else after
    if start is None:
        start = await run_in_threadpool(_last_id, request)
    return EventStream(_events(request, feed, start, who), headers={"Cache-Control": "no-cache",
                                                                     "X-Accel-Buffering": "no"})


def _last_id(request: Request) -> int:
    with request.app.state.pool.connection() as conn:
        conn.autocommit = True
        return last_id(conn)
