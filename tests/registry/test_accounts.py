"""Accounts, secrets and tokens in the database."""

from __future__ import annotations

import psycopg
import pytest

from ganzhi.account_commands import ensure_first_admin
from registry import accounts, audit
from registry.accounts import Role
from registry.changes import Actor
from registry.errors import Conflict, Invalid

ADMIN = Actor("tests")


def _add(conn: psycopg.Connection, login: str, roles: list[str], department: str | None = "zjj",
         password: str | None = None) -> dict:
    return accounts.add_account(conn, login=login, name=login, department=department, roles=roles, kind="person",
                                password=password, actor=ADMIN)


def test_passwords_are_scrypt_hashes_and_checked(conn):
    _add(conn, "acc-hash", ["viewer"], password="correct horse battery")
    stored = conn.execute("select password_hash from account where login = 'acc-hash'").fetchone()[0]
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert accounts.check_password("correct horse battery", stored)
    assert not accounts.check_password("correct horse battery!", stored)
    assert accounts.log_in(conn, "acc-hash", "wrong password", "10.0.0.9") is None
    identity, session_id, csrf = accounts.log_in(conn, "acc-hash", "correct horse battery", "10.0.0.9")
    assert identity.department == "zjj" and identity.roles == {Role.viewer}
    found, found_csrf = accounts.identify_session(conn, session_id)
    assert (found.account_id, found.login, found_csrf) == (identity.account_id, "acc-hash", csrf)
    log = [(e.action, e.client) for e in audit.entries(conn, object_code="acc-hash")]
    assert log[:2] == [("login", "10.0.0.9"), ("login_failed", "10.0.0.9")]


def test_tokens_are_kept_only_as_hashes_and_stop_when_revoked_or_disabled(conn):
    _add(conn, "acc-token", ["operator"])
    token, secret = accounts.issue_token(conn, "acc-token", "燃气监管系统", None, ADMIN)
    assert secret.startswith(accounts.TOKEN_PREFIX)
    assert conn.execute("select count(*) from api_token where secret_hash = %s", (secret,)).fetchone()[0] == 0
    assert accounts.identify_token(conn, secret).holds(Role.viewer)  # an operator is a viewer too
    accounts.set_disabled(conn, "acc-token", True, ADMIN)
    assert accounts.identify_token(conn, secret) is None
    accounts.set_disabled(conn, "acc-token", False, ADMIN)
    accounts.revoke_token(conn, token["id"], ADMIN)
    assert accounts.identify_token(conn, secret) is None


def test_department_roles_need_a_department_and_roles_must_be_known(conn):
    with pytest.raises(Invalid, match="belong to a department"):
        _add(conn, "acc-nodept", ["viewer"], department=None)
    with pytest.raises(Invalid, match="roles are"):
        _add(conn, "acc-badrole", ["superuser"])
    with pytest.raises(Invalid, match="at least 12"):
        _add(conn, "acc-short", ["viewer"], password="short")
    _add(conn, "acc-leader", ["leading_group"], department=None)
    with pytest.raises(Conflict):
        _add(conn, "acc-leader", ["leading_group"], department=None)


def test_rights_follow_roles():
    steward = accounts.Identity(1, "s", "zjj", frozenset({Role.steward_admin}))
    assert steward.stewards("zjj") and not steward.stewards("sthjj") and steward.scope == "zjj"
    leader = accounts.Identity(2, "l", None, frozenset({Role.leading_group}))
    assert leader.scope is None and not leader.holds(Role.operator)
    admin = accounts.Identity(3, "a", None, frozenset({Role.platform_admin}))
    assert admin.stewards("sthjj") and admin.holds(Role.operator)


def test_the_first_run_makes_one_admin_with_a_private_secret_file(db_url, tmp_path):
    with psycopg.connect(db_url) as c:
        c.execute("update account set disabled_at = now() where 'platform_admin' = any(roles)")
    try:
        path = ensure_first_admin(db_url, tmp_path)
        assert path.stat().st_mode & 0o777 == 0o600
        with psycopg.connect(db_url) as c:
            assert accounts.log_in(c, "admin", path.read_text().strip(), None) is not None
        assert ensure_first_admin(db_url, tmp_path / "again") is None
    finally:
        with psycopg.connect(db_url) as c:
            c.execute("update account set disabled_at = null where login = 'test-admin'")
