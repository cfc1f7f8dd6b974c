"""docker-compose.yml cannot run here (no Docker engine), so it is checked as data: every platform command
parses with the real CLI, every variable is a setting or a documented image variable, images are pinned,
every long-running service has a health check and a restart policy, no secret is written in it, and
published ports are the deliberate ones. Each rule is also shown to catch a broken file."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from core.settings import DEMO_SECRET, Settings
from ganzhi.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "ganzhi.env.example"
IMAGE_VARIABLES = {
    "timescale/timescaledb": {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "TIMESCALEDB_TELEMETRY"},
}
"""Variables the images document (the postgres image's entrypoint; TimescaleDB's telemetry switch)."""
PUBLIC_PORTS = {"8883", "1883", "9212"}
"""Devices and data loggers connect from the field; everything else is bound to loopback or not published."""
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
REQUIRED_VARIABLE = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")


def setting_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(alias.choices) if alias is not None else {f"GANZHI_{name.upper()}"}
    return names


def parse_ganzhi(argv: list[str]) -> click.Context:
    """Parse ``ganzhi ...`` arguments with the real CLI, down to the command, without running it."""
    assert argv[0] == "ganzhi", argv
    ctx = main.make_context("ganzhi", [argv[1]], resilient_parsing=True)
    command: click.Command = main
    args = list(argv[1:])
    while isinstance(command, click.Group):
        name = args.pop(0)
        found = command.get_command(ctx, name)
        if found is None:
            raise click.UsageError(f"no command {name!r} in {' '.join(argv)}")
        command = found
        if not isinstance(command, click.Group):
            return command.make_context(name, args, parent=ctx)
        ctx = command.make_context(name, [args[0]] if args else [], parent=ctx, resilient_parsing=True)
    raise AssertionError("unreachable")


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def one_shots(compose: dict) -> set[str]:
    """Services others wait for to complete: they run once and need no health check."""
    return {name for service in compose["services"].values()
            for name, cond in (service.get("depends_on") or {}).items()
            if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully"}


def problems(compose: dict) -> list[str]:
    found: list[str] = []
    settings = setting_names()
    once = one_shots(compose)
    for name, service in compose["services"].items():
        image = service.get("image", "")
        named, _, digest = image.partition("@")
        repository, _, tag = named.rpartition(":") if ":" in named else (named, "", "")
        if not tag or "latest" in tag:
            found.append(f"{name}: image {image!r} is not pinned to a version")
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            found.append(f"{name}: image {image!r} has a malformed digest")
        if repository != "ganzhi" and not digest:
            found.append(f"{name}: image {image!r} has no digest")
        command = service.get("command")
        if command and command[0] == "ganzhi":
            try:
                parse_ganzhi(command)
            except click.ClickException as exc:
                found.append(f"{name}: command {command}: {exc.format_message()}")
        elif command is None and repository == "ganzhi":
            found.append(f"{name}: a platform container without a command runs `ganzhi up`")
        allowed = settings | IMAGE_VARIABLES.get(repository, set())
        for variable, value in (service.get("environment") or {}).items():
            if variable not in allowed:
                found.append(f"{name}: {variable} is neither a setting nor a documented variable of {image}")
            if SECRET_NAME.search(variable) and not REQUIRED_VARIABLE.match(str(value)):
                found.append(f"{name}: {variable} must come from the env file as ${{VAR:?message}}")
        restart = service.get("restart")
        if restart not in ("unless-stopped", "always", "on-failure"):
            found.append(f"{name}: restart policy {restart!r}")
        if name in once:
            if restart != "on-failure":
                found.append(f"{name}: a one-shot service restarts on failure only")
        else:
            test = (service.get("healthcheck") or {}).get("test")
            if not test or service["healthcheck"].get("disable"):
                found.append(f"{name}: no health check")
            elif test[0] == "CMD" and test[1] == "ganzhi":
                try:
                    parse_ganzhi(test[1:])
                except click.ClickException as exc:
                    found.append(f"{name}: health check {test}: {exc.format_message()}")
        for port in service.get("ports") or []:
            parts = str(port).split(":")
            if not (len(parts) == 3 and parts[0] == "127.0.0.1") and parts[-1] not in PUBLIC_PORTS:
                found.append(f"{name}: port {port} is published on every address")
    return found


def secret_literals(text: str) -> list[str]:
    """Defaults given to secret variables, the public demo key, and URLs with a password written in."""
    found = [m.group(0) for m in re.finditer(r"\$\{(\w+):?-[^}]*\}", text) if SECRET_NAME.search(m.group(1))]
    found += [DEMO_SECRET] if DEMO_SECRET in text else []
    found += re.findall(r"://[^:/\s]+:(?!\$\{)[^@\s]+@", text)
    return found


def test_the_compose_file_passes_every_rule():
    compose = load()
    assert problems(compose) == []
    assert secret_literals(COMPOSE.read_text(encoding="utf-8")) == []


def test_the_deployment_has_every_platform_service():
    commands = [" ".join(s.get("command", [])[:2]) for s in load()["services"].values()]
    for wanted, count in (("ganzhi ingest", 2), ("ganzhi analytics", 2), ("ganzhi hj212", 2), ("ganzhi api", 1),
                          ("ganzhi fire", 1), ("ganzhi deliver", 1), ("ganzhi dispatch-sweep", 1),
                          ("ganzhi broker", 2), ("ganzhi maintain", 1), ("ganzhi db", 1)):
        assert commands.count(wanted) == count, wanted
    services = load()["services"]
    ingest_ids = {s["command"][3] for s in services.values() if s.get("command", [])[:2] == ["ganzhi", "ingest"]}
    assert len(ingest_ids) == 2  # two sessions on the shared subscription, not one id twice
    assert "ports" not in services["db"]


def test_every_secret_the_file_asks_for_is_in_the_env_example_and_empty_there():
    asked = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text(encoding="utf-8")))
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
                   if line and not line.startswith("#"))
    assert asked == set(example)
    assert all(value == "" for value in example.values())


def _broken(change) -> list[str]:
    compose = copy.deepcopy(load())
    change(compose["services"])
    return problems(compose)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: s["db"].update(image="timescale/timescaledb:latest-pg16"), "db: image"),
    (lambda s: s["mosquitto"].update(image="eclipse-mosquitto"), "mosquitto: image"),
    (lambda s: s["mosquitto"].update(image="eclipse-mosquitto:2.0.20"), "mosquitto: image"),
    (lambda s: s["db"].update(image="timescale/timescaledb:2.17.2-pg16@sha256:4e45"), "db: image"),
    (lambda s: s["ingest-1"].update(command=["ganzhi", "ingest", "--client", "x"]), "ingest-1: command"),
    (lambda s: s["rules-1"].update(command=["ganzhi", "rules", "run"]), "rules-1: command"),
    (lambda s: s["api"]["environment"].update(GANZHI_HTTP_HOSTNAME="0.0.0.0"), "api: GANZHI_HTTP_HOSTNAME"),
    (lambda s: s["api"]["environment"].update(GANZHI_MQTT_PASSWORD="hunter2hunter2"), "api: GANZHI_MQTT_PASSWORD"),
    (lambda s: s["fire"].pop("healthcheck"), "fire: no health check"),
    (lambda s: s["deliver"].pop("restart"), "deliver: restart"),
    (lambda s: s["api"].update(ports=["8080:8080"]), "api: port"),
    (lambda s: s["maintenance"]["healthcheck"].update(test=["CMD", "ganzhi", "healthz", "x"]), "maintenance: health"),
])
def test_each_rule_catches_a_broken_file(change, expected):
    assert any(p.startswith(expected) for p in _broken(change)), _broken(change)


def test_secret_literals_are_caught():
    assert secret_literals("X: ${GANZHI_MQTT_PASSWORD:-changeme}") == ["${GANZHI_MQTT_PASSWORD:-changeme}"]
    assert secret_literals(f"GANZHI_DEMO_SECRET: {DEMO_SECRET}") == [DEMO_SECRET]
    assert secret_literals("DATABASE_URL: postgresql://ganzhi:s3cret@db/ganzhi")
    assert secret_literals("DATABASE_URL: postgresql://ganzhi:${POSTGRES_PASSWORD:?x}@db/ganzhi") == []


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed; scripts/test installs it (apt-get install docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GANZHI_", "POSTGRES_"))}
    return subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], env=clean | env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_the_compose_schema_accepts_the_file_with_every_secret_and_names_a_missing_one():
    """docker-compose validates against the Compose schema (unknown keys, wrong types) without an engine."""
    secrets = {name: "x" * 32 for name in re.findall(r"\$\{(\w+):\?", COMPOSE.read_text(encoding="utf-8"))}
    complete = _compose_config(secrets)
    assert complete.returncode == 0, complete.stderr
    missing = _compose_config({k: v for k, v in secrets.items() if k != "GANZHI_BROKER_SYNC_PASSWORD"})
    assert missing.returncode != 0 and "set GANZHI_BROKER_SYNC_PASSWORD" in missing.stderr
