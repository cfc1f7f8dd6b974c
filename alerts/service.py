"""Alert lifecycle: episodes found by the rules become alerts; operators acknowledge, resolve, close.

``reconcile`` makes the stored alerts of one (terminal, rule) agree with freshly evaluated episodes:
it opens, extends, resolves (auto-clear through hysteresis), re-opens when late data shows the
condition went on, and retracts alerts that late data shows never lasted. One active alert per
(terminal, rule) is enforced by the database.
"""

from __future__ import annotations

import datetime as dt
import logging

import prometheus_client
import psycopg
from psycopg.rows import dict_row

from analytics.engine import SEVERITY_ORDER, Episode
from analytics.rules import Rule, TerminalInfo
from registry.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

OPENED = prometheus_client.Counter("ganzhi_alerts_opened", "alerts the rules opened (in the process's registry: "
                                   "counted when written, before the judging transaction commits)",
                                   ["family", "severity"])
SYSTEM = "ganzhi-analytics"
ACTIVE = ("open", "acknowledged")
_TRANSITIONS = {"acknowledge": ("open",), "resolve": ("open", "acknowledged"),
                "close": ("open", "acknowledged", "resolved")}


def reconcile(conn: psycopg.Connection, t: TerminalInfo, rule: Rule, window_start: dt.datetime,
              found: list[Episode], stored: list[dict] | None = None) -> None:
    """``stored``: the rule's alerts from ``stored_alerts``, when the caller has them already."""
    stored = _stored(conn, t.id, rule.key, window_start) if stored is None else stored
    matched: set[int] = set()
    for episode in found:
        alert = next((a for a in stored if a["id"] not in matched and _overlaps(a, episode)), None)
        if alert is None:
            _open(conn, t, rule, episode)
            continue
        matched.add(alert["id"])
        if alert["status"] != "closed":
            _update(conn, t, rule, alert, episode)
    for alert in stored:
        if alert["id"] not in matched and alert["status"] != "closed" and alert["observed_start"] >= window_start:
            log_event(conn, alert["id"], "retract", "late data shows the condition did not last")
            conn.execute("update alert set status = 'closed', closed_at = now(), updated_at = now() where id = %s",
                         (alert["id"],))
            _close_incident_if_done(conn, alert["incident_id"])


_STORED = """
    select id, rule, status, observed_start, observed_end, severity, worst_value, incident_id, detail, updated_at,
           verdict, acknowledged_at
      from alert
     where terminal_id = %(t)s and (%(r)s::text is null or rule = %(r)s)
       and (status in ('open', 'acknowledged') or observed_end is null or observed_end >= %(since)s)
     order by observed_start
"""


def _stored(conn: psycopg.Connection, terminal_id: int, rule: str, since: dt.datetime) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_STORED, {"t": terminal_id, "r": rule, "since": since}).fetchall()


def stored_alerts_of(conn: psycopg.Connection, since: dict[int, dt.datetime]) -> dict[int, dict[str, list[dict]]]:
    """Every alert of these terminals that a window from the terminal's ``since`` can touch, by terminal and rule,
    in one query."""
    found: dict[int, dict[str, list[dict]]] = {}
    ids = list(since)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            select a.id, a.terminal_id, a.rule, a.status, a.observed_start, a.observed_end, a.severity, a.worst_value,
                   a.incident_id, a.detail, a.updated_at, a.verdict, a.acknowledged_at
              from unnest(%(t)b::bigint[], %(since)b::timestamptz[]) as u(terminal_id, since)
              join alert a on a.terminal_id = u.terminal_id
               and (a.status in ('open', 'acknowledged') or a.observed_end is null or a.observed_end >= u.since
                    or a.acknowledged_at >= u.since)  -- a word given lately on a drift alert long resolved
             order by a.observed_start
            """,
            {"t": ids, "since": [since[t] for t in ids]},
        )
        for row in rows:
            found.setdefault(row["terminal_id"], {}).setdefault(row["rule"], []).append(row)
    return found


def _overlaps(alert: dict, episode: Episode) -> bool:
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return alert["observed_start"] <= (episode.end or far) and episode.start <= (alert["observed_end"] or far)


def _open(conn: psycopg.Connection, t: TerminalInfo, rule: Rule, episode: Episode) -> None:
    status = "open" if episode.active else "resolved"
    try:
        with conn.transaction():
            alert_id = conn.execute(
                """
                insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code, status,
                                   observed_start, observed_end, worst_value, detail, resolved_at, metric, unit,
                                   limit_value, direction, standard, grade)
                values (%(t)s, %(rule)s, %(family)s, %(severity)s, %(bureau)s, %(department)s, %(division)s,
                        %(status)s, %(start)s, %(end)s, %(worst)s, %(detail)s,
                        case when %(status)s = 'resolved' then now() end, %(metric)s, %(unit)s, %(limit)s,
                        %(direction)s, %(standard)s, %(grade)s)
                returning id
                """,
                {"t": t.id, "rule": rule.key, "family": rule.family, "severity": episode.severity,
                 "bureau": rule.bureau, "department": t.department, "division": t.division, "status": status,
                 "start": episode.start, "end": episode.end, "worst": episode.worst_value, "detail": episode.detail,
                 **_facts(rule, episode)},
            ).fetchone()[0]
    except psycopg.errors.UniqueViolation:
        return  # another worker opened it a moment ago: one active alert per (terminal, rule)
    OPENED.labels(rule.family, episode.severity).inc()
    log.info("alert %d opened: %s on %s, %s", alert_id, rule.key, t.code, episode.severity,
             extra={"alert_id": alert_id, "terminal": t.code})
    log_event(conn, alert_id, "open", episode.detail)
    if episode.active:
        _join_incident(conn, t, rule, alert_id)
    else:
        log_event(conn, alert_id, "resolve", f"cleared at {episode.end.isoformat()} (found in history)")


def _facts(rule: Rule, episode: Episode) -> dict:
    """The alert's structured fields: from the verdict of its worst reading, else what the rule knows."""
    facts = episode.facts or rule.default_facts()
    return {"metric": facts.metric, "unit": facts.unit, "limit": facts.limit, "direction": facts.direction,
            "standard": facts.standard, "grade": facts.grade}


