"""`ganzhi bench …`: benchmarks that print figures (medians are for the reader to take over several runs)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from core.settings import Settings
from ganzhi.commands import Group, database_url
from ganzhi.fire_commands import YOLO_FIRE_CLASSES, photo_folders


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
@click.option("--rate", "rates", multiple=True, type=float, default=(5580.0, 11170.0), show_default=True,
              help="Background messages/s (10 readings each), one run each: half the ingest maximum, and the maximum.")
@click.option("--find-max", "saturate", default=None, type=float,
              help="Find the platform's maximum with the rule workers first: the highest rate it sustains over "
              "--window seconds (stored ≈ offered, backlog not growing), bisecting windows without probes from this "
              "rate, which must be more than it sustains; then probe at half of it and at it (instead of --rate).")
@click.option("--window", "window_s", default=90.0, show_default=True,
              help="Seconds of each --find-max window (a sustained rate, not a burst).")
@click.option("--steps", default=5, show_default=True, help="--find-max windows at most.")
@click.option("--probes", default=40, show_default=True, help="Violating readings published, one at a time.")
@click.option("--warm-up", "warm_up_s", default=20.0, show_default=True,
              help="Seconds of background load between the warm-up probe and the timed probes.")
@click.option("--profile", "profile", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Profile the rule workers' CPU time (cProfile), each one's stats written to "
              "DIR/bench-rules-N.prof when the bench stops them.")
@click.pass_obj
def bench_alerts(settings: Settings, rates: tuple[float, ...], saturate: float | None, window_s: float, steps: int,
                 probes: int, warm_up_s: float, profile: Path | None) -> None:
    """Publish → alert readable from the API under background load (p50, p99, missed probes per rate), the rate
    the platform sustained in each run; and the rule engine's own rate."""
    from ganzhi.bench_alerts import find_max
    from ganzhi.bench_alerts import run as run_bench

    if saturate is not None:
        maximum = find_max(database_url(settings), settings, saturate, window_s, steps, warm_up_s)
        if maximum is None:
            print("no maximum found: offer more (--find-max) if it kept up with the first rate, else more --steps")
            raise SystemExit(1)
        print(f"probing at {maximum / 2:,.0f} (half the maximum) and {maximum:,.0f} msg/s (the maximum)")
        rates = (maximum / 2, maximum)
    for rate in rates:
        run_bench(database_url(settings), settings, rate, probes, warm_up_s, profile)


@bench.command(name="delivery")
@click.option("--endpoints", default=4, show_default=True, help="Local webhook receivers subscribed.")
@click.option("--backlog", default=1000, show_default=True, help="Alert changes drained at once (deliveries/s).")
@click.option("--probes", default=200, show_default=True, help="Alert changes timed one by one (latency).")
@click.option("--rate", default=20.0, show_default=True, help="Alert changes/s while timing latency.")
@click.pass_obj
def bench_delivery(settings: Settings, endpoints: int, backlog: int, probes: int, rate: float) -> None:
    """Webhook delivery: deliveries/s draining a backlog, and feed → receiver latency p50/p99."""
    from ganzhi.bench_delivery import run as run_bench

    run_bench(database_url(settings), settings, endpoints, backlog, probes, rate)


@bench.command(name="alert-quality")
@click.option("--hours", default=24.0, show_default=True, help="Simulated hours per run.")
@click.option("--runs", default=5, show_default=True, help="Runs, one simulator seed each; medians are reported.")
@click.option("--first-seed", default=101, show_default=True,
              help="Seeds start here (rules and simulators were tuned looking at seeds 1–3; 101 on are held out).")
@click.option("--per-kind", default=40, show_default=True, help="Terminals of each kind simulated.")
@click.option("--share", default=0.3, show_default=True, help="Share of terminals given a fault or an event.")
@click.option("--live", is_flag=True,
              help="End to end: the platform on a scratch database (broker, ingest, HJ 212 gateway, rule worker), "
              "the simulated devices publishing through the broker and loggers through the gateway; the alerts the "
              "workers STORED are scored. One run per seed.")
@click.option("--speed", default=60.0, show_default=True, help="With --live: the simulators' time compression.")
@click.option("--publishers", default=40, show_default=True, help="With --live: publishers (poles, lone terminals).")
@click.option("--loggers", default=8, show_default=True, type=click.IntRange(min=0),
              help="With --live: HJ 212 loggers of each kind (river stations, sewage outlets), through the gateway.")
