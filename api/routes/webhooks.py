"""Webhook and SMS subscriptions of a department to its alerts, their delivery log, replay and resume.

Only the department's steward admins and the platform admin manage them; an endpoint of another department is
404 to a steward admin. An endpoint receives what its department may see (``alert_visible``), filtered.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import psycopg
from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from alerts import webhooks
from api.auth import Steward, owned_department
from api.deps import ConnDep, SettingsDep
from api.routes.filters import division_subtree
from api.routes.paging import After, Limit, cursor, page
from api.schemas import Delivery, Page
from registry import audit
from registry.accounts import Identity
from registry.errors import Invalid, NotFound

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

Family = Literal["river", "sewage", "gas", "water", "heating", "device", "fire"]
Severity = Literal["info", "warning", "critical"]


class WebhookIn(BaseModel):
    channel: Literal["webhook", "sms"] = "webhook"
    url: str | None = Field(default=None, max_length=2000, description="for a webhook: where events are POSTed")
    phone: str | None = Field(default=None, max_length=20, description="for SMS: the number texted")
    department: str | None = Field(default=None, description="code or name; default the caller's")
    families: list[Family] | None = None
    severities: list[Severity] | None = None
    division: str | None = Field(default=None, description="only alerts in this division or below")

    @model_validator(mode="after")
    def _one_target(self) -> WebhookIn:
        if (self.url is None) == (self.phone is None) or (self.channel == "sms") != (self.phone is not None):
            raise ValueError("a webhook needs url, an SMS subscription phone (and not both)")
        return self


class Webhook(BaseModel):
    """A department's subscription to its alerts (never its secret, but once)."""
    id: int
    department: str
    channel: Literal["webhook", "sms"]
    target: str = Field(description="the URL events are POSTed to, or the phone number texted")
    families: list[Family] | None = Field(description="null: every family")
    severities: list[Severity] | None = Field(description="null: every severity")
    division: str | None = Field(description="only alerts in this division or below; null: everywhere")
    created_by: str
    created_at: dt.datetime
    paused_at: dt.datetime | None = Field(description="set while deliveries are paused (failing for a day)")
    pause_reason: str | None


class NewWebhook(Webhook):
    secret: str = Field(description="the HMAC-SHA256 key of `X-Ganzhi-Signature`, shown only now")


class Replayed(BaseModel):
    queued: int = Field(description="events queued to be sent again")


class Replay(BaseModel):
    start: dt.datetime = Field(alias="from")
    end: dt.datetime = Field(alias="to")


def _endpoint(conn: psycopg.Connection, who: Identity, webhook_id: int) -> dict:
    found = webhooks.get(conn, webhook_id)
    if found is None or (who.scope is not None and found["department"] != who.scope):
        raise NotFound(f"webhook {webhook_id} does not exist", field="id")
    return found


@router.post("/webhooks", status_code=201, response_model=NewWebhook)
def create_webhook(conn: ConnDep, settings: SettingsDep, who: Steward, body: WebhookIn) -> NewWebhook:
    """A new subscription; its ``secret`` (the HMAC-SHA256 key of ``X-Ganzhi-Signature``) is shown only now.
    The URL must reach a public address: internal, loopback and private hosts are refused (422)."""
    if body.department is None and who.department is None:
        raise Invalid("the department the subscription is for is needed", field="department")
    department = owned_department(conn, who, body.department, "")
    if body.division is not None:
        division_subtree(conn, body.division)  # 422 for an unknown division
    target = body.url or body.phone or ""
    try:
        webhooks.check_target(body.channel, target, settings.webhook_allow_hosts)
    except webhooks.TargetRefused as exc:
        raise Invalid(str(exc), field="phone" if body.channel == "sms" else "url") from exc
    with conn.transaction():
        made = webhooks.create(conn, department=department, channel=body.channel, target=target,
                               families=body.families, severities=body.severities, division=body.division,
                               created_by=who.login)
        audit.record(conn, who.actor(), "create", "webhook", str(made["id"]),
                     after={"department": department, "channel": body.channel, "target": target})
    return NewWebhook(**made)


@router.get("/webhooks", response_model=Page[Webhook])
def list_webhooks(conn: ConnDep, who: Steward, after: After = None, limit: Limit = 100) -> Page[Webhook]:
    """The caller's department's subscriptions (every department's for the platform admin), oldest first, one
    page at a time."""
    rows = webhooks.list_webhooks(conn, who.scope, after_id=cursor(after), limit=limit + 1)
    data, next_cursor = page(rows, limit)
    return Page[Webhook](data=data, next=next_cursor)


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(conn: ConnDep, who: Steward, webhook_id: int) -> None:
    _endpoint(conn, who, webhook_id)
    with conn.transaction():
        webhooks.delete(conn, webhook_id)
        audit.record(conn, who.actor(), "delete", "webhook", str(webhook_id))


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[Delivery])
def list_deliveries(conn: ConnDep, who: Steward, webhook_id: int, after: After = None,
                    limit: Limit = 100) -> Page[Delivery]:
    """The delivery log, newest first, one page at a time: status, attempts, the endpoint's last answer or
    error, latency."""
    _endpoint(conn, who, webhook_id)
    data, next_cursor = page(webhooks.deliveries(conn, webhook_id, cursor(after), limit + 1), limit)
    return Page[Delivery](data=data, next=next_cursor)


@router.post("/webhooks/{webhook_id}/replay", status_code=202, response_model=Replayed)
def replay(conn: ConnDep, who: Steward, webhook_id: int, body: Replay) -> Replayed:
    """Send again the events of [from, to) the subscription matches, after what is already queued."""
    endpoint = _endpoint(conn, who, webhook_id)
    if body.end <= body.start:
        raise Invalid("`to` must be after `from`", field="to")
    with conn.transaction():
        queued = webhooks.replay(conn, endpoint, body.start, body.end)
        audit.record(conn, who.actor(), "update", "webhook", str(webhook_id),
                     after={"replay_from": body.start.isoformat(), "replay_to": body.end.isoformat(),
                            "queued": queued}, summary=f"replay of webhook {webhook_id}: {queued} events")
    return Replayed(queued=queued)


@router.post("/webhooks/{webhook_id}/resume", response_model=Webhook)
def resume(conn: ConnDep, who: Steward, webhook_id: int) -> Webhook:
    """A paused subscription (failing for a day) sends again, from the delivery it stopped on."""
    _endpoint(conn, who, webhook_id)
    with conn.transaction():
        webhooks.resume(conn, webhook_id)
        audit.record(conn, who.actor(), "enable", "webhook", str(webhook_id), summary="resumed after pausing")
    return _endpoint(conn, who, webhook_id)