REFRESH = dt.timedelta(seconds=60)
"""An open alert whose episode only goes on (same severity, same start, not ended) has its worst value and detail
refreshed at most this often: a terminal reporting every second must not rewrite its alert every second."""


def _settled(alert: dict, episode: Episode, start: dt.datetime, worse: bool) -> bool:
    """Nothing an operator acts on changed, and the alert was written lately."""
    return (alert["status"] in ACTIVE and episode.active and not worse and start == alert["observed_start"]
            and alert["observed_end"] is None and alert["updated_at"] > dt.datetime.now(dt.UTC) - REFRESH)


def _update(conn: psycopg.Connection, t: TerminalInfo, rule: Rule, alert: dict, episode: Episode) -> None:
    worse = SEVERITY_ORDER[episode.severity] > SEVERITY_ORDER[alert["severity"]]
    start = min(alert["observed_start"], episode.start)
    if _settled(alert, episode, start, worse):
        return
    conn.execute(
        """
        update alert set observed_start = %(start)s, observed_end = %(end)s, severity = %(severity)s,
                         worst_value = %(worst)s, detail = %(detail)s, metric = %(metric)s, unit = %(unit)s,
                         limit_value = %(limit)s, direction = %(direction)s, standard = %(standard)s,
                         grade = %(grade)s, updated_at = now()
         where id = %(id)s
        """,
        {"start": start, "end": episode.end, "severity": episode.severity if worse else alert["severity"],
         "worst": episode.worst_value if worse or episode.detail != alert["detail"] else alert["worst_value"],
         "detail": episode.detail, "id": alert["id"], **_facts(rule, episode)},
    )
    if alert["status"] in ACTIVE and not episode.active:
        conn.execute("update alert set status = 'resolved', resolved_at = now() where id = %s", (alert["id"],))
        log_event(conn, alert["id"], "resolve", f"cleared at {episode.end.isoformat()}")
        _close_incident_if_done(conn, alert["incident_id"])
    elif alert["status"] == "resolved" and episode.active:
        try:
            with conn.transaction():
                conn.execute("update alert set status = 'open', resolved_at = null where id = %s", (alert["id"],))
        except psycopg.errors.UniqueViolation:
            return
        log_event(conn, alert["id"], "update", "re-opened: later readings show the condition goes on")
        _join_incident(conn, t, rule, alert["id"])
    elif worse or start < alert["observed_start"]:
        log_event(conn, alert["id"], "update", episode.detail)


def log_event(conn: psycopg.Connection, alert_id: int, action: str, comment: str | None, actor: str = SYSTEM) -> None:
    conn.execute("insert into alert_event (alert_id, actor, action, comment) values (%s, %s, %s, %s)",
                 (alert_id, actor, action, comment))


# -- incidents: one problem, one incident -----------------------------------------------------------------

RIVER_REACH_KM = 40.0
"""Stations this close along a river, by chainage, share an incident."""


def incident_key(t: TerminalInfo, rule: Rule) -> str | None:
    """Sensors on one pole; neighbouring stations along one river; gas points in the same square kilometre."""
    if t.pole:
        return f"pole:{t.pole}"
    if rule.family == "river" and t.attrs.get("river"):
        return f"river:{t.attrs['river']}:{t.code}"
    if rule.family == "gas":
        return f"gas:{t.lat:.2f}:{t.lon:.2f}"
    return None


