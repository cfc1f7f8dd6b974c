"""`ganzhi department`: the departments sharing the platform, from the command line (audited as `cli`)."""

from __future__ import annotations

import click

from core.settings import Settings
from ganzhi.account_commands import CLI
from ganzhi.commands import Group, connect
from registry import departments, queries
from registry.models import DepartmentChange, DepartmentIn


@click.group(cls=Group)
def department() -> None:
    """Departments: add, rename, disable, enable, list."""


@department.command(name="list")
@click.pass_obj
def list_departments(settings: Settings) -> None:
    with connect(settings) as conn:
        for d in queries.list_departments(conn):
            click.echo(f"{d.code:8} {d.bureau:12} {d.name} ({', '.join(d.aliases)})")


@department.command(name="add")
@click.argument("code")
@click.option("--name", required=True, help="Full name, e.g. 绥化市城市管理综合执法局.")
@click.option("--name-en", required=True)
@click.option("--alias", "aliases", multiple=True, help="A short name it is also looked up by. Repeatable.")
@click.option("--bureau", type=click.Choice(["environment", "housing", "water", "other"]), default="other")
@click.pass_obj
def add_department(settings: Settings, code: str, name: str, name_en: str, aliases: tuple[str, ...],
                   bureau: str) -> None:
    item = DepartmentIn(code=code, name=name, name_en=name_en, aliases=list(aliases), bureau=bureau)
    with connect(settings) as conn:
        departments.add_department(conn, item, CLI)
    click.echo(f"added {code}")


@department.command(name="rename")
@click.argument("code")
@click.option("--name", help="The new full name.")
@click.option("--name-en")
@click.option("--alias", "aliases", multiple=True, help="The short names (replacing the old ones). Repeatable.")
@click.pass_obj
def rename_department(settings: Settings, code: str, name: str | None, name_en: str | None,
                      aliases: tuple[str, ...]) -> None:
    given = {"name": name, "name_en": name_en, "aliases": list(aliases) or None}
    with connect(settings) as conn:
        departments.change_department(conn, code, DepartmentChange(**{k: v for k, v in given.items() if v}), CLI)
    click.echo(f"renamed {code}")


@department.command(name="disable")
@click.argument("code")
@click.pass_obj
def disable_department(settings: Settings, code: str) -> None:
    """It takes nothing new, and its accounts stop working at once."""
    with connect(settings) as conn:
        departments.change_department(conn, code, DepartmentChange(disabled=True), CLI)
    click.echo(f"disabled {code}")


@department.command(name="enable")
@click.argument("code")
@click.pass_obj
def enable_department(settings: Settings, code: str) -> None:
    with connect(settings) as conn:
        departments.change_department(conn, code, DepartmentChange(disabled=False), CLI)
    click.echo(f"enabled {code}")
