"""The `ganzhi` command."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from core.logs import setup_logging
from core.settings import Settings, UnsafeSettings, get_settings
from ganzhi.commands import Group, LazyGroup, connect, database_url, owner_database_url
from registry import codes
from registry.changes import Actor
from registry.errors import LedgerError
from simulators.faults import Fault

LAZY_COMMANDS = {
    "bench": "ganzhi.bench_commands:bench",
    "department": "ganzhi.department_commands:department",
    "fire": "ganzhi.fire_commands:fire",
    "firms": "ganzhi.fire_commands:firms",
    "heat-source": "ganzhi.fire_commands:heat_source",
    "token": "ganzhi.account_commands:token",
    "train-fire-verifier": "ganzhi.fire_commands:train_fire_verifier",
    "user": "ganzhi.account_commands:user",
}
"""The commands of other modules, imported when run (the workers `up` starts import only their own modules; the
ledger's commands here import theirs inside, for the same reason)."""


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Ganzhi (感知): Suihua's unified city sensing platform."""
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.command()
@click.option("--no-demo", is_flag=True, help="Do not load the demo ledger into an empty database, do not simulate.")
@click.option("--no-simulate", is_flag=True, help="Load the demo ledger but run no device simulators.")
@click.pass_obj
def up(settings: Settings, no_demo: bool, no_simulate: bool) -> None:
    """Run the whole platform: database, broker, ingest, API (embedded unless DATABASE_URL/MQTT_URL are set)."""
    from ganzhi.up import run

    demo_on = settings.demo and not no_demo
    asyncio.run(run(settings, load_demo=demo_on, simulate=demo_on and not no_simulate))


@main.command()
@click.pass_obj
def api(settings: Settings) -> None:
    """Serve only the HTTP API against DATABASE_URL (already migrated)."""
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(settings, database_url(settings)), host=settings.http_host, port=settings.http_port,
                forwarded_allow_ips=settings.forwarded_allow_ips,
                **({"log_config": None} if settings.log_format == "json" else {}))  # json: the root handler's lines


@main.group(name="db", cls=Group)
def db_group() -> None:
    """Database schema."""


@db_group.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply pending migrations, seed reference data, make readings partitions (safe to repeat)."""
    from ganzhi.database import prepare

    applied = prepare(owner_database_url(settings), settings, database_url(settings))
    click.echo(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
    if settings.database_url and not settings.database_owner_url:
        click.echo("note: GANZHI_DATABASE_OWNER_URL is unset, so the services run as the tables' owner and the audit "
                   "log is append-only by its trigger alone; a deployment gives two roles (docs/deploy.md, Database "
                   "roles)", err=True)


@main.group(cls=Group)
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
    from registry.importer import run_import

    data = file.read_bytes()
    with connect(settings) as conn, click.progressbar(length=100, label=f"importing {file.name}",
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
    from registry import exporter, queries

    with connect(settings) as conn:
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
    from registry import exporter

    out.write_bytes(exporter.template_csv() if fmt == "csv" else exporter.template_xlsx())
    click.echo(f"wrote {out}")


@ledger.command(name="demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Load the Suihua demo ledger into an empty ledger (a deployment, DATABASE_URL set, needs its own key)."""
    from registry import demo

    try:
        settings.require_own_secrets(demo=True)
    except UnsafeSettings as exc:
        raise click.ClickException(str(exc)) from exc
    with connect(settings) as conn:
        poles, terminals = demo.load(conn, Actor("demo"), settings.demo_secret.get_secret_value())
    click.echo(f"loaded {poles} poles and {terminals} terminals")


@main.group(cls=Group)
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
    from registry import service

    with connect(settings) as conn:
        issued = service.issue_codes(conn, division, kind, count, Actor("cli"))
        conn.commit()
    click.echo("\n".join(issued))


