"""What every `ganzhi` command shares: the database URL, connecting, and clean error exits."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg

from core import db
from core.embedded import EmbeddedPostgres, EmbeddedPostgresError
from core.migrate import MigrationError
from core.settings import Settings
from registry.errors import LedgerError


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server that `ganzhi up` runs."""
    return settings.database_url or EmbeddedPostgres(settings.var_dir / "pgdata", settings.embedded_pg_port).url


def owner_database_url(settings: Settings) -> str:
    """GANZHI_DATABASE_OWNER_URL (migrations, partitions), else DATABASE_URL's role does that too."""
    return settings.database_owner_url or database_url(settings)


def connect(settings: Settings) -> psycopg.Connection:
    url = database_url(settings)
    try:
        return db.connect(url)
    except psycopg.OperationalError as exc:
        raise click.ClickException(
            f"cannot reach the database at {_without_password(url)}: {str(exc).strip()}\n"
            "Start the platform with `ganzhi up`, or set DATABASE_URL."
        ) from exc


def _without_password(url: str) -> str:
    """The URL as it may be shown: the embedded server's carries its password."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


class Group(click.Group):
    """Ledger, migration and embedded-server errors end the command with their message (exit 1), not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            raise click.ClickException(exc.message) from exc
        except (MigrationError, EmbeddedPostgresError) as exc:
            raise click.ClickException(str(exc)) from exc


class LazyGroup(Group):
    """A group whose subcommands named in ``lazy`` (name → ``module:attribute``) are imported only when run or
    listed: a worker that `up` starts (`ganzhi ingest`) does not import every other command's modules, CPU that ten
    workers starting at once after a restart of `up` used to spend before the first reading was stored."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name].split(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, cmd_name)
