"""The `ganzhi` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import psycopg

from core import db
from core.embedded import EmbeddedPostgres
from core.logs import setup_logging
from core.settings import Settings, get_settings
from registry import codes, demo, exporter, labels, queries, service
from registry.changes import Actor
from registry.errors import LedgerError
from registry.importer import run_import


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server that `ganzhi up` runs."""
    return settings.database_url or EmbeddedPostgres(settings.var_dir / "pgdata", settings.embedded_pg_port).url


def _connect(settings: Settings) -> psycopg.Connection:
    url = database_url(settings)
    try:
        return db.connect(url)
    except psycopg.OperationalError as exc:
        raise click.ClickException(
            f"cannot reach the database at {url}: {str(exc).strip()}\n"
            "Start the platform with `ganzhi up`, or set DATABASE_URL."
        ) from exc


class _Group(click.Group):
    """Ledger errors end the command with their message and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            raise click.ClickException(exc.message) from exc


@click.group(cls=_Group)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Ganzhi (感知): Suihua's unified city sensing platform."""
    settings = get_settings()
    setup_logging(settings.log_level)
    ctx.obj = settings


@main.command()
@click.option("--no-demo", is_flag=True, help="Do not load the demo ledger into an empty database.")
@click.pass_obj
def up(settings: Settings, no_demo: bool) -> None:
    """Run the whole platform: database, broker, API (embedded defaults unless DATABASE_URL/MQTT_URL are set)."""
    from ganzhi.up import run

    asyncio.run(run(settings, load_demo=settings.demo and not no_demo))


@main.command()
@click.pass_obj
def api(settings: Settings) -> None:
    """Serve only the HTTP API against DATABASE_URL (already migrated)."""
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(settings, database_url(settings)), host=settings.http_host, port=settings.http_port)


@main.group(name="db", cls=_Group)
def db_group() -> None:
    """Database schema."""


@db_group.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply pending migrations, seed reference data, make readings partitions (safe to repeat)."""
    from ganzhi.database import prepare

    applied = prepare(database_url(settings), settings)
    click.echo(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")


@main.group(cls=_Group)
def ledger() -> None:
    """The ledger: import, export, demo data."""


@ledger.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@click.option("--skip-invalid", is_flag=True, help="Apply the good rows even when some rows are bad.")
@click.option("--actor", default=None, help="Name recorded in the change log (default: cli).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def import_command(settings: Settings, file: Path, dry_run: bool, skip_invalid: bool, actor: str | None,
                   as_json: bool) -> None:
    """Import a census sheet (CSV or XLSX; UTF-8 or GBK; Chinese or English headers), upserting by city code."""
    data = file.read_bytes()
    with _connect(settings) as conn, click.progressbar(length=100, label=f"importing {file.name}",
                                                       file=sys.stderr) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            target = {"read": 50 * done // max(total, 1), "poles": 60, "terminals": 100}[stage]
            bar.update(max(0, target - bar.pos))

        report = run_import(conn, data, file.name, Actor(actor or "cli"), dry_run=dry_run,
                            skip_invalid=skip_invalid, progress=progress)
    if as_json:
        click.echo(json.dumps(report.__dict__, default=lambda o: o.__dict__, ensure_ascii=False, indent=1))
    else:
        _print_report(report)
    if report.errors and not report.applied:
        sys.exit(1)


def _print_report(report) -> None:
    for problem in report.errors[:200]:
        where = f"row {problem.row}" + (f", {problem.column}" if problem.column else "")
        click.echo(f"{where}: {problem.message}", err=True)
    if len(report.errors) > 200:
        click.echo(f"... and {len(report.errors) - 200} more problems (use --json for all)", err=True)
    verb = "would create" if not report.applied else "created"
    state = "applied" if report.applied else ("dry run, nothing written" if report.dry_run and not report.errors
                                               else "NOT applied: fix the rows above or use --skip-invalid")
    click.echo(f"{report.rows} rows ({report.encoding}): {report.poles} poles, {report.terminals} terminals; "
               f"{verb} {report.created}, updated {report.updated}, unchanged {report.unchanged}, "
               f"rejected rows {report.rejected}; {state}; batch {report.batch_id}")


@ledger.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "geojson"]), default="csv")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", help="Header language.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--division", default=None)
@click.option("--department", default=None)
@click.option("--kind", default=None)
@click.pass_obj
def export(settings: Settings, fmt: str, lang: str, out: Path, division: str | None, department: str | None,
           kind: str | None) -> None:
    """Export terminals as CSV, XLSX or GeoJSON (the CSV and XLSX import back)."""
    with _connect(settings) as conn:
        subtree = queries.division_subtree(conn, division) if division else None
        if division and not subtree:
            raise click.ClickException(f"division {division!r} is unknown")
        search = queries.Search(division=subtree, department=department, kind=kind)
        terminals = queries.search_terminals(conn, search, limit=10_000_000)
    if fmt == "geojson":
        out.write_text(json.dumps(exporter.to_geojson(terminals), ensure_ascii=False), encoding="utf-8")
    else:
        out.write_bytes(exporter.to_csv(terminals, lang) if fmt == "csv" else exporter.to_xlsx(terminals, lang))
    click.echo(f"wrote {len(terminals)} terminals to {out}")


@ledger.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="xlsx")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def template(fmt: str, out: Path) -> None:
    """Write the blank census template."""
    out.write_bytes(exporter.template_csv() if fmt == "csv" else exporter.template_xlsx())
    click.echo(f"wrote {out}")


@ledger.command(name="demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Load the Suihua demo ledger into an empty ledger."""
    with _connect(settings) as conn:
        poles, terminals = demo.load(conn, Actor("demo"))
    click.echo(f"loaded {poles} poles and {terminals} terminals")