@click.option("--truth", "truth_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Run nothing: score the alerts stored in the database (DATABASE_URL, or `ganzhi up`'s) against this "
              "ground truth file (`ganzhi up` writes var/truth.jsonl; `ganzhi simulate --truth FILE`).")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), default=None,
              help="With --truth: alerts observed from then (default: the truth's first window; naive times are UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), default=None,
              help="With --truth: alerts observed before then, and what had happened by then (default: now).")
@click.pass_obj
def bench_alert_quality(settings: Settings, hours: float, runs: int, first_seed: int, per_kind: int,
                        share: float, live: bool, speed: float, publishers: int, loggers: int, truth_file: Path | None,
                        since, until) -> None:
    """Alerts scored against the simulators' ground truth: precision, recall and time to alert per family (in
    process; --live end to end; --truth the alerts a database stored)."""
    if truth_file is not None:
        import datetime as dt

        from ganzhi.bench_alert_quality_live import score_file

        def utc(at):
            return None if at is None else at if at.tzinfo else at.replace(tzinfo=dt.UTC)

        score_file(database_url(settings), truth_file, utc(since), utc(until))
        return
    if live:
        from ganzhi.bench_alert_quality_live import run_live

        for seed in range(first_seed, first_seed + runs):
            run_live(database_url(settings), settings, hours, speed, seed, publishers, share, loggers)
        return
    from ganzhi.bench_alert_quality import run as run_bench

    run_bench(database_url(settings), settings, hours, list(range(first_seed, first_seed + runs)), per_kind, share)


@bench.command(name="ingest")
@click.option("--messages", default=600_000, show_default=True, help="Messages in all.")
@click.option("--readings", default=10, show_default=True, help="Readings per message (at most 10).")
@click.option("--gateways", default=4, show_default=True, help="Publishing pole gateways (one process each).")
@click.option("--per-gateway", default=250, show_default=True, help="Terminals on each gateway.")
@click.option("--workers", default=2, show_default=True, help="Ingest worker processes.")
@click.option("--rate", type=float, default=None, help="Pace the publishers to this many messages/s in all.")
@click.option("--protocol", type=click.Choice(["5", "3.1.1"]), default="5", show_default=True,
              help="MQTT version of the ingest workers.")
@click.option("--ceiling/--no-ceiling", default=True, show_default=True,
              help="First measure the raw broker→paho subscriber rate with as many messages.")
@click.pass_obj
def bench_ingest(settings: Settings, messages: int, readings: int, gateways: int, per_gateway: int,
                 workers: int, rate: float | None, protocol: str, ceiling: bool) -> None:
    """MQTT → broker → ingest workers → PostgreSQL, with the real broker logins, as fast as it goes."""
    from ganzhi.bench_ingest import run as run_bench

    run_bench(database_url(settings), settings, messages, readings, gateways, workers, per_gateway, rate, protocol,
              ceiling)


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
@click.option("--tower-fps", default="2,5,10,2+burst", show_default=True,
              help="Frame rates of the tower sequences (N+burst: N fps plus a 2 s burst at 10 fps every 10 s).")
@click.option("--tuning", is_flag=True, help="Also play the tower sequences' tuning seeds, reported apart.")
@click.option("--verifier", "verified", is_flag=True,
              help="Also time the detector with the learned verifier, and score quality and towers with it "
                   "(as FirePipeline.detect does).")
@click.option("--tower-pairs", default="2", show_default=True,
              help="At these of the tower frame rates, also see each scene from a second tower and score the fused "
                   "fire events (paged, listed, false pages); '' for none.")
@click.option("--tower-first-seed", default=1000, show_default=True,
              help="First held-out tower seed (1000 up were held out while tuning; try a fresh range, e.g. 2000).")
@click.pass_obj
def bench_fire(settings: Settings, seeds: int, frames: int, runs: int, probes: int, fps: float,
               first_seed: int, tower_seeds: int, tower_fps: str, tuning: bool, verified: bool,
               tower_first_seed: int, tower_pairs: str) -> None:
    """Fire detection: precision/recall/F1 on labelled synthetic sequences, per-frame speed, alert latency."""
    from ganzhi.bench_fire import quality, speed

    speed(frames, runs, verified)
    if probes:
        from ganzhi.bench_fire_latency import run as latency

        latency(database_url(settings), settings, probes, fps)
    if seeds:
        quality(seeds, alert_level=False, first_seed=first_seed, verified=verified)
        quality(seeds, alert_level=True, first_seed=first_seed, verified=verified)
    if tower_seeds:
        from ganzhi.bench_fire_towers import run as towers

        towers(tower_seeds, tuple(r.strip() for r in tower_fps.split(",")), tuning, verified=verified,
               held_out_from=tower_first_seed, pairs=tuple(r.strip() for r in tower_pairs.split(",") if r))


