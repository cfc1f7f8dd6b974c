"""`ganzhi fire`, `ganzhi firms` and `ganzhi heat-source`: straw-fire detection from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.settings import Settings
from ganzhi.commands import Group, connect, database_url


@click.command()
@click.option("--shard", default=0, show_default=True, help="This worker's share of the cameras (id mod shards).")
@click.option("--shards", default=1, show_default=True, help="How many fire workers split the cameras.")
@click.option("--source", "sources", multiple=True, metavar="CODE=URI",
              help="Also read this camera from a snapshot URL, RTSP stream or video file (repeatable).")
@click.option("--fps", default=2.0, show_default=True, help="Frames per second taken from each --source.")
@click.option("--protocol", type=click.Choice(["5", "3.1.1"]), default=None,
              help="MQTT version (default: GANZHI_INGEST_PROTOCOL, 5).")
@click.pass_obj
def fire(settings: Settings, shard: int, shards: int, sources: tuple[str, ...], fps: float,
         protocol: str | None) -> None:
    """Run one fire worker: camera frames into fire detections, events and alerts (Ctrl-C stops it)."""
    from alerts import fire as fire_alerts
    from analytics.fire.worker import FireConfig, FireWorker
    from core.runtime import run_service

    pairs = []
    for item in sources:
        code, sep, uri = item.partition("=")
        if not sep or not code or not uri:
            raise click.BadParameter(f"{item!r} is not CODE=URI", param_hint="--source")
        pairs.append((code.strip(), uri.strip()))
    host, port = settings.mqtt_host_port
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    url = database_url(settings)
    worker = FireWorker(FireConfig(
        database_url=url, mqtt_host=host, mqtt_port=port, client_id=f"ganzhi-fire-{shard}",
        username=settings.mqtt_username if password else None, password=password,
        mqtt5=(protocol or settings.ingest_protocol) == "5", shard=shard, shards=shards, sources=tuple(pairs),
        source_fps=fps,
    ), fire_alerts)
    sys.exit(run_service("fire", f"fire ganzhi-fire-{shard}", url, worker.run, settings))


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def firms(settings: Settings, file: Path) -> None:
    """Import a NASA FIRMS CSV (VIIRS or MODIS): hotspots inside Suihua become fire detections."""
    from alerts import fire as fire_alerts
    from analytics.fire.firms import FirmsError
    from analytics.fire.satellite import import_firms
    from registry.lookups import division_index

    with connect(settings) as conn:
        try:
            report = import_firms(conn, file.read_text(encoding="utf-8-sig"), file.name, fire_alerts,
                                  division_index(conn).locate)
        except FirmsError as exc:
            conn.commit()
            raise click.ClickException(f"{file}: {exc} (dead-lettered)") from exc
        conn.commit()
    click.echo(f"{file}: {report.rows} rows, {report.stored} stored, {report.outside} outside Suihua, "
               f"{report.heat_source} at known heat sources, {report.not_vegetation} not vegetation fires, "
               f"{report.repeated} already imported, {len(report.errors)} unreadable; "
               f"{len(report.events)} fire events")
    for error in report.errors[:20]:
        click.echo(f"  {error}", err=True)


@click.group("heat-source", cls=Group)
def heat_source() -> None:
    """Known static heat sources: satellite hotspots near them are not straw fires."""


@heat_source.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["power_plant", "factory", "flare", "boiler", "other"]), required=True)
@click.option("--lat", type=float, required=True)
@click.option("--lon", type=float, required=True)
@click.option("--radius", "radius_m", type=float, default=1000.0, show_default=True, help="metres")
@click.pass_obj
def heat_source_add(settings: Settings, name: str, kind: str, lat: float, lon: float, radius_m: float) -> None:
    from registry.heat_sources import HeatSourceIn, add

    with connect(settings) as conn:
        row = add(conn, HeatSourceIn(name=name, kind=kind, lat=lat, lon=lon, radius_m=radius_m))
        conn.commit()
    click.echo(f"heat source {row['id']} {name} in {row['division_code']}, radius {radius_m:.0f} m")


@heat_source.command("list")
@click.pass_obj
def heat_source_list(settings: Settings) -> None:
    from registry.heat_sources import list_all

    with connect(settings) as conn:
        for row in list_all(conn):
            click.echo(f"{row['id']}\t{row['name']}\t{row['kind']}\t{row['lat']:.5f}\t{row['lon']:.5f}\t"
                       f"{row['radius_m']:.0f} m")


CAIR_SOURCE = "https://github.com/cair/Fire-Detection-Image-Dataset (fire_images/, normal_images/)"
CAIR_LICENCE = "MIT (LICENSE.md added by the repository owner at 4fd34c2, 2020-01-07)"
CAIR_COMMIT = "1182c49e752ebe71752803eb09c698622ff7a4f4"
YOLO_FIRE_CLASSES = (1,)
"""The fire class of a YOLO-labelled photo set by default: D-Fire's (0 smoke, 1 fire)."""


