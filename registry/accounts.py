"""Accounts, roles, API tokens and browser sessions.

A person or a bureau's system has an account in one department with one or more roles. Passwords are
stored as scrypt hashes (slow on purpose: a person's password can be guessed). Tokens and session ids are
256 random bits, shown once and stored as SHA-256: nothing that fast can be guessed, and a request must not
pay for scrypt.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg.rows import dict_row

from registry.audit import record
from registry.changes import Actor
from registry.errors import Conflict, Invalid, NotFound
from registry.lookups import Lookups


class Role(StrEnum):
    viewer = "viewer"
    """reads what its department stewards, was granted, or receives alerts for"""
    operator = "operator"
    """and acknowledges, resolves, closes and comments those alerts; records fire verdicts"""
    steward_admin = "steward_admin"
    """and writes its department's ledger (terminals, poles, grants, device credentials)"""
    platform_admin = "platform_admin"
    """everything: divisions, standards, heat sources, accounts, and every department's ledger"""
    leading_group = "leading_group"
    """the city's leading group: reads everything, changes nothing"""


_IMPLIED = {
    Role.viewer: {Role.viewer},
    Role.operator: {Role.viewer, Role.operator},
    Role.steward_admin: {Role.viewer, Role.operator, Role.steward_admin},
    Role.platform_admin: set(Role),
    Role.leading_group: {Role.viewer, Role.leading_group},
}
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
TOKEN_PREFIX = "gzt_"
SESSION_HOURS = 12
MIN_PASSWORD = 12
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
FAILED_LOGIN_WINDOW = dt.timedelta(minutes=15)
FAILED_LOGIN_LIMITS = {"account_from_client": 5, "client": 50, "account": 100}
"""Failed logins within the window after which more attempts are refused unchecked. The pair limit stops
guessing one password from one place; the client limit stops spraying many accounts from one place; the
account limit (high, so a stranger cannot easily lock a person out) stops guessing from many places."""


class LoginThrottled(Exception):
    """Too many failed logins: attempts are refused, without checking the password, for ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Identity:
    """Who is calling: an account, through a token, a session or a password."""

    account_id: int
    login: str
    department: str | None
    roles: frozenset[Role]
    token_id: int | None = None
    session_id: str | None = None

    @property
    def rights(self) -> frozenset[Role]:
        return frozenset().union(*(_IMPLIED[r] for r in self.roles))

    def holds(self, role: Role) -> bool:
        return role in self.rights

    @property
    def scope(self) -> str | None:
        """The department whose view this identity has; None for those who read everything."""
        return None if self.rights & {Role.platform_admin, Role.leading_group} else self.department

    def stewards(self, department: str) -> bool:
        """May write the ledger of ``department``."""
        return self.holds(Role.platform_admin) or (self.holds(Role.steward_admin) and self.department == department)

    def actor(self, client: str | None = None) -> Actor:
        return Actor(self.login, account_id=self.account_id, department=self.department, client=client)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT, dklen=32)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    _, n, r, p, salt, digest = stored.split("$")
    found = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(found, _unb64(digest))


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
"""Checked against when the login is unknown, so an unknown login takes as long as a wrong password."""


def digest(secret: str) -> str:
    """The stored form of a token or session id."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_password() -> str:
    return secrets.token_urlsafe(18)


# -- accounts ---------------------------------------------------------------------------------------------------

_ACCOUNT = """
    select id, login, name, kind, department_code as department, roles, created_at, created_by, disabled_at,
           (password_hash is not null) as has_password
      from account
"""


def add_account(conn: psycopg.Connection, *, login: str, name: str, department: str | None, roles: list[str],
                kind: str, password: str | None, actor: Actor) -> dict:
    """Create an account; ``password`` may be None for a service that uses tokens only."""
    login = login.strip().lower()
    if not _LOGIN.match(login):
        raise Invalid("a login is 2–64 of a-z, 0-9, '.', '_', '@', '-', starting with a letter or digit",
                      field="login")
    wanted = _roles(roles)
    code = Lookups.load(conn).department(department) if department else None
    if code is None and not wanted <= {Role.platform_admin, Role.leading_group}:
        raise Invalid("viewers, operators and steward admins belong to a department", field="department")
    if password is not None and len(password) < MIN_PASSWORD:
        raise Invalid(f"a password has at least {MIN_PASSWORD} characters", field="password")
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """
                insert into account (login, name, kind, department_code, roles, password_hash, created_by)
                values (%(login)s, %(name)s, %(kind)s, %(department)s, %(roles)s, %(hash)s, %(by)s)
                returning id
                """,
                {"login": login, "name": name, "kind": kind, "department": code, "roles": sorted(wanted),
                 "hash": hash_password(password) if password else None, "by": actor.name},
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"account {login!r} already exists", field="login") from exc
    created = get_account(conn, row["id"])
    record(conn, actor, "create", "account", login, after=_public(created), related=("department", code))
    return created