@bench.command(name="chaos")
@click.option("--speed", default=10.0, show_default=True,
              help="Simulator time compression (10: the demo fleet as `up` runs it); the msg/s it gives is printed.")
@click.option("--window", "window_s", default=60.0, show_default=True, help="Seconds of simulated traffic per fault.")
@click.option("--fault", "faults", multiple=True, metavar="NAME",
              help="Only these faults (repeatable): ingest worker, rule worker, HJ 212 gateway, fire worker, "
                   "dispatch sweep, delivery worker, maintenance, API (ganzhi up), PostgreSQL, broker. "
                   "Default: all, in that order.")
@click.pass_obj
def bench_chaos(settings: Settings, speed: float, window_s: float, faults: tuple[str, ...]) -> None:
    """Kill -9 each service in turn (and `up`, which serves the API), restart PostgreSQL and the broker, under
    simulated traffic on a platform of its own; per fault: load, published vs stored, redelivered, events vs
    alerted, alerts opened twice, recovery time. Exit 1 when a reading was lost, an alert opened twice for one
    event, or a component took more than 10 s to come back."""
    from ganzhi.chaos import FAULTS, GOAL_RECOVERY_S, run

    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise click.BadParameter(f"unknown fault {unknown[0]!r}; known: {', '.join(FAULTS)}", param_hint="--fault")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    results = run(settings, speed, window_s, faults or FAULTS)
    failed = [f.fault for f in results if f.lost or f.twice or (f.fault != "none" and not f.recovered)]
    if failed:
        raise click.ClickException(f"missed the goal (0 lost, 0 twice, back within {GOAL_RECOVERY_S:.0f} s): "
                                   f"{', '.join(failed)}")


@bench.command(name="dashboard")
@click.option("--loads", default=5, show_default=True, help="Page loads timed after logging in.")
@click.pass_obj
def bench_dashboard(settings: Settings, loads: int) -> None:
    """Dashboard page load on the demo ledger (4,100 terminals) in Debian's headless chromium (needs the dev
    extras: playwright)."""
    from ganzhi.bench_dashboard import run as run_bench

    run_bench(database_url(settings), settings, loads)


@bench.command(name="rollups")
@click.option("--sizes", default="1000000,10000000", show_default=True,
              help="Store sizes in readings, comma-separated (each in its own scratch database).")
@click.option("--runs", default=5, show_default=True, help="Timed runs of each query; the median is reported.")
@click.pass_obj
def bench_rollups(settings: Settings, sizes: str, runs: int) -> None:
    """One terminal's one-year daily chart from raw readings vs the rollups, at several store sizes,
    extrapolated to 10^9 readings (the method is printed)."""
    from ganzhi.bench_rollups import run as run_bench

    run_bench(database_url(settings), settings, [int(float(s)) for s in sizes.split(",")], runs)


@bench.command(name="receive")
@click.option("--messages", default=50_000, show_default=True, help="Messages drained by each client variant.")
@click.option("--readings", default=10, show_default=True, help="Readings per message (at most 10).")
@click.option("--rounds", default=3, show_default=True, help="Rounds per variant; the median is printed.")
def bench_receive(messages: int, readings: int, rounds: int) -> None:
    """The MQTT receive path alone: paho, paho with large reads, (pymosquitto): msg/s and CPU µs per message."""
    from ganzhi.bench_receive import run as run_bench

    run_bench(messages, readings, rounds)


@bench.command(name="scale")
@click.option("--part", type=click.Choice(["ingest", "rules", "both"]), default="both", show_default=True)
@click.option("--messages", default=200_000, show_default=True, help="Ingest: messages per run (10 readings each).")
@click.option("--stations", default=1000, show_default=True, help="Rules: water-quality stations (9 metrics each).")
@click.option("--rounds", default=30, show_default=True, help="Rules: readings of every metric per station.")
@click.pass_obj
def bench_scale(settings: Settings, part: str, messages: int, stations: int, rounds: int) -> None:
    """1 vs 2 ingest workers and 1 vs 2 rule workers: throughput ratio and exactly-once storage."""
    from ganzhi import bench_scale as scale

    if part in ("ingest", "both"):
        scale.ingest(database_url(settings), settings, messages, 10)
    if part in ("rules", "both"):
        scale.rules(database_url(settings), settings, stations, rounds)


