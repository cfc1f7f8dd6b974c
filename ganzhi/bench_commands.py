"""`ganzhi bench …`: benchmarks that print figures (medians are for the reader to take over several runs)."""

from __future__ import annotations

import click

from core.settings import Settings
from ganzhi.commands import Group, database_url


@click.group(cls=Group)
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


@bench.command(name="hj212")
@click.option("--connections", default=1000, show_default=True, help="Concurrent logger connections.")
@click.option("--packets", default=20, show_default=True, help="Real-time packets per connection.")
@click.option("--gateways", default=1, show_default=True, help="Gateway processes sharing the port.")
@click.pass_obj
def bench_hj212(settings: Settings, connections: int, packets: int, gateways: int) -> None:
    """HJ 212 gateway: N loggers at once, each waiting for its answers; packets/s and send→answer latency."""
    from ganzhi.bench_hj212 import run as run_bench

    run_bench(database_url(settings), settings, connections, packets, gateways)


@bench.command(name="alerts")
@click.option("--rate", default=1750.0, show_default=True, help="Background messages/s (10 readings each).")
@click.option("--probes", default=40, show_default=True, help="Violating readings published, one at a time.")
@click.pass_obj
def bench_alerts(settings: Settings, rate: float, probes: int) -> None:
    """Publish → alert readable from the API under background load; and the rule engine's own rate."""
    from ganzhi.bench_alerts import run as run_bench

    run_bench(database_url(settings), settings, rate, probes)


@bench.command(name="ingest")
@click.option("--messages", default=600_000, show_default=True, help="Messages in all.")
@click.option("--readings", default=10, show_default=True, help="Readings per message (at most 10).")
@click.option("--gateways", default=4, show_default=True, help="Publishing pole gateways (one process each).")
@click.option("--per-gateway", default=250, show_default=True, help="Terminals on each gateway.")
@click.option("--workers", default=2, show_default=True, help="Ingest worker processes.")
@click.option("--rate", type=float, default=None, help="Pace the publishers to this many messages/s in all.")
@click.option("--protocol", type=click.Choice(["5", "3.1.1"]), default="5", show_default=True,
              help="MQTT version of the ingest workers.")
@click.pass_obj
def bench_ingest(settings: Settings, messages: int, readings: int, gateways: int, per_gateway: int,
                 workers: int, rate: float | None, protocol: str) -> None:
    """MQTT → broker → ingest workers → PostgreSQL, with the real broker logins, as fast as it goes."""
    from ganzhi.bench_ingest import run as run_bench

    run_bench(database_url(settings), settings, messages, readings, gateways, workers, per_gateway, rate, protocol)


@bench.command(name="fire")
@click.option("--seeds", default=10, show_default=True, help="Sequences per scene kind.")
@click.option("--frames", default=60, show_default=True, help="Frames timed per speed run.")
@click.option("--runs", default=3, show_default=True)
@click.option("--latency", "probes", default=0, show_default=True,
              help="Also time first fire frame → alert over MQTT for this many probe cameras.")
@click.option("--fps", default=2.0, show_default=True, help="Frame rate of the latency probes.")
@click.option("--first-seed", default=100, show_default=True,
              help="Scene seeds start here (the detector was tuned looking at 100–107 and 0–19; others are held out).")
@click.option("--towers", "tower_seeds", default=0, show_default=True,
              help="Also play this many held-out seeds of each harsher tower sequence (simulators/tower_scenes.py).")
@click.option("--tower-fps", default="2,5,10", show_default=True, help="Frame rates of the tower sequences.")
@click.option("--tuning", is_flag=True, help="Play the tower sequences' tuning seeds instead of the held-out ones.")
@click.pass_obj
def bench_fire(settings: Settings, seeds: int, frames: int, runs: int, probes: int, fps: float,
               first_seed: int, tower_seeds: int, tower_fps: str, tuning: bool) -> None:
    """Fire detection: precision/recall/F1 on labelled synthetic sequences, per-frame speed, alert latency."""
    from ganzhi.bench_fire import quality, speed

    speed(frames, runs)
    if probes:
        from ganzhi.bench_fire_latency import run as latency

        latency(database_url(settings), settings, probes, fps)
    if seeds:
        quality(seeds, alert_level=False, first_seed=first_seed)
        quality(seeds, alert_level=True, first_seed=first_seed)
    if tower_seeds:
        from ganzhi.bench_fire_towers import run as towers

        towers(tower_seeds, tuple(float(r) for r in tower_fps.split(",")), tuning)