def _roles(roles: list[str]) -> set[Role]:
    if not roles:
        raise Invalid("give at least one role", field="roles")
    try:
        return {Role(r) for r in roles}
    except ValueError as exc:
        raise Invalid(f"roles are {', '.join(Role)}; got {roles}", field="roles") from exc


def _public(account: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in account.items()}


def get_account(conn: psycopg.Connection, account_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_ACCOUNT + " where id = %s", (account_id,)).fetchone()


def account_by_login(conn: psycopg.Connection, login: str) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_ACCOUNT + " where login = %s", (login.strip().lower(),)).fetchone()
    if row is None:
        raise NotFound(f"account {login!r} does not exist", field="login")
    return row


def list_accounts(conn: psycopg.Connection, department: str | None = None, *, after: str | None = None,
                  limit: int | None = None) -> list[dict]:
    """Accounts in login order, those after the login ``after``; at most ``limit``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_ACCOUNT + " where (%(d)s::text is null or department_code = %(d)s)"
                           " and (%(after)s::text is null or login > %(after)s) order by login limit %(limit)s",
                           {"d": department, "after": after, "limit": limit}).fetchall()


def set_disabled(conn: psycopg.Connection, login: str, disabled: bool, actor: Actor) -> dict:
    """Disable (or enable) an account: its tokens and sessions stop working at once."""
    account = account_by_login(conn, login)
    if disabled and account["id"] == actor.account_id:
        raise Conflict("an account cannot disable itself", field="login")
    conn.execute("update account set disabled_at = case when %s then coalesce(disabled_at, now()) end where id = %s",
                 (disabled, account["id"]))
    if disabled:
        conn.execute("update account_session set ended_at = now() where account_id = %s and ended_at is null",
                     (account["id"],))
    record(conn, actor, "disable" if disabled else "enable", "account", account["login"],
           related=("department", account["department"]))
    return get_account(conn, account["id"])


def set_password(conn: psycopg.Connection, login: str, password: str, actor: Actor) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"a password has at least {MIN_PASSWORD} characters", field="password")
    account = account_by_login(conn, login)
    conn.execute("update account set password_hash = %s where id = %s", (hash_password(password), account["id"]))
    record(conn, actor, "update", "account", account["login"], summary=f"new password for {account['login']}")


def count_platform_admins(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from account where 'platform_admin' = any(roles) and disabled_at is null"
                        ).fetchone()[0]


# -- tokens -----------------------------------------------------------------------------------------------------

_TOKEN = """
    select k.id, a.login as account, k.name, k.created_at, k.created_by, k.expires_at, k.revoked_at, k.last_used_at
      from api_token k join account a on a.id = k.account_id
"""


def issue_token(conn: psycopg.Connection, login: str, name: str, days: int | None, actor: Actor) -> tuple[dict, str]:
    """A new API token for an account; the secret is returned once and only its hash is kept."""
    account = account_by_login(conn, login)
    if account["disabled_at"] is not None:
        raise Conflict(f"account {account['login']} is disabled", field="login")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days) if days else None
    with conn.cursor(row_factory=dict_row) as cur:
        token_id = cur.execute(
            """
            insert into api_token (account_id, name, secret_hash, created_by, expires_at)
            values (%s, %s, %s, %s, %s) returning id
            """,
            (account["id"], name, digest(secret), actor.name, expires),
        ).fetchone()["id"]
        token = cur.execute(_TOKEN + " where k.id = %s", (token_id,)).fetchone()
    record(conn, actor, "issue", "token", str(token_id), after=_public(token),
           related=("account", account["login"]))
    return token, secret


def list_tokens(conn: psycopg.Connection, login: str | None = None, after_id: int | None = None,
                limit: int | None = None) -> list[dict]:
    """Tokens in id order; ``after_id`` and ``limit`` read one page of them (the API's cursor paging)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_TOKEN + " where (%(l)s::text is null or a.login = %(l)s)"
                                    " and (%(after)s::bigint is null or k.id > %(after)s)"
                                    " order by k.id limit %(limit)s",
                           {"l": login, "after": after_id, "limit": limit}).fetchall()