@main.group(cls=_Group)
def code() -> None:
    """City codes (城市码)."""


@code.command()
@click.argument("values", nargs=-1, required=True)
def check(values: tuple[str, ...]) -> None:
    """Validate city codes; exit 1 if any is wrong."""
    bad = 0
    for value in values:
        try:
            parsed = codes.parse(value)
            click.echo(f"{parsed.display}  ok  division {parsed.division}, {parsed.kind}, serial {parsed.serial}")
        except LedgerError as exc:
            bad += 1
            click.echo(f"{value}  INVALID  {exc.message}", err=True)
    if bad:
        sys.exit(1)


@code.command()
@click.option("--division", required=True, help="County-level GB/T 2260 code, e.g. 231202.")
@click.option("--kind", required=True, help="Terminal kind key, or smart_pole.")
@click.option("--count", default=1, show_default=True, type=int)
@click.pass_obj
def issue(settings: Settings, division: str, kind: str, count: int) -> None:
    """Reserve new codes (e.g. to print labels ahead of installation)."""
    with _connect(settings) as conn:
        issued = service.issue_codes(conn, division, kind, count, Actor("cli"))
        conn.commit()
    click.echo("\n".join(issued))


@code.command()
@click.argument("value")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="file.png or file.svg")
@click.pass_obj
def qr(settings: Settings, value: str, out: Path) -> None:
    """Render a code's QR label as PNG or SVG."""
    parsed = codes.parse(value)
    content = labels.qr_content(parsed.value, settings.qr_base_url)
    out.write_bytes(labels.qr_svg(content) if out.suffix.lower() == ".svg" else labels.qr_png(content))
    click.echo(f"wrote {out} ({content})")


@main.group(cls=_Group)
def bench() -> None:
    """Benchmarks that print figures."""


@bench.command(name="ledger")
@click.option("--terminals", default=100_000, show_default=True)
@click.option("--searches", default=2_000, show_default=True)
@click.option("--runs", default=3, show_default=True, help="Import runs; the median is reported.")
@click.pass_obj
def bench_ledger(settings: Settings, terminals: int, searches: int, runs: int) -> None:
    """Import an N-terminal CSV into a scratch database, then time terminal searches over HTTP."""
    from ganzhi.bench_ledger import run as run_bench

    run_bench(database_url(settings), settings, terminals, searches, runs)
