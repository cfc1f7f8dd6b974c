"""Webhook and SMS endpoints of the departments: making them safely, listing them, their delivery log, replay.

An endpoint URL is hostile input: it must not turn the platform into a proxy to its own network (SSRF). Its host
is resolved and refused when any address is not a public unicast one (loopback, private, link-local, shared,
multicast, reserved). The delivery worker's HTTP client (``alerts.egress``) checks again at every connection, on
the very addresses it then connects to, so a name that later resolves inward (DNS rebinding) gets nothing.
``webhook_allow_hosts`` lists hosts exempt from the check (tests); empty by default.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
import socket
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from alerts.feed import feed_visible

_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_WEBHOOK = """
    select id, department_code as department, channel, target, families, severities, division_code as division,
           created_by, created_at, paused_at, pause_reason
      from webhook
"""


class TargetRefused(ValueError):
    """The endpoint's URL or phone number is not one the platform sends to."""


_EMBEDS_IPV4 = (ipaddress.ip_network("::/96"), ipaddress.ip_network("64:ff9b::/96"),
                ipaddress.ip_network("64:ff9b:1::/48"))
"""IPv6 prefixes whose last 32 bits are an IPv4 address a gateway may reach (IPv4-compatible, NAT64)."""


def _public(address: str) -> bool:
    """Whether an address is public, judging the IPv4 address an IPv6 one carries (mapped, 6to4, NAT64)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _EMBEDS_IPV4):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_hosts: list[str]) -> None:
    """Raise ``TargetRefused`` unless ``url`` is http(s) to a host whose every address is public (or allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry credentials; the signature authenticates the platform")
    if parts.hostname in allow_hosts:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"the host {parts.hostname} does not resolve ({exc})") from exc
    refuse_inward(parts.hostname, [info[4][0] for info in infos])


def refuse_inward(host: str, addresses: list[str]) -> None:
    """Raise ``TargetRefused`` unless every address ``host`` resolved to is public (and there is one)."""
    if not addresses:
        raise TargetRefused(f"the host {host} resolves to no address")
    inward = sorted({address for address in addresses if not _public(address)})
    if inward:
        raise TargetRefused(f"the host {host} resolves to internal addresses ({', '.join(inward)})")


def check_target(channel: str, target: str, allow_hosts: list[str]) -> None:
    if channel == "sms":
        if not _PHONE.match(target):
            raise TargetRefused("the phone number must be digits, 6 to 15, with an optional leading +")
        return
    check_url(target, allow_hosts)


def create(conn: psycopg.Connection, *, department: str, channel: str, target: str, families: list[str] | None,
           severities: list[str] | None, division: str | None, created_by: str) -> dict:
    """The new endpoint, with its signing secret (the only time it is shown). It receives what happens next."""
    secret = f"gzw_{secrets.token_urlsafe(32)}"
    with conn.cursor(row_factory=dict_row) as cur:
        made = cur.execute(
            """
            insert into webhook (department_code, channel, target, secret, families, severities, division_code,
                                 created_by)
            values (%(department)s, %(channel)s, %(target)s, %(secret)s, %(families)s, %(severities)s,
                    %(division)s, %(created_by)s)
            returning id
            """,
            {"department": department, "channel": channel, "target": target, "secret": secret,
             "families": families, "severities": severities, "division": division, "created_by": created_by},
        ).fetchone()
    return {**get(conn, made["id"]), "secret": secret}


def get(conn: psycopg.Connection, webhook_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_WEBHOOK + " where id = %s and deleted_at is null", (webhook_id,)).fetchone()


def list_webhooks(conn: psycopg.Connection, department: str | None, after_id: int | None = None,
                  limit: int | None = None) -> list[dict]:
    """Live subscriptions in id order; ``after_id`` and ``limit`` read one page of them."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_WEBHOOK + " where deleted_at is null and (%(d)s::text is null or department_code = %(d)s)"
                                      " and (%(after)s::bigint is null or id > %(after)s) order by id limit %(limit)s",
                           {"d": department, "after": after_id, "limit": limit}).fetchall()


def delete(conn: psycopg.Connection, webhook_id: int) -> None:
    """Kept (its log stays readable to the audit) but sent nothing more."""
    conn.execute("update webhook set deleted_at = now() where id = %s", (webhook_id,))
    conn.execute("delete from webhook_delivery where webhook_id = %s and status = 'pending'", (webhook_id,))


def resume(conn: psycopg.Connection, webhook_id: int) -> None:
    """A paused endpoint sends again, starting with the delivery it stopped on."""
    conn.execute("update webhook set paused_at = null, pause_reason = null where id = %s", (webhook_id,))
    conn.execute("update webhook_delivery set next_at = now(), first_failed_at = null "
                 "where webhook_id = %s and status = 'pending'", (webhook_id,))


def deliveries(conn: psycopg.Connection, webhook_id: int, before_id: int | None, limit: int) -> list[dict]:
    """The delivery log, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            select d.id, d.feed_id as event_id, f.kind, f.alert_id, d.replay, d.status, d.attempts, d.next_at,
                   d.last_status, d.last_error, d.created_at, d.delivered_at, d.latency_ms
              from webhook_delivery d join alert_feed f on f.id = d.feed_id
             where d.webhook_id = %(id)s and (%(before)s::bigint is null or d.id < %(before)s)
             order by d.id desc limit %(limit)s
            """, {"id": webhook_id, "before": before_id, "limit": limit}).fetchall()


def _matching(alias: str = "f") -> str:
    """Feed entries endpoint ``w`` subscribes to: its filters, and its department's rights."""
    return f"""(w.families is null or {alias}.family = any(w.families))
           and (w.severities is null or {alias}.severity = any(w.severities))
           and (w.division_code is null or {alias}.division_code like w.division_code || '%%')
           and {feed_visible(alias, 'department')}"""


def fan_out_statement(endpoint: dict, after: int, upto: int) -> tuple[str, dict]:
    """The insert of the deliveries to ``endpoint`` of the matching entries in (after, upto]; none twice."""
    return (
        f"""
        insert into webhook_delivery (webhook_id, feed_id)
        select w.id, f.id from alert_feed f, webhook w
         where w.id = %(webhook)s and f.id > %(after)s and f.id <= %(upto)s and {_matching()}
         order by f.id
        on conflict (webhook_id, feed_id) where not replay do nothing
        """, {"webhook": endpoint["id"], "after": after, "upto": upto, "department": endpoint["department"]})


def replay(conn: psycopg.Connection, endpoint: dict, start: dt.datetime, end: dt.datetime) -> int:
    """The matching entries of [start, end) sent again, after what is queued (the endpoint's order holds)."""
    return conn.execute(
        f"""
        insert into webhook_delivery (webhook_id, feed_id, replay)
        select w.id, f.id, true from alert_feed f, webhook w
         where w.id = %(webhook)s and f.at >= %(start)s and f.at < %(end)s and {_matching()}
         order by f.id
        """, {"webhook": endpoint["id"], "start": start, "end": end, "department": endpoint["department"]},
    ).rowcount