def get_token(conn: psycopg.Connection, token_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        token = cur.execute(_TOKEN + " where k.id = %s", (token_id,)).fetchone()
    if token is None:
        raise NotFound(f"token {token_id} does not exist", field="id")
    return token


def revoke_token(conn: psycopg.Connection, token_id: int, actor: Actor) -> dict:
    token = get_token(conn, token_id)
    conn.execute("update api_token set revoked_at = coalesce(revoked_at, now()) where id = %s", (token_id,))
    record(conn, actor, "revoke", "token", str(token_id), related=("account", token["account"]))
    return get_token(conn, token_id)


# -- who is calling ---------------------------------------------------------------------------------------------

def _identity(row: tuple | None, **via) -> Identity | None:
    if row is None:
        return None
    account_id, login, department, roles = row
    return Identity(account_id, login, department, frozenset(Role(r) for r in roles), **via)


ACCOUNT_IN_SERVICE = """a.disabled_at is null and not exists (
    select 1 from department d where d.code = a.department_code and d.disabled_at is not null)"""
"""Account ``a`` may act: it is enabled, and so is its department (disabling either stops it at once)."""


def identify_token(conn: psycopg.Connection, secret: str) -> Identity | None:
    """The identity of a live token of an enabled account, or None."""
    found = conn.execute(
        f"""
        select k.id, a.id, a.login, a.department_code, a.roles
          from api_token k join account a on a.id = k.account_id
         where k.secret_hash = %s and k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
           and {ACCOUNT_IN_SERVICE}
        """,
        (digest(secret),),
    ).fetchone()
    if found is None:
        return None
    conn.execute("update api_token set last_used_at = now() where id = %s "
                 "and (last_used_at is null or last_used_at < now() - interval '1 minute')", (found[0],))
    return _identity(found[1:], token_id=found[0])


def identify_session(conn: psycopg.Connection, session_id: str) -> tuple[Identity, str] | None:
    """The identity of a live session and its CSRF token, or None."""
    found = conn.execute(
        f"""
        select a.id, a.login, a.department_code, a.roles, s.csrf_token
          from account_session s join account a on a.id = s.account_id
         where s.id_hash = %s and s.ended_at is null and s.expires_at > now() and {ACCOUNT_IN_SERVICE}
        """,
        (digest(session_id),),
    ).fetchone()
    if found is None:
        return None
    return _identity(found[:4], session_id=digest(session_id)), found[4]


def log_in(conn: psycopg.Connection, login: str, password: str,
           client: str | None) -> tuple[Identity, str, str] | None:
    """Check a password and open a session: (identity, session id, CSRF token), or None. Both are audited.
    Raises LoginThrottled, after auditing the attempt, while failed logins exceed FAILED_LOGIN_LIMITS."""
    retry_after = _throttled_for(conn, login.strip().lower()[:64], client)
    if retry_after:
        who = Actor(login.strip().lower()[:64] or "?", client=client)
        record(conn, who, "login_failed", "account", who.name, summary=f"login as {who.name!r} refused: throttled")
        raise LoginThrottled(retry_after)
    found = conn.execute(
        f"select a.id, a.login, a.department_code, a.roles, a.password_hash, {ACCOUNT_IN_SERVICE} from account a "
        "where a.login = %s",
        (login.strip().lower(),),
    ).fetchone()
    good = check_password(password, found[4] if found else _DUMMY_HASH) and found is not None and found[5]
    if not good:
        who = Actor(login.strip().lower()[:64] or "?", account_id=found[0] if found else None, client=client)
        record(conn, who, "login_failed", "account", who.name, summary=f"failed login as {who.name!r}")
        return None
    identity = _identity(found[:4])
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(
        "insert into account_session (id_hash, account_id, csrf_token, expires_at) values (%s, %s, %s, %s)",
        (digest(session_id), identity.account_id, csrf, dt.datetime.now(dt.UTC) + dt.timedelta(hours=SESSION_HOURS)),
    )
    record(conn, identity.actor(client), "login", "account", identity.login)
    return identity, session_id, csrf


def _throttled_for(conn: psycopg.Connection, login: str, client: str | None) -> int:
    """Seconds until the oldest counted failure leaves the window, when any limit is reached; else 0."""
    counts = conn.execute(
        """
        select count(*) filter (where object_code = %(login)s and client is not distinct from %(client)s),
               min(at) filter (where object_code = %(login)s and client is not distinct from %(client)s),
               count(*) filter (where client = %(client)s), min(at) filter (where client = %(client)s),
               count(*) filter (where object_code = %(login)s), min(at) filter (where object_code = %(login)s)
          from change
         where action = 'login_failed' and object_type = 'account' and at > now() - %(window)s
           and (object_code = %(login)s or client = %(client)s)
        """,
        {"login": login, "client": client, "window": FAILED_LOGIN_WINDOW},
    ).fetchone()
    limits = FAILED_LOGIN_LIMITS
    reached = [oldest for count, oldest, limit in (
        (counts[0], counts[1], limits["account_from_client"]), (counts[2], counts[3], limits["client"]),
        (counts[4], counts[5], limits["account"])) if count >= limit]
    if not reached:
        return 0
    until = min(reached) + FAILED_LOGIN_WINDOW
    return max(1, int((until - dt.datetime.now(dt.UTC)).total_seconds()) + 1)


def log_out(conn: psycopg.Connection, identity: Identity, client: str | None) -> None:
    if identity.session_id:
        conn.execute("update account_session set ended_at = now() where id_hash = %s and ended_at is null",
                     (identity.session_id,))
    record(conn, identity.actor(client), "logout", "account", identity.login)