@code.command()
@click.argument("value")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="file.png or file.svg")
@click.pass_obj
def qr(settings: Settings, value: str, out: Path) -> None:
    """Render a code's QR label as PNG or SVG."""
    from registry import labels

    parsed = codes.parse(value)
    content = labels.qr_content(parsed.value, settings.qr_base_url)
    out.write_bytes(labels.qr_svg(content) if out.suffix.lower() == ".svg" else labels.qr_png(content))
    click.echo(f"wrote {out} ({content})")


@main.command()
@click.option("--client-id", default="ganzhi-ingest-1", show_default=True,
              help="MQTT client id; keep it stable so the broker keeps this worker's session.")
@click.option("--protocol", type=click.Choice(["5", "3.1.1"]), default=None,
              help="MQTT version (default: GANZHI_INGEST_PROTOCOL, 5).")
@click.option("--no-shared", is_flag=True, help="Subscribe without $share (a broker without shared subscriptions).")
@click.option("--drain", is_flag=True,
              help="Store what the broker holds for this client id, then end its session and exit: run this for a "
                   "worker id you stop using, or the broker keeps giving it a share of the shared subscription.")
@click.pass_obj
def ingest(settings: Settings, client_id: str, protocol: str | None, no_shared: bool, drain: bool) -> None:
    """Run one ingest worker: MQTT telemetry and status into the store (Ctrl-C or SIGTERM stops it)."""
    from core.runtime import run_service
    from ingest.worker import IngestWorker, WorkerConfig

    host, port = settings.mqtt_host_port
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    config = WorkerConfig(
        database_url=database_url(settings), mqtt_host=host, mqtt_port=port, client_id=client_id,
        username=settings.mqtt_username if password else None, password=password,
        mqtt5=(protocol or settings.ingest_protocol) == "5", shared=not no_shared,
        retention_days=settings.retention_days, drain=drain,
        batch_max=settings.ingest_batch_max,
    )
    sys.exit(run_service("ingest", f"ingest {client_id}", config.database_url,
                         lambda service: IngestWorker(config, service).run(), settings))


@main.command()
@click.option("--name", default=None, help="This worker's name, unique among the rule workers "
              "(default rules-HOST-PID). Workers share the terminals; start more at any time.")
@click.option("--profile", default=None, type=click.Path(dir_okay=False),
              help="Write a profile of the worker's CPU time (cProfile, thread CPU) to this file when it stops.")
@click.pass_obj
def analytics(settings: Settings, name: str | None, profile: str | None) -> None:
    """Run one rule worker: judge readings as the ingest commits them and keep the alerts (Ctrl-C stops it)."""
    import os
    import socket

    from alerts import service as alert_service
    from analytics.worker import RuleWorker
    from core.runtime import run_service

    name = name or f"rules-{socket.gethostname()}-{os.getpid()}"
    url = database_url(settings)
    work = RuleWorker(url, alert_service, name).run
    sys.exit(run_service("rules", name, url, _profiled(work, profile) if profile else work, settings))


def _profiled(work: Callable[[Any], None], path: str) -> Callable[[Any], None]:
    """``work`` run under cProfile timed by its thread's CPU clock (waits on the database cost nothing), the stats
    written to ``path`` when it returns (read them with ``python -m pstats``)."""
    import cProfile
    import time

    def profiled(arg: Any) -> None:
        profiler = cProfile.Profile(time.thread_time)
        try:
            profiler.runcall(work, arg)
        finally:
            profiler.dump_stats(path)

    return profiled


@main.command()
@click.pass_obj
def deliver(settings: Settings) -> None:
    """Run the delivery worker: the alert feed to the departments' webhooks and SMS (one per platform)."""
    from alerts.delivery import deliver as run_delivery
    from core.runtime import run_service_async

    url = database_url(settings)
    sys.exit(run_service_async("deliver", "deliver", url, lambda service: run_delivery(service, settings, url),
                               settings))
