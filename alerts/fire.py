"""Fire events become alerts for the environment bureau, routed by division (the county and, when its
polygon exists, the township); one alert per fire event, updated as cameras and satellites add to it."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from alerts.service import ACTIVE, act, log_event
from analytics.fire import fusion, store
from registry.errors import Conflict, NotFound

RULE = "fire:straw"
ALERT_CONFIDENCE = fusion.ALERT_CONFIDENCE
"""Events below this stay on the fire-event list without paging anyone (a lone low-confidence VIIRS pixel)."""
ENVIRONMENT_BUREAU = "sthjj"


def fire_event(conn: psycopg.Connection, event_id: int) -> int | None:
    """Open or update the alert of a fire event; returns the alert id (None while below the threshold)."""
    e = store.event(conn, event_id)
    with conn.cursor(row_factory=dict_row) as cur:
        alert = cur.execute("select id, status, severity, detail from alert where fire_event_id = %s",
                            (event_id,)).fetchone()
    if e is None or e["division_code"] is None or (alert is None and e["confidence"] < ALERT_CONFIDENCE):
        return None
    detail = describe(conn, e)
    severity = "critical" if len(e["sources"]) > 1 or e["confidence"] >= 0.85 else "warning"
    if alert is None:
        alert_id = conn.execute(
            """
            insert into alert (fire_event_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, worst_value, detail)
            values (%s, %s, 'fire', %s, 'environment', %s, %s, %s, %s, %s)
            on conflict (fire_event_id) where fire_event_id is not null do nothing
            returning id
            """,
            (event_id, RULE, severity, ENVIRONMENT_BUREAU, e["division_code"], e["first_seen"], e["confidence"],
             detail),
        ).fetchone()
        if alert_id is not None:
            log_event(conn, alert_id[0], "open", detail)
            return alert_id[0]
        return None
    if detail != alert["detail"] or severity != alert["severity"]:
        conn.execute(
            """
            update alert set detail = %s, severity = %s, worst_value = %s, division_code = %s,
                             observed_start = least(observed_start, %s), updated_at = now()
             where id = %s
            """,
            (detail, severity, e["confidence"], e["division_code"], e["first_seen"], alert["id"]),
        )
        log_event(conn, alert["id"], "update", detail)
    return alert["id"]


def fire_closed(conn: psycopg.Connection, event_id: int) -> None:
    """The fire has not been seen for a while: its alert resolves itself (an operator still closes it)."""
    row = conn.execute("select id, status from alert where fire_event_id = %s", (event_id,)).fetchone()
    if row is None or row[1] not in ACTIVE:
        return
    conn.execute("update alert set status = 'resolved', resolved_at = now(), observed_end = "
                 "(select last_seen from fire_event where id = %s), updated_at = now() where id = %s",
                 (event_id, row[0]))
    log_event(conn, row[0], "resolve", "no camera or satellite has seen the fire for two hours")


def describe(conn: psycopg.Connection, e: dict) -> str:
    """One line an operator can act on: where, how sure, seen by what."""
    names = dict(conn.execute("select code, name from division where code = any(%s)",
                              ([e["division_code"], e["division_code"][:6]],)).fetchall())
    place = names.get(e["division_code"][:6], e["division_code"])
    if len(e["division_code"]) > 6:
        place += " " + names.get(e["division_code"], "")
    where = (f"at {e['lat']:.5f}, {e['lon']:.5f} (±{e['accuracy_m']:.0f} m, {e['position_method']})"
             if e["lat"] is not None else "position unknown (camera without a pose)")
    sources = conn.execute(
        """
        select d.source, d.cue, coalesce(t.name, d.satellite ->> 'satellite'), max(d.confidence)
          from fire_detection d left join terminal t on t.id = d.terminal_id
         where d.event_id = %s group by 1, 2, 3 order by 4 desc limit 6
        """,
        (e["id"],),
    ).fetchall()
    seen = ", ".join(f"{name or source} {cue} {conf:.2f}" for source, cue, name, conf in sources)
    return f"straw fire in {place} {where}; confidence {e['confidence']:.2f}; seen by {seen}"


def record_verdict(conn: psycopg.Connection, event_id: int, verdict: str, actor: str, note: str | None) -> None:
    """What the township found on the spot. A straw or residue fire is a confirmed point (its alert is
    acknowledged); another heat source or a false alarm closes the alert. Recorded once; a second,
    different verdict is a Conflict (a correction is a new comment on the alert, not a silent rewrite)."""
    row = conn.execute("select verdict from fire_event where id = %s for update", (event_id,)).fetchone()
    if row is None:
        raise NotFound(f"fire event {event_id} does not exist", field="id")
    if row[0] is not None and row[0] != verdict:
        raise Conflict(f"fire event {event_id} was already found to be {row[0]}")
    conn.execute("update fire_event set verdict = %s, verified_by = %s, verified_at = now(), verdict_note = %s "
                 "where id = %s", (verdict, actor, note, event_id))
    alert = conn.execute("select id, status from alert where fire_event_id = %s", (event_id,)).fetchone()
    if alert is None:
        return
    text = f"on the spot: {verdict}" + (f" — {note}" if note else "")
    if verdict in ("straw", "residue") and alert[1] == "open":
        act(conn, alert[0], "acknowledge", actor, text)
    elif verdict in ("other_heat", "false") and alert[1] != "closed":
        act(conn, alert[0], "close", actor, text)
    else:
        act(conn, alert[0], "comment", actor, text)
