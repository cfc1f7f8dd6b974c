"""`ganzhi user` and `ganzhi token`: accounts and API tokens from the command line; the first admin of `up`."""

from __future__ import annotations

import os
from pathlib import Path

import click
import psycopg

from core.settings import Settings
from ganzhi.commands import Group, connect
from registry import accounts
from registry.accounts import Role
from registry.changes import Actor

CLI = Actor("cli")
ADMIN_LOGIN = "admin"
ADMIN_SECRET_FILE = "admin-password"


@click.group(cls=Group)
def user() -> None:
    """Accounts: people and the bureaus' systems."""


@user.command(name="add")
@click.argument("login")
@click.option("--name", required=True, help="The person, or the system (e.g. 住建局燃气监管系统).")
@click.option("--department", help="Department code or name (none only for platform_admin / leading_group).")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice([r.value for r in Role]),
              help="Repeatable.")
@click.option("--service", is_flag=True, help="A system that uses API tokens only, without a password.")
@click.pass_obj
def add_user(settings: Settings, login: str, name: str, department: str | None, roles: tuple[str, ...],
             service: bool) -> None:
    """Add an account; a person's password is made and printed once."""
    password = None if service else accounts.new_password()
    with connect(settings) as conn:
        accounts.add_account(conn, login=login, name=name, department=department, roles=list(roles),
                             kind="service" if service else "person", password=password, actor=CLI)
    click.echo(f"added {login}" + (f"; password (shown once): {password}" if password else ""))


@user.command(name="list")
@click.option("--department", help="Only this department's accounts (code).")
@click.pass_obj
def list_users(settings: Settings, department: str | None) -> None:
    with connect(settings) as conn:
        for a in accounts.list_accounts(conn, department):
            state = "disabled" if a["disabled_at"] else "active"
            click.echo(f"{a['login']:24} {a['department'] or '-':8} {','.join(a['roles']):30} {a['kind']:8} "
                       f"{state:8} {a['name']}")


@user.command(name="disable")
@click.argument("login")
@click.pass_obj
def disable_user(settings: Settings, login: str) -> None:
    """Disable an account: its tokens and sessions stop working at once."""
    _set_disabled(settings, login, True)


@user.command(name="enable")
@click.argument("login")
@click.pass_obj
def enable_user(settings: Settings, login: str) -> None:
    """Enable a disabled account again."""
    _set_disabled(settings, login, False)


def _set_disabled(settings: Settings, login: str, disabled: bool) -> None:
    with connect(settings) as conn:
        accounts.set_disabled(conn, login, disabled, CLI)
    click.echo(f"{'disabled' if disabled else 'enabled'} {login}")


@user.command(name="password")
@click.argument("login")
@click.pass_obj
def reset_password(settings: Settings, login: str) -> None:
    """Give an account a new password, printed once."""
    password = accounts.new_password()
    with connect(settings) as conn:
        accounts.set_password(conn, login, password, CLI)
    click.echo(f"new password for {login} (shown once): {password}")


@click.group(cls=Group)
def token() -> None:
    """API tokens of accounts (`Authorization: Bearer …`)."""


@token.command(name="issue")
@click.argument("login")
@click.option("--name", required=True, help="What uses the token.")
@click.option("--days", type=click.IntRange(1, 3650), help="Expires after this many days; default: until revoked.")
@click.pass_obj
def issue_token(settings: Settings, login: str, name: str, days: int | None) -> None:
    """Issue a token; it is printed once and only its hash is kept."""
    with connect(settings) as conn:
        made, secret = accounts.issue_token(conn, login, name, days, CLI)
    click.echo(f"token {made['id']} for {login} (shown once): {secret}")


@token.command(name="revoke")
@click.argument("token_id", type=int)
@click.pass_obj
def revoke_token(settings: Settings, token_id: int) -> None:
    with connect(settings) as conn:
        accounts.revoke_token(conn, token_id, CLI)
    click.echo(f"revoked token {token_id}")


@token.command(name="list")
@click.argument("login", required=False)
@click.pass_obj
def list_tokens(settings: Settings, login: str | None) -> None:
    with connect(settings) as conn:
        for t in accounts.list_tokens(conn, login):
            state = "revoked" if t["revoked_at"] else "live"
            click.echo(f"{t['id']:6} {t['account']:24} {state:8} {t['name']}")


def ensure_first_admin(url: str, var_dir: Path) -> Path | None:
    """On a database without a platform admin, make ``admin`` with a random password written to a 0600 file
    under ``var_dir``; returns that file (None when an admin exists). There is never a default password."""
    with psycopg.connect(url) as conn:
        if accounts.count_platform_admins(conn):
            return None
        password = accounts.new_password()
        path = var_dir / ADMIN_SECRET_FILE
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        accounts.add_account(conn, login=ADMIN_LOGIN, name="Platform administrator", department=None,
                             roles=[Role.platform_admin.value], kind="person", password=password,
                             actor=Actor("ganzhi up"))
    return path