@main.command("dispatch-sweep")
@click.option("--every", default=60.0, show_default=True, help="Seconds between sweeps.")
@click.pass_obj
def dispatch_sweep(settings: Settings, every: float) -> None:
    """Escalate overdue dispatch tasks (township → county → city) by the escalation rules (Ctrl-C stops it)."""
    from alerts import dispatch_sweeper
    from core.runtime import run_service

    sys.exit(run_service("dispatch", "dispatch sweep", database_url(settings),
                         lambda service: dispatch_sweeper.run(service, every), settings))


@main.group(cls=Group)
def rules() -> None:
    """The rules the terminals are held to."""


@rules.command()
@click.option("--terminal", "code", required=True, help="City code of the terminal.")
@click.option("--from", "start", type=click.DateTime(), required=True, help="Start (Beijing time).")
@click.option("--to", "end", type=click.DateTime(), default=None, help="End (Beijing time); default now.")
@click.option("--rule", "prefix", default="", help="Only rules whose key starts with this (e.g. gb3838).")
@click.pass_obj
def backtest(settings: Settings, code: str, start, end, prefix: str) -> None:
    """List the alerts the rules would have raised over stored history; nothing is written."""
    import datetime as dt

    from analytics import queries as analytics_queries
    from analytics.evaluate import backtest as run_backtest

    beijing = dt.timezone(dt.timedelta(hours=8))
    with connect(settings) as conn:
        info = analytics_queries.terminal_by_code(conn, codes.parse(code).value)
        if info is None:
            raise click.ClickException(f"terminal {code} is not in the ledger")
        until = end.replace(tzinfo=beijing) if end else dt.datetime.now(beijing)
        found = run_backtest(conn, info, start.replace(tzinfo=beijing), until, prefix)
    for rule, episode in found:
        end_text = episode.end.astimezone(beijing).isoformat() if episode.end else "still on"
        click.echo(f"{rule.key:28s} {episode.severity:8s} {episode.start.astimezone(beijing).isoformat()} → "
                   f"{end_text}: {episode.detail}")
    click.echo(f"{len(found)} alert(s) would have been raised")


@main.command(name="hj212")
@click.option("--instance", default=1, show_default=True,
              help="Which of the gateway processes sharing the port this is (names its heartbeat).")
@click.pass_obj
def hj212_gateway(settings: Settings, instance: int) -> None:
    """Run the HJ 212-2017 TCP gateway for environmental data loggers (Ctrl-C or SIGTERM stops it)."""
    from core.runtime import run_service_async
    from ingest.hj212_gateway import GatewayConfig, Hj212Gateway

    config = GatewayConfig(database_url(settings), settings.hj212_host, settings.hj212_port, settings.retention_days)
    sys.exit(run_service_async("hj212", f"hj212 {settings.hj212_port}-{instance}", config.database_url,
                               lambda service: Hj212Gateway(config, service).serve(), settings))


@main.command()
@click.option("--speed", default=1.0, show_default=True, help="Time compression: intervals are divided by this.")
@click.option("--limit", type=int, default=None, help="Simulate only the first N publishers.")
@click.option("--ramp", default=20.0, show_default=True, help="Seconds over which the devices connect.")
@click.option("--fault", "faults", multiple=True, type=click.Choice([f.value for f in Fault]),
              help="Give some devices this fault (repeatable).")
@click.option("--fault-share", default=0.05, show_default=True, help="Share of publishers given a fault.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--mqtt311", is_flag=True, help="Publish as MQTT 3.1.1 devices (a broker without MQTT 5).")
@click.option("--hj212-bad-crc", default=0.0, show_default=True, help="Share of HJ 212 packets sent with a bad CRC.")
@click.option("--towers", default=0, show_default=True,
              help="Camera towers streaming frames (fires, sunsets, lorries, dust) for the fire worker.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record every injected fault and event here (JSON lines), the ground truth for scoring alerts.")
