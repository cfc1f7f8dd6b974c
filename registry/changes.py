"""Change-log rows (the audit log, see ``registry.audit``): who changed what, when, before and after."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel

_BOOKKEEPING = ("created_at", "updated_at", "terminal_count")


@dataclass(frozen=True)
class Actor:
    """Who makes a change (the authenticated account) and under which request or import batch."""

    name: str
    batch_id: uuid.UUID = field(default_factory=uuid.uuid4)
    account_id: int | None = None
    department: str | None = None
    client: str | None = None
    """The caller's address, for logins and failed logins."""


def snapshot(obj: BaseModel | dict | None) -> dict | None:
    """The JSON form of an object for the change log, without bookkeeping fields."""
    if obj is None:
        return None
    if isinstance(obj, BaseModel):
        data = obj.model_dump(mode="json", exclude=set(_BOOKKEEPING) & set(type(obj).model_fields))
        if "pw" in type(obj).model_fields:  # never the secret, nor anything derived from it
            data["pw"] = pw_state(obj.pw)
        return data
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in obj.items() if k not in _BOOKKEEPING}


def pw_state(secret: str | None) -> str | None:
    """What the change log says of a password: only whether there is one. A hash of a 6-digit HJ 212 PW is
    inverted in seconds; that it changed is recorded by ``pw_changed``."""
    return "set" if secret else None


def pw_changed(before: dict | None, after: dict, old: str | None, new: str | None) -> None:
    """Mark a password replaced by another in ``after`` (both snapshots say only "set")."""
    if before is not None and old and new and old != new:
        after["pw"] = "changed"


def change_row(
    actor: Actor, action: str, object_type: str, code: str, before: dict | None, after: dict | None,
    *, related: tuple[str, str] | None = None, summary: str | None = None,
) -> dict:
    return {
        "actor": actor.name,
        "actor_id": actor.account_id,
        "actor_department": actor.department,
        "client": actor.client,
        "batch_id": actor.batch_id,
        "action": action,
        "object_type": object_type,
        "object_code": code,
        "related_type": related[0] if related else None,
        "related_code": related[1] if related else None,
        "summary": summary or _summary(action, object_type, code, before, after),
        "before": before,
        "after": after,
    }


def _summary(action: str, object_type: str, code: str, before: dict | None, after: dict | None) -> str:
    if action != "update" or before is None or after is None:
        return f"{action} {object_type} {code}"
    changed = sorted(k for k in after if before.get(k) != after.get(k))
    return f"update {object_type} {code}: {', '.join(changed)}"