@bench.command(name="fire-photos")
@photo_folders
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder holding verifier.onnx and verifier.json (default: the committed model).")
@click.option("--train", "with_train", is_flag=True, help="Also score the training split with the model (in sample).")
@click.option("--cross-validate", "outer", type=int, default=0,
              help="Instead: retrain in this many outer folds over all photos of both splits and score each photo "
                   "with the model that did not see it (needs the fire-train extra).")
@click.option("--backbone", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --cross-validate: the frozen network from this verifier.onnx (no torch).")
@click.option("--save-misses", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Draw the missed fire photos and the flagged non-fire ones, with their candidates' scores, here.")
@click.option("--yolo-labels", default=None, help="Instead of the labelled folders: YOLO label files in this "
              "sub-folder (empty: no fire; a box of a --fire-class: fire; other classes only: skipped).")
@click.option("--yolo-images", default="images", show_default=True,
              help="With --yolo-labels: the pictures' sub-folder.")
@click.option("--fire-class", "fire_classes", multiple=True, type=int, default=YOLO_FIRE_CLASSES, show_default=True,
              help="With --yolo-labels: a class that is fire (repeatable; D-Fire: 0 smoke, 1 fire).")
@click.option("--fresh", is_flag=True, help="Score every photo, not the held-out split: a set no model was trained "
              "or tuned on (read it once).")
@click.option("--training-only", is_flag=True, help="Score the training split alone (in sample) and leave the "
              "held-out split unread: for looking at errors without spending it.")
def bench_fire_photos(dataset: Path, fire_dirs: tuple[str, ...], other_dirs: tuple[str, ...], model_dir: Path | None,
                      with_train: bool, outer: int, backbone: Path | None, save_misses: Path | None,
                      yolo_labels: str | None, yolo_images: str, fire_classes: tuple[int, ...], fresh: bool,
                      training_only: bool) -> None:
    """Real photos, held-out split (or a fresh set): the per-frame colour stage alone and with the learned verifier."""
    from analytics.fire.verifier import MODEL_DIR
    from ganzhi.bench_fire_photos import run, say_skipped
    from ganzhi.train_fire_verifier import cross_validate, read_photos, read_yolo_photos

    if outer and (yolo_labels is not None or fresh or training_only):
        raise click.UsageError("--cross-validate retrains over the labelled folders: not with --yolo-labels, --fresh "
                               "or --training-only")
    if fresh and (training_only or with_train):
        raise click.UsageError("--fresh scores every photo: not with --training-only or --train (no split)")
    if outer:
        scored = cross_validate(dataset, fire_dirs, other_dirs, outer, backbone=backbone)
        click.echo(f"all photos, {outer} outer folds: {scored.line()}")
        return
    try:
        if yolo_labels is None:
            photos = read_photos(dataset, fire_dirs, other_dirs)
        else:
            photos, skipped = read_yolo_photos(dataset, yolo_images, yolo_labels, fire_classes)
            say_skipped(skipped, say=click.echo)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    run(photos, str(dataset), model_dir or MODEL_DIR, with_train, save_misses, fresh, training_only, say=click.echo)


@bench.command(name="broker-auth")
@click.option("--connected", "connected", multiple=True, type=int, default=(1000, 10_000), show_default=True,
              help="Device logins connected while the ledger changes; one run each.")
@click.option("--changes", default=3, show_default=True, help="Credentials issued (and devices retired) per run.")
@click.option("--legacy", is_flag=True, help="Hash the connected devices' secrets as the ledger did before "
              "(PBKDF2, 101 iterations).")
@click.pass_obj
def bench_broker_auth(settings: Settings, connected: tuple[int, ...], changes: int, legacy: bool) -> None:
    """With N device logins connected: ledger commit → the new credential's first login, retirement → its session
    closed, and the broker's longest publish→receive stall meanwhile."""
    from ganzhi.bench_broker_auth import run as run_bench

    run_bench(database_url(settings), settings, list(connected), changes, legacy)