def photo_folders(command):
    """The options naming a photo data set's labelled folders (shared by training and benchmark)."""
    command = click.option("--fire-dir", "fire_dirs", multiple=True, default=("fire_images",), show_default=True,
                           help="Sub-folder of fire photos (repeatable).")(command)
    command = click.option("--non-fire-dir", "other_dirs", multiple=True, default=("normal_images",),
                           show_default=True, help="Sub-folder of photos without fire (repeatable).")(command)
    return click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))(command)


@click.command("train-fire-verifier")
@photo_folders
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where verifier.onnx and verifier.json go (default: the package's analytics/fire/models).")
@click.option("--source", default=CAIR_SOURCE, show_default=True, help="Where the photos come from (recorded).")
@click.option("--licence", default=CAIR_LICENCE, show_default=True, help="The photos' licence (recorded).")
@click.option("--commit", default=CAIR_COMMIT, show_default=True, help="The source's commit or version (recorded).")
@click.option("--seed", default=7, show_default=True)
@click.option("--shrink", default=2, show_default=True, help="Copies of each crop shown at tower range (8–40 px).")
@click.option("--simulator/--no-simulator", default=True, show_default=True,
              help="Also train on candidate crops of the simulator's tower sequences (tuning seeds).")
@click.option("--backbone", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Take the frozen network from this verifier.onnx (needs onnx, not torch) instead of the "
                   "EfficientNet-Lite0 wheels.")
@click.option("--fine-tune", "fine_tune", type=click.IntRange(min=0, max=16), default=None,
              help="Also fine-tune the network's last N MBConv blocks and its head convolution on augmented copies "
                   "of the crops (torch; 0: the head convolution only; EfficientNet-Lite0 has 16). Default: frozen "
                   "network.")
def train_fire_verifier(dataset: Path, fire_dirs: tuple[str, ...], other_dirs: tuple[str, ...], out: Path | None,
                        source: str, licence: str, commit: str, seed: int, shrink: int, simulator: bool,
                        backbone: Path | None, fine_tune: int | None) -> None:
    """Train the fire verifier on the training split of a photo folder and export it to ONNX (docs/fire-verifier.md)."""
    from analytics.fire.verifier import MODEL_DIR
    from ganzhi.train_fire_verifier import Provenance, Recipe, train

    recipe = None if fine_tune is None else Recipe(blocks=fine_tune, seed=seed)
    try:
        train(dataset, out or MODEL_DIR, Provenance(source, licence, commit), fire_dirs, other_dirs, seed=seed,
              shrink=shrink, simulator=simulator, backbone=backbone, fine_tune=recipe, say=click.echo)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    except ModuleNotFoundError as e:
        raise click.ClickException(f"training needs the fire-train extra (pip install -e '.[fire-train]'): {e}") from e
