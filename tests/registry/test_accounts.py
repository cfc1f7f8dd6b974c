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


def test_cli_adds_lists_disables_users_and_issues_and_revokes_tokens(db_url):
    from tests.test_cli import _ganzhi

    added = _ganzhi("user", "add", "cli-li", "--name", "李伟", "--department", "住建局", "--role", "operator",
                    db_url=db_url)
    assert added.returncode == 0 and "password (shown once)" in added.stdout
    assert "cli-li" in _ganzhi("user", "list", "--department", "zjj", db_url=db_url).stdout
    issued = _ganzhi("token", "issue", "cli-li", "--name", "燃气监管", db_url=db_url).stdout
    secret = issued.split()[-1]
    with psycopg.connect(db_url) as c:
        assert accounts.identify_token(c, secret).login == "cli-li"
    token_id = issued.split()[1]
    assert _ganzhi("token", "revoke", token_id, db_url=db_url).returncode == 0
    assert _ganzhi("user", "disable", "cli-li", db_url=db_url).returncode == 0
    with psycopg.connect(db_url) as c:
        assert accounts.identify_token(c, secret) is None
    refused = _ganzhi("user", "add", "cli-x", "--name", "x", "--role", "viewer", db_url=db_url)
    assert refused.returncode == 1 and "belong to a department" in refused.stderr


def test_failed_logins_throttle_one_account_from_one_place_then_spraying_from_it(conn):
    _add(conn, "acc-guess", ["viewer"], password="correct horse battery")
    for _ in range(accounts.FAILED_LOGIN_LIMITS["account_from_client"]):
        assert accounts.log_in(conn, "acc-guess", "guess", "10.0.0.66") is None
    with pytest.raises(accounts.LoginThrottled) as refused:  # even the right password is not checked now
        accounts.log_in(conn, "acc-guess", "correct horse battery", "10.0.0.66")
    window = accounts.FAILED_LOGIN_WINDOW.total_seconds()
    assert 0 < refused.value.retry_after <= window + 1
    assert accounts.log_in(conn, "acc-guess", "correct horse battery", "10.0.0.67") is not None  # elsewhere
    last = audit.entries(conn, object_code="acc-guess", action="login_failed", limit=1)[0]
    assert last.client == "10.0.0.66" and "throttled" in last.summary
    sprayed = accounts.FAILED_LOGIN_LIMITS["client"] - accounts.FAILED_LOGIN_LIMITS["account_from_client"] - 1
    for n in range(sprayed):  # one guess each at many accounts, from the same place
        assert accounts.log_in(conn, f"acc-spray-{n}", "guess", "10.0.0.66") is None
    with pytest.raises(accounts.LoginThrottled):
        accounts.log_in(conn, "acc-another", "guess", "10.0.0.66")
    assert accounts.log_in(conn, "acc-another", "guess", "10.0.0.68") is None  # other places are not blocked