def _river_neighbour(conn: psycopg.Connection, t: TerminalInfo) -> str | None:
    """The key of an open incident on the same river with a station within the reach of this one."""
    row = conn.execute(
        """
        select i.key from incident i join alert a on a.incident_id = i.id join terminal m on m.id = a.terminal_id
         where i.status = 'open' and i.key like %(prefix)s
           and abs((m.attrs ->> 'chainage_km')::float8 - %(km)s) <= %(reach)s
         order by abs((m.attrs ->> 'chainage_km')::float8 - %(km)s) limit 1
        """,
        {"prefix": f"river:{t.attrs['river']}:%", "km": float(t.attrs.get("chainage_km", 0)), "reach": RIVER_REACH_KM},
    ).fetchone()
    return row[0] if row else None


def _join_incident(conn: psycopg.Connection, t: TerminalInfo, rule: Rule, alert_id: int) -> None:
    key = incident_key(t, rule)
    if key is None:
        return
    if key.startswith("river:"):
        key = _river_neighbour(conn, t) or key
    row = conn.execute("select id from incident where key = %s and status = 'open'", (key,)).fetchone()
    if row is None:
        try:
            with conn.transaction():
                row = conn.execute(
                    "insert into incident (key, title, bureau, division_code) values (%s, %s, %s, %s) returning id",
                    (key, _title(key), rule.bureau, t.division),
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            row = conn.execute("select id from incident where key = %s and status = 'open'", (key,)).fetchone()
    conn.execute("update alert set incident_id = %s where id = %s", (row[0], alert_id))


def _title(key: str) -> str:
    kind, _, rest = key.partition(":")
    return {"pole": f"smart pole {rest}", "river": f"{rest.split(':')[0]}: stations along the river",
            "gas": f"gas network near {rest}"}[kind]


def _close_incident_if_done(conn: psycopg.Connection, incident_id: int | None) -> None:
    if incident_id is None:
        return
    conn.execute(
        """
        update incident set status = 'closed', closed_at = now()
         where id = %(i)s and status = 'open'
           and not exists (select 1 from alert where incident_id = %(i)s and status in ('open', 'acknowledged'))
        """,
        {"i": incident_id},
    )


# -- operators --------------------------------------------------------------------------------------------

def act(conn: psycopg.Connection, alert_id: int, action: str, actor: str, comment: str | None,
        verdict: str | None = None) -> None:
    """acknowledge, resolve, close or comment, by a person; an impossible step is a Conflict. ``verdict``: the
    steward's word acknowledging an analyser's drift alert (``rules.SENSOR_OK`` or ``rules.FIXING``), which the
    bureau's rule on that analyser heeds (docs/rules.md, "Escalation"); given on an open drift alert (which it
    acknowledges) or a resolved one (which stays resolved), not on a closed one."""
    if verdict is not None and action != "acknowledge":
        raise Conflict(f"a verdict is given when acknowledging, not to {action}")
    row = conn.execute("select status, incident_id, rule from alert where id = %s for update", (alert_id,)).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} does not exist", field="id")
    status, incident_id, rule = row
    if verdict is not None and not rule.startswith("device:drift:"):
        raise Invalid(f"a verdict is the steward's word on an analyser's drift alert, not on {rule}", field="verdict")
    if verdict is not None and status == "resolved":
        # The drift alert resolves when the creep stops, the analyser still at its offset and the bureau's alert held
        # (the latch's main case): the steward's word is taken on it all the same, its status left as it is.
        conn.execute("update alert set updated_at = now(), acknowledged_at = now(), verdict = %(verdict)s "
                     "where id = %(id)s", {"id": alert_id, "verdict": verdict})
    elif action != "comment":
        if status not in _TRANSITIONS[action]:
            raise Conflict(f"alert {alert_id} is {status}; it cannot be {action}d")
        new = {"acknowledge": "acknowledged", "resolve": "resolved", "close": "closed"}[action]
        stamp = {"resolved": ", resolved_at = now()", "closed": ", closed_at = now()",
                 "acknowledged": ", acknowledged_at = now(), verdict = %(verdict)s"}.get(new, "")
        conn.execute(f"update alert set status = %(new)s, updated_at = now(){stamp} where id = %(id)s",
                     {"new": new, "id": alert_id, "verdict": verdict})
        if new in ("resolved", "closed"):
            _close_incident_if_done(conn, incident_id)
    log_event(conn, alert_id, action, f"[{verdict}] {comment or ''}".strip() if verdict else comment, actor)


def open_nodata(conn: psycopg.Connection, shard: int, shards: int) -> list[tuple]:
    """(alert id, terminal id, metric) of no-data alerts still open."""
    return conn.execute(
        """
        select a.id, a.terminal_id, substring(a.rule from 'device:nodata:(.*)') from alert a
         where a.rule like 'device:nodata:%%' and a.status in ('open', 'acknowledged') and a.terminal_id %% %s = %s
        """,
        (shards, shard),
    ).fetchall()


def resolve_by_rule(conn: psycopg.Connection, alert_id: int, comment: str) -> None:
    act(conn, alert_id, "resolve", SYSTEM, comment)
