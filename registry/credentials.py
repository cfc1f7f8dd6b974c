"""Broker credentials: each pole and terminal logs in to the broker as its city code.

Secrets are kept only as mosquitto's own password hash (``$7$`` PBKDF2-SHA512), so the
password file is written straight from the ledger. One PBKDF2 round, not mosquitto_passwd's 101: a
secret is 144 random bits, which no number of rounds makes harder to guess (rounds help low-entropy,
human-chosen passwords), while mosquitto 2.0 computes the hash of every connected login again each time
it re-reads the file (101 rounds: about 0.5 ms each on the loaded test box, a minute of stalled broker at
10^5 connected). Hashes of 101 rounds issued before stay valid. Service accounts, whose secret an operator
may choose, keep 101 rounds (they are few). What a login may do is the broker's
business (``ganzhi.broker_auth``); a device has a login while it has a secret and is not retired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import psycopg

from registry import codes
from registry.changes import Actor, change_row
from registry.errors import NotFound
from registry.queries import insert_changes

_ITERATIONS = 1
SERVICE_ITERATIONS = 101
"""What mosquitto_passwd 2.0 writes: for service secrets, which may be chosen by a person."""


def hash_secret(secret: str, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """The mosquitto password-file hash of a secret."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_secret() -> str:
    return secrets.token_urlsafe(18)


def demo_secret(key: str, code: str) -> str:
    """The demo ledger's secret for a device, derivable by the simulators that hold the same key."""
    return base64.urlsafe_b64encode(hmac.new(key.encode(), code.encode(), hashlib.sha256).digest()[:18]).decode()


def demo_logger_login(key: str, name: str) -> tuple[str, str]:
    """The demo ledger's HJ 212 MN (24 hex digits) and 6-digit PW for a logger, derived from its name."""
    digest = hmac.new(key.encode(), f"hj212:{name}".encode(), hashlib.sha256).hexdigest()
    return digest[:24].upper(), f"{int(digest[24:36], 16) % 1_000_000:06d}"


def issue(conn: psycopg.Connection, code: str, actor: Actor) -> str:
    """A new secret for a pole or terminal (replacing the old one); returned once, stored hashed."""
    code = codes.parse(code).value
    known = conn.execute(
        "select exists (select 1 from terminal where code = %(c)s) or exists (select 1 from pole where code = %(c)s)",
        {"c": code},
    ).fetchone()[0]
    if not known:
        raise NotFound(f"{code} is neither a pole nor a terminal in the ledger", field="code")
    secret = new_secret()
    store(conn, [(code, hash_secret(secret))], actor.name)
    insert_changes(conn, [change_row(actor, "update", "credential", code, None, None,
                                     summary=f"issued a new broker secret for {code}")])
    return secret


def store(conn: psycopg.Connection, hashed: list[tuple[str, str]], issued_by: str) -> None:
    """Upsert (code, hash) pairs."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into device_credential (code, secret_hash, issued_by) values (%s, %s, %s)
            on conflict (code) do update set secret_hash = excluded.secret_hash, issued_at = now(),
                                             issued_by = excluded.issued_by
            """,
            [(code, secret_hash, issued_by) for code, secret_hash in hashed],
        )


LOGINS = """
select c.code, c.secret_hash
  from device_credential c
 where (exists (select 1 from terminal t where t.code = c.code and t.status <> 'retired')
        or exists (select 1 from pole p where p.code = c.code and p.status <> 'retired'))
"""
"""(code, hash) of every pole and terminal that is not retired and has a secret: the broker's logins."""
LOGINS_OF = LOGINS + " and c.code = any(%(codes)s)"
"""The same for some codes only (``codes``: a list)."""


def broker_logins(conn: psycopg.Connection) -> dict[str, str]:
    """code → hash of every device that may log in to the broker."""
    return dict(conn.execute(LOGINS).fetchall())


def password_file(logins: dict[str, str], services: dict[str, str]) -> str:
    """Mosquitto password file: devices (code → hash) plus service users (name → secret in clear)."""
    hashed = {name: hash_secret(secret, iterations=SERVICE_ITERATIONS) for name, secret in sorted(services.items())}
    return password_lines(hashed) + password_lines(logins)


def password_lines(logins: dict[str, str]) -> str:
    """Password-file lines (login → hash)."""
    return "".join(f"{login}:{secret_hash}\n" for login, secret_hash in logins.items())