@click.option("--acked", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Record every telemetry message the broker acknowledged here at the end (JSON lines).")
@click.option("--seed", default=1, show_default=True,
              help="Which devices get the faults, and when (another seed picks others).")
@click.pass_obj
def simulate(settings: Settings, speed: float, limit: int | None, ramp: float, faults: tuple[str, ...],
             fault_share: float, duration: float | None, mqtt311: bool, hj212_bad_crc: float, towers: int,
             truth: Path | None, acked: Path | None, seed: int) -> None:
    """Publish telemetry for the demo ledger through the broker, each device with its own credentials, and
    run its HJ 212 loggers against the gateway."""
    from simulators.faults import pick_faults
    from simulators.fleet import load_fleet
    from simulators.loggers import load_loggers, run_loggers
    from simulators.run import SimConfig
    from simulators.run import simulate as run_fleet
    from simulators.towers import load_towers, run_towers

    with connect(settings) as conn:
        fleet = load_fleet(conn, limit)
        cameras = load_towers(conn, towers) if towers and not mqtt311 else []
        loggers = load_loggers(conn, settings.demo_secret.get_secret_value())[:limit]
    host, port = settings.mqtt_host_port
    config = SimConfig(host=host, port=port, secret_key=settings.demo_secret.get_secret_value(), speed=speed,
                       ramp_s=ramp, mqtt5=not mqtt311, truth=truth, acked=acked, seed=seed,
                       faults=pick_faults([p.code for p in fleet], [Fault(f) for f in faults], fault_share,
                                          seed=seed + 6))

    async def main_loop() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration:
            loop.call_later(duration, stop.set)
        gateway_host = "127.0.0.1" if settings.hj212_host == "0.0.0.0" else settings.hj212_host
        logger_faults = pick_faults([lg.code for lg in loggers], [Fault(f) for f in faults], fault_share, seed=seed + 7)
        stats, logged, frames = await asyncio.gather(
            run_fleet(fleet, config, stop),
            run_loggers(loggers, gateway_host, settings.hj212_port, stop, speed=speed, bad_crc_share=hj212_bad_crc,
                        faults=logger_faults, seed=seed, truth_path=truth),
            run_towers(cameras, host, port, config.secret_key, stop),
        )
        click.echo(f"published {stats.messages} messages, {stats.readings} readings "
                   f"({stats.malformed} malformed on purpose), {stats.failures} connection failures; "
                   f"{len(loggers)} HJ 212 loggers sent {logged.packets} packets, {logged.refused} refused; "
                   f"{len(cameras)} tower cameras sent {frames} frames")

    asyncio.run(main_loop())


@main.group(cls=Group)
def broker() -> None:
    """The broker's view of the ledger."""


@broker.command(name="config")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--mosquitto-conf", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write mosquitto.conf here: the project's configuration for a broker of its own.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("/mosquitto/data"),
              show_default=True, help="The broker's persistence directory, as the broker sees it.")
@click.option("--plugin", default="/usr/lib/mosquitto_dynamic_security.so", show_default=True,
              help="The dynamic-security plugin, as the broker sees it (this is the eclipse-mosquitto image's).")
@click.option("--tls-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A directory (as the broker sees it) with server.crt and server.key: adds a TLS listener on 8883.")
@click.pass_obj
def broker_config(settings: Settings, out_dir: Path, mosquitto_conf: Path | None, data_dir: Path, plugin: str,
                  tls_dir: Path | None) -> None:
    """Write mosquitto's passwd and dynamic-security.json from the ledger, for a broker about to start (with
    GANZHI_BROKER_SYNC_PASSWORD set, they admit `ganzhi broker sync` too)."""
    from core.broker import write_broker_config
    from ganzhi.broker_auth import platform_accounts, write_files

    if settings.mqtt_password is None:
        raise click.ClickException("set GANZHI_MQTT_PASSWORD: the platform's broker password")
    sync = settings.broker_sync_password.get_secret_value() if settings.broker_sync_password else None
    with connect(settings) as conn:
        auth = write_files(conn, out_dir, platform_accounts(settings.mqtt_username,
                                                            settings.mqtt_password.get_secret_value(), sync))
    click.echo(f"wrote {out_dir}/passwd ({len(auth.logins)} devices) and {out_dir}/dynamic-security.json")
    if mosquitto_conf is not None:
        mosquitto_conf.write_text(write_broker_config(data_dir, out_dir, plugin, tls_dir))
        click.echo(f"wrote {mosquitto_conf}")


