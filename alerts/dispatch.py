"""Dispatch (督办): send a person to an alert, incident or fire event, follow their field steps, escalate.

A task is assigned by an operator who sees the subject, to an account (the assignee), with a due time. The
assignee verifies on site (note, photos, GPS), then rectifies; the assigner closes it or rejects it back.
A task is in the view of its department (the assigner's), of its assignee, and of those who read everything.
Overdue tasks climb township → county → city by ``escalation_rule`` rows, moved by ``sweep``. Every step is in
the task's history and in the audit log.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg.rows import dict_row

from alerts.queries import acts_on, alert_visible
from registry import audit
from registry.accounts import ACCOUNT_IN_SERVICE, Identity, account_by_login
from registry.changes import Actor
from registry.errors import Conflict, Invalid, LedgerError, NotFound

SUBJECT_ALERTS = {"alert": "a.id", "incident": "a.incident_id", "fire_event": "a.fire_event_id"}
"""The alerts that stand for a subject: its own, its incident's members, its fire event's."""
NEXT_LEVEL = {"township": "county", "county": "city"}
SWEEP_ACTOR = Actor("dispatch-sweep")


class Forbidden(LedgerError):
    status = 403


def _subject(conn: psycopg.Connection, subject_type: str, subject_id: int, visible_to: str | None) -> dict:
    """The subject's most severe alert in the caller's view: its family, severity, division; 404 outside it."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""
            select a.id as alert_id, a.family, a.severity, a.division_code, a.department_code from alert a
             where {SUBJECT_ALERTS[subject_type]} = %(id)s
               and (%(visible_to)s::text is null or {alert_visible()})
             order by array_position(array['critical', 'warning', 'info'], a.severity), a.id limit 1
            """, {"id": subject_id, "visible_to": visible_to}).fetchone()
    if row is None:
        raise NotFound(f"{subject_type.replace('_', ' ')} {subject_id} does not exist", field="subject_id")
    return row


def assign(conn: psycopg.Connection, who: Identity, *, subject_type: str, subject_id: int, assignee: str,
           due_at: dt.datetime, note: str | None) -> int:
    """A new task (in the caller's transaction): the subject must be in the assigner's view (the operator's right
    over its alerts, as for acknowledging them), the assignee one of the people the assigner sends (403 for a
    service account or the leading group; 404 for another department's person, as for no one)."""
    subject = _subject(conn, subject_type, subject_id, who.scope)
    if not acts_on(conn, subject["alert_id"], who.scope):
        raise Forbidden(f"{subject_type.replace('_', ' ')} {subject_id} is read by a grant; its steward department "
                        "or the departments it is routed to dispatch it", field="subject_id")
    person = _account_in_view(conn, who, assignee)
    if person["disabled_at"] is not None:
        raise Invalid(f"account {assignee!r} is disabled", field="assignee")
    if not assignees(conn, who, login=person["login"]):
        raise Forbidden(f"account {assignee!r} cannot be sent: a task goes to a person of "
                        f"{who.department or 'a department'}, not to a service account or the leading group",
                        field="assignee")
    if due_at.tzinfo is None:
        raise Invalid("give the due time with its time zone", field="due_at")
    task_id = conn.execute(
        """
        insert into task (subject_type, subject_id, alert_id, family, severity, division_code, department_code,
                          assigner_id, assignee_id, note, due_at)
        values (%(type)s, %(id)s, %(alert_id)s, %(family)s, %(severity)s, %(division_code)s, %(department)s,
                %(assigner)s, %(assignee)s, %(note)s, %(due_at)s)
        returning id
        """,
        {**subject, "type": subject_type, "id": subject_id, "department": who.department or subject["department_code"],
         "assigner": who.account_id, "assignee": person["id"], "note": note, "due_at": due_at}).fetchone()[0]
    _step(conn, task_id, who.actor(), "assign", note, after={"assignee": person["login"], "due_at": due_at.isoformat(),
                                                               "subject": f"{subject_type}/{subject_id}"})
    return task_id


def _account_in_view(conn: psycopg.Connection, who: Identity, login: str) -> dict:
    """The account ``login`` as the assigner may know of it: another department's (or the leading group's, which
    has none) answers as one that does not exist, so a department's operator cannot probe other logins."""
    try:
        person = account_by_login(conn, login)
    except NotFound:
        person = None
    if person is None or (who.scope is not None and person["department"] != who.scope):
        raise NotFound(f"account {login!r} does not exist", field="assignee")
    return person


def assignees(conn: psycopg.Connection, who: Identity, login: str | None = None) -> list[dict]:
    """The people the caller sends on tasks (the dashboard's 派发 picker, and the check of an assignment, with
    ``login``): enabled persons of the caller's department, of every department for a caller with the city-wide
    view; not those of a disabled department, not the leading group (it changes nothing, so it could not report a
    field step), not a system's account."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select a.login, a.name, a.department_code as department, a.roles from account a
             where a.kind = 'person' and {ACCOUNT_IN_SERVICE} and not a.roles <@ array['leading_group']
               and (%(scope)s::text is null or a.department_code = %(scope)s)
               and (%(login)s::text is null or a.login = %(login)s)
             order by a.department_code nulls first, a.name, a.login
            """, {"scope": who.scope, "login": login}).fetchall()


def _step(conn: psycopg.Connection, task_id: int, actor: Actor, action: str, note: str | None, *,
          lat: float | None = None, lon: float | None = None, after: dict | None = None) -> int:
    """One step in the task's history and the audit log."""
    step_id = conn.execute(
        "insert into task_step (task_id, actor, action, note, lat, lon) values (%s, %s, %s, %s, %s, %s) returning id",
        (task_id, actor.name, action, note, lat, lon)).fetchone()[0]
    audit.record(conn, actor, action, "task", str(task_id),
                 after={"note": note, "lat": lat, "lon": lon} | (after or {}))
    return step_id


_TASK = """
    select t.id, t.subject_type, t.subject_id, t.family, t.severity, t.division_code as division,
           t.department_code as department, r.login as assigner, e.login as assignee, t.note, t.status, t.level,
           t.due_at, t.created_at, t.updated_at, t.closed_at,
           (t.status <> 'closed' and t.due_at < now()) as overdue
      from task t join account r on r.id = t.assigner_id join account e on e.id = t.assignee_id
"""


def _in_view(alias: str = "t") -> str:
    return (f"(%(scope)s::text is null or {alias}.department_code = %(scope)s "
            f"or {alias}.assignee_id = %(me)s)")


def get_task(conn: psycopg.Connection, who: Identity, task_id: int) -> dict:
    """The task with its steps and photo ids; 404 outside the caller's view."""
    with conn.cursor(row_factory=dict_row) as cur:
        task = cur.execute(_TASK + f" where t.id = %(id)s and {_in_view()}",
                           {"id": task_id, "scope": who.scope, "me": who.account_id}).fetchone()
        if task is None:
            raise NotFound(f"task {task_id} does not exist", field="task_id")
        steps = cur.execute(
            """
            select s.id, s.at, s.actor, s.action, s.note, s.lat, s.lon,
                   coalesce(array_agg(p.id order by p.id) filter (where p.id is not null), '{}') as photos
              from task_step s left join task_photo p on p.step_id = s.id
             where s.task_id = %s group by s.id order by s.id
            """, (task_id,)).fetchall()
    return task | {"steps": steps}


def list_tasks(conn: psycopg.Connection, who: Identity, *, mine: bool, status: str | None, overdue: bool | None,
               before_id: int | None, limit: int) -> list[dict]:
    """Tasks in the caller's view (``mine``: assigned to the caller), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _TASK + f"""
             where {_in_view()} and (not %(mine)s or t.assignee_id = %(me)s)
               and (%(status)s::text is null or t.status = %(status)s)
               and (%(overdue)s::boolean is null
                    or (t.status <> 'closed' and t.due_at < now()) = %(overdue)s)
               and (%(before_id)s::bigint is null or t.id < %(before_id)s)
             order by t.id desc limit %(limit)s
            """,
            {"scope": who.scope, "me": who.account_id, "mine": mine, "status": status, "overdue": overdue,
             "before_id": before_id, "limit": limit}).fetchall()


def tasks_about(conn: psycopg.Connection, who: Identity, subjects: list[tuple[str, int]]) -> list[dict]:
    """The tasks in the caller's view sent to any of ``subjects`` ((subject_type, id) pairs), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _TASK + f"""
             where {_in_view()} and (t.subject_type, t.subject_id) in (
                   select s.type, s.id from unnest(%(types)s::text[], %(ids)s::bigint[]) as s(type, id))
             order by t.id desc limit 100
            """,
            {"scope": who.scope, "me": who.account_id, "types": [s[0] for s in subjects],
             "ids": [s[1] for s in subjects]}).fetchall()


_MOVES = {"verify": ({"assigned"}, "verified", "assignee"), "rectify": ({"verified"}, "rectified", "assignee"),
          "close": ({"verified", "rectified"}, "closed", "assigner"),
          "reject": ({"verified", "rectified"}, "assigned", "assigner")}
"""action: (the statuses it starts from, the status it leaves, who may take it)."""


def act(conn: psycopg.Connection, who: Identity, task_id: int, action: str, note: str | None, *,
        lat: float | None = None, lon: float | None = None,
        photos: list[tuple[str, bytes]] | None = None) -> None:
    """A step by the assignee (verify, rectify) or the assigner (close, reject), in the caller's transaction."""
    task = get_task(conn, who, task_id)
    starts, leaves, taker = _MOVES[action]
    if task[taker] != who.login:
        raise Forbidden(f"only the task's {taker} may {action} it", field="task_id")
    if task["status"] not in starts:
        raise Conflict(f"a task that is {task['status']} cannot be {action}ed; it must be {' or '.join(starts)}",
                       field="status")
    if action == "verify" and (lat is None or lon is None):
        raise Invalid("a field verification gives the GPS position (lat, lon)", field="lat")
    updated = conn.execute(
        "update task set status = %(leaves)s, updated_at = now(), "
        "closed_at = case when %(leaves)s = 'closed' then now() end "
        "where id = %(id)s and status = any(%(starts)s)",
        {"leaves": leaves, "id": task_id, "starts": list(starts)}).rowcount
    if updated != 1:  # another step won the race since we read it
        raise Conflict(f"task {task_id} changed meanwhile; read it again", field="status")
    step_id = _step(conn, task_id, who.actor(), action, note, lat=lat, lon=lon,
                    after={"photos": len(photos or [])})
    for content_type, image in photos or []:
        conn.execute("insert into task_photo (step_id, content_type, image) values (%s, %s, %s)",
                     (step_id, content_type, image))


def photo(conn: psycopg.Connection, who: Identity, task_id: int, photo_id: int) -> tuple[str, bytes]:
    get_task(conn, who, task_id)
    row = conn.execute("select p.content_type, p.image from task_photo p join task_step s on s.id = p.step_id "
                       "where p.id = %s and s.task_id = %s", (photo_id, task_id)).fetchone()
    if row is None:
        raise NotFound(f"photo {photo_id} of task {task_id} does not exist", field="photo_id")
    return row[0], bytes(row[1])


def sweep(conn: psycopg.Connection, now: dt.datetime | None = None) -> list[int]:
    """Escalate every overdue task that has stayed its rule's hours at its level, one level per sweep; returns
    their ids. Run it periodically (``ganzhi dispatch-sweep``); each escalation commits with its audit row."""
    escalated = []
    now = now or dt.datetime.now(dt.UTC)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        due = cur.execute(
            """
            select t.id, t.level from task t
              join lateral (select r.hours from escalation_rule r
                             where r.severity = t.severity and r.level = t.level
                               and (r.family is null or r.family = t.family)
                             order by r.family nulls last limit 1) rule on true
             where t.status <> 'closed' and t.due_at < %(now)s
               and greatest(t.due_at, t.level_since) + make_interval(hours => rule.hours) <= %(now)s
             for update of t skip locked
            """, {"now": now}).fetchall()
        for task in due:
            level = NEXT_LEVEL[task["level"]]
            cur.execute("update task set level = %s, level_since = %s, updated_at = %s where id = %s",
                        (level, now, now, task["id"]))
            _step(conn, task["id"], SWEEP_ACTOR, "escalate", f"overdue: escalated to the {level} level",
                  after={"from": task["level"], "to": level})
            escalated.append(task["id"])
    return escalated


def summary(conn: psycopg.Connection, who: Identity, month: dt.date) -> list[dict]:
    """For the monthly evaluation (绩效考评): the tasks assigned in ``month``, per department and county: open,
    overdue (still open past due, or closed after it) and closed."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""
            select t.department_code as department, c.code as county, c.name as county_name,
                   count(*) filter (where t.status <> 'closed') as open,
                   count(*) filter (where coalesce(t.closed_at, now()) > t.due_at) as overdue,
                   count(*) filter (where t.status = 'closed') as closed
              from task t join division c on c.code = left(t.division_code, 6)
             where t.created_at >= %(start)s and t.created_at < %(start)s + interval '1 month' and {_in_view()}
             group by t.department_code, c.code, c.name order by t.department_code, c.code
            """, {"start": month, "scope": who.scope, "me": who.account_id}).fetchall()