@broker.command(name="sync")
@click.option("--auth-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The directory `broker config` wrote (shared with the broker).")
@click.option("--process-name", default="mosquitto", show_default=True, help="The broker process to SIGHUP.")
@click.pass_obj
def broker_sync(settings: Settings, auth_dir: Path, process_name: str) -> None:
    """Keep a broker of its own in step with the ledger (Ctrl-C stops it); `ganzhi up` does this itself."""
    from core.broker import SharedBroker
    from core.runtime import run_service_async
    from ganzhi.broker_auth import BrokerAuth, keep_in_step, platform_accounts

    if settings.mqtt_password is None or settings.broker_sync_password is None or settings.mqtt_url is None:
        raise click.ClickException("set MQTT_URL, GANZHI_MQTT_PASSWORD and GANZHI_BROKER_SYNC_PASSWORD")
    host, port = settings.mqtt_host_port
    accounts = platform_accounts(settings.mqtt_username, settings.mqtt_password.get_secret_value(),
                                 settings.broker_sync_password.get_secret_value())
    url = database_url(settings)

    async def main_loop(service) -> None:
        syncing = asyncio.create_task(keep_in_step(url, BrokerAuth(auth_dir, accounts),
                                                   SharedBroker(port, process_name), host, adopting=True,
                                                   service=service))
        syncing.add_done_callback(service.watch("broker sync"))
        await service.until_stopped()
        syncing.cancel()
        await asyncio.gather(syncing, return_exceptions=True)

    sys.exit(run_service_async("broker-sync", "broker sync", url, main_loop))


@main.group(cls=Group)
def credential() -> None:
    """Device secrets for the broker."""


@credential.command(name="issue")
@click.argument("code")
@click.pass_obj
def credential_issue(settings: Settings, code: str) -> None:
    """Issue a new broker secret for a pole or terminal; printed once, stored hashed."""
    from registry import credentials

    with connect(settings) as conn:
        secret = credentials.issue(conn, code, Actor("cli"))
        conn.commit()
    click.echo(secret)


@main.command()
@click.option("--every", default=60.0, show_default=True, help="Seconds between rollup runs.")
@click.pass_obj
def maintain(settings: Settings, every: float) -> None:
    """Keep the readings store, as the tables' owner: rollups every run, partitions and dead letters hourly."""
    from core.runtime import run_service
    from ganzhi.maintenance import run as run_maintenance

    sys.exit(run_service("maintenance", "maintenance", owner_database_url(settings),
                         lambda service: run_maintenance(service, settings, every)))


@main.command()
@click.argument("name")
@click.option("--max-age", default=30.0, show_default=True, help="Seconds a heartbeat may be old.")
@click.pass_obj
def health(settings: Settings, name: str, max_age: float) -> None:
    """Exit 0 when the service NAME (its heartbeat name) runs on this host and beat within --max-age seconds:
    a container health check."""
    import socket

    with connect(settings) as conn:
        row = conn.execute("select state, host, extract(epoch from now() - beat_at) from service_heartbeat "
                           "where name = %s", (name,)).fetchone()
    if row is None:
        raise click.ClickException(f"no heartbeat named {name!r}")
    state, host, age = row
    if state != "running" or host != socket.gethostname() or age > max_age:
        raise click.ClickException(f"{name}: {state} on {host}, last beat {age:.0f} s ago")
    click.echo(f"{name}: running, last beat {age:.1f} s ago")
