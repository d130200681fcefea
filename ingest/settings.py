"""Service settings, read once from the environment into a frozen tree.

``Settings.from_env`` is the one place the service reads its environment: the process-wide
values are fields, and the settings of one concern (webhook authentication, the answers to
messages Vapi waits on, the /ops login) are built from the same snapshot on first use and
validated by the process that needs them (``ingest web`` refuses to start without
authentication; ``ingest queue`` does not care). The exceptions are the dev launcher,
which passes its environment on to the processes it starts, and the metrics plumbing,
which sets prometheus_client's own variables for the processes after it.

Every variable, its default and its meaning is listed in the README's configuration table.
"""

from __future__ import annotations

import functools
import logging
import os
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

import phonenumbers

from ingest.errors import ConfigError
from ingest.metrics.multiprocess import worker_metrics_port

if TYPE_CHECKING:
    from limits import RateLimitItem

    from ingest.ops.anomaly_settings import AnomalySettings
    from ingest.ops.page.auth import OpsAuth
    from ingest.privacy import Privacy
    from ingest.sealing import Keyring
    from ingest.vapi_api import ApiSettings
    from ingest.web.answers import AnswerSettings
    from ingest.web.auth_settings import AuthSettings
    from ingest.web.client_address import TrustedProxies

DEFAULT_TIMEZONE = "Pacific/Auckland"
DEFAULT_QUEUE = "vapi-events"
DEFAULT_WEBHOOK_AUTH_FAILURE_LIMIT = "100/minute"


def env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case); unset or empty is ``default``."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


_N = TypeVar("_N", int, float)


def _number(env: Mapping[str, str], name: str, default: _N, parse: Callable[[str], _N], what: str, minimum: _N) -> _N:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not value >= minimum:  # NaN too
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """A whole-number setting: ``default`` when unset or blank; at least ``minimum``."""
    return _number(env, name, default, int, "an integer", minimum)


def env_number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    """A decimal setting (a threshold, a share): ``default`` when unset or blank; at least ``minimum``."""
    return _number(env, name, default, float, "a number", minimum)


# Well inside the 14 days Vapi keeps calls on pay-as-you-go (ingest.ops.reconcile_runs.MAX_LOOKBACK).
RECONCILE_WINDOW_MAX_HOURS = 13 * 24


def _reconcile_window_hours(env: Mapping[str, str]) -> int:
    hours = env_int(env, "RECONCILE_WINDOW_HOURS", 48, minimum=1)
    if hours > RECONCILE_WINDOW_MAX_HOURS:
        raise ConfigError(
            f"RECONCILE_WINDOW_HOURS must be at most {RECONCILE_WINDOW_MAX_HOURS} (inside Vapi's call retention),"
            f" got {hours}"
        )
    return hours


def _days(env: Mapping[str, str], name: str, default: int) -> int:
    """A retention window in days; ``0`` or ``off`` keeps the data forever (0)."""
    if env.get(name, "").strip().lower() == "off":
        return 0
    return env_int(env, name, default)


def _timezone(env: Mapping[str, str]) -> str:
    name = env.get("LOCAL_TIMEZONE", "").strip() or DEFAULT_TIMEZONE
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"LOCAL_TIMEZONE {name!r} is not an IANA time zone") from None
    return name


def _region(env: Mapping[str, str]) -> str:
    region = (env.get("DEFAULT_PHONE_REGION", "").strip() or "NZ").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"DEFAULT_PHONE_REGION {region!r} is not a region phonenumbers knows (e.g. NZ, AU, US)")
    return region


@dataclass(frozen=True)
class Settings:
    """Everything the web and worker processes read from the environment."""

    database_url: str | None = field(default=None, repr=False)
    redis_url: str | None = field(default=None, repr=False)
    data_dir: Path = Path(".data")
    local_timezone: str = DEFAULT_TIMEZONE
    # INGEST_CREATE_CLIENTS: whether an unknown metadata.client_id creates a client (stored
    # by `ingest migrate` for the database functions, like the time zone).
    create_clients: bool = False
    queue_name: str = DEFAULT_QUEUE
    queue_namespace: str = "dramatiq"
    db_pool_min: int = 1
    db_pool_max: int = 8
    db_prepared_statements: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    web_concurrency: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    # Limits on what a client may hold before it is authenticated (docs/security.md).
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 20.0
    keep_alive_timeout: int = 5
    limit_concurrency: int = 1000
    max_unverified_bodies: int = 16
    enqueue_timeout: float = 0.25
    phone_region: str = "NZ"
    # Personal data (docs/security.md): redact searchable text; run without encryption keys
    # only when INGEST_PLAINTEXT says so.
    redact: bool = True
    plaintext: bool = False
    sweep_interval: float = 30.0
    sweep_grace: float = 120.0
    heartbeat_timeout_ms: int = 60_000
    worker_processes: int = 2
    worker_threads: int = 8
    worker_prefetch: int = 64  # messages fetched and not yet acknowledged, per worker process
    worker_idle_poll_ms: int = 100
    metrics_token: bytes | None = field(default=None, repr=False)
    # Retention (ingest.ops.retention): days kept by default, 0 = forever; clients override.
    retention_raw_events_days: int = 30
    retention_transcript_days: int = 90
    retention_anonymise_days: int = 365
    retention_interval_minutes: int = 60
    # Reconciliation with Vapi's API (ingest.ops.reconcile), when VAPI_API_KEY is set.
    reconcile_interval_minutes: int = 15
    reconcile_window_hours: int = 48
    worker_metrics_port: int | None = None
    # The snapshot everything above was read from: the concern settings below read it too.
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def auth(self) -> AuthSettings:
        """Webhook authentication; raises ``ConfigError`` when none is configured (see ``ingest.web.auth_settings``)."""
        from ingest.web.auth_settings import AuthSettings

        return AuthSettings.from_env(self.environment)

    @functools.cached_property
    def keyring(self) -> Keyring:
        """The sealing keys (``INGEST_ENCRYPTION_KEYS``); empty when none are configured."""
        from ingest.sealing import Keyring

        keyring = Keyring.parse(self.environment.get("INGEST_ENCRYPTION_KEYS", ""))
        if keyring.sealing and self.plaintext:
            raise ConfigError("INGEST_PLAINTEXT=true and INGEST_ENCRYPTION_KEYS are both set: choose one")
        return keyring

    def require_keys(self) -> None:
        """Refuse to run the service without sealing keys, unless plain text is chosen explicitly
        (then say so loudly, once per process)."""
        if self.keyring.sealing:
            return
        if not self.plaintext:
            raise ConfigError(
                "no encryption key: set INGEST_ENCRYPTION_KEYS (`ingest keys generate` makes one), "
                "or INGEST_PLAINTEXT=true to store transcripts and raw bodies unencrypted"
            )
        logging.getLogger("ingest").warning(
            "INGEST_PLAINTEXT is set: raw bodies and original transcripts are stored UNENCRYPTED"
        )

    @functools.cached_property
    def pseudonym_key(self) -> bytes | None:
        """``INGEST_PSEUDONYM_KEY`` (``ingest.pseudonym``): None when unset."""
        from ingest.pseudonym import parse_key

        return parse_key(self.environment.get("INGEST_PSEUDONYM_KEY", ""))

    def require_pseudonym_key(self) -> bytes:
        """The pseudonym key, or a ConfigError saying how to make one (anonymising and erasing need it)."""
        key = self.pseudonym_key
        if key is None:
            raise ConfigError(
                "INGEST_PSEUDONYM_KEY is not set: make one with "
                "`python -c 'import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())'`"
            )
        return key

    @functools.cached_property
    def privacy(self) -> Privacy:
        """Region, redaction and keys: how events are applied and kept (``ingest.privacy``)."""
        from ingest.privacy import Privacy

        return Privacy(phone_region=self.phone_region, redact=self.redact, keyring=self.keyring)

    @functools.cached_property
    def answers(self) -> AnswerSettings:
        """What the endpoint answers to the messages Vapi waits on."""
        from ingest.web.answers import AnswerSettings

        return AnswerSettings.from_env(self.environment)

    @functools.cached_property
    def ops_auth(self) -> OpsAuth:
        """Who may use the /ops page."""
        from ingest.ops.page.auth import OpsAuth

        return OpsAuth.from_env(self.environment)

    @functools.cached_property
    def vapi_api(self) -> ApiSettings | None:
        """Vapi's REST API for reconciliation (``ingest.vapi_api``); None when ``VAPI_API_KEY`` is unset."""
        from ingest.vapi_api import ApiSettings

        return ApiSettings.from_env(self.environment)

    @functools.cached_property
    def anomalies(self) -> AnomalySettings:
        """Abuse monitoring: detector thresholds and whether flagged callers are refused (``ingest.ops.anomalies``)."""
        from ingest.ops.anomaly_settings import AnomalySettings

        return AnomalySettings.from_env(self.environment)

    @functools.cached_property
    def trusted_proxies(self) -> TrustedProxies:
        """Proxies whose ``X-Forwarded-For`` names the client that limits count against."""
        from ingest.web.client_address import TrustedProxies

        return TrustedProxies.from_env(self.environment)

    @functools.cached_property
    def webhook_auth_failure_limit(self) -> RateLimitItem:
        """Failed webhook authentications allowed per client address (``INGEST_WEBHOOK_AUTH_FAILURE_LIMIT``)."""
        from ingest.web.failure_limit import parse_limit

        variable = "INGEST_WEBHOOK_AUTH_FAILURE_LIMIT"
        return parse_limit(variable, self.environment.get(variable, "").strip() or DEFAULT_WEBHOOK_AUTH_FAILURE_LIMIT)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        pool_min = env_int(env, "DB_POOL_MIN", 1)
        pool_max = env_int(env, "DB_POOL_MAX", 8, minimum=1)
        if pool_max < pool_min:
            raise ConfigError(f"DB_POOL_MAX ({pool_max}) is below DB_POOL_MIN ({pool_min})")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("INGEST_DATA_DIR") or ".data"),
            local_timezone=_timezone(env),
            create_clients=env_flag(env, "INGEST_CREATE_CLIENTS", False),
            queue_name=env.get("INGEST_QUEUE") or DEFAULT_QUEUE,
            queue_namespace=env.get("INGEST_REDIS_NAMESPACE") or "dramatiq",
            db_pool_min=pool_min,
            db_pool_max=pool_max,
            db_prepared_statements=env_flag(env, "DB_PREPARED_STATEMENTS", True),
            host=env.get("HOST") or "127.0.0.1",
            port=env_int(env, "PORT", 8000, minimum=1),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            web_concurrency=env_int(env, "WEB_CONCURRENCY", 1, minimum=1),
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024),
            max_header_bytes=env_int(env, "MAX_HEADER_BYTES", 64 * 1024, minimum=1024),
            header_timeout=float(env_int(env, "HEADER_TIMEOUT_SECONDS", 10, minimum=1)),
            body_timeout=float(env_int(env, "BODY_TIMEOUT_SECONDS", 20, minimum=1)),
            keep_alive_timeout=env_int(env, "KEEP_ALIVE_TIMEOUT_SECONDS", 5, minimum=1),
            limit_concurrency=env_int(env, "WEB_LIMIT_CONCURRENCY", 1000, minimum=1),
            max_unverified_bodies=env_int(env, "MAX_UNVERIFIED_BODIES", 16, minimum=1),
            enqueue_timeout=env_int(env, "ENQUEUE_TIMEOUT_MS", 250, minimum=1) / 1000,
            phone_region=_region(env),
            redact=env_flag(env, "INGEST_REDACT", True),
            plaintext=env_flag(env, "INGEST_PLAINTEXT", False),
            sweep_interval=float(env_int(env, "SWEEP_INTERVAL_SECONDS", 30, minimum=1)),
            sweep_grace=float(env_int(env, "SWEEP_GRACE_SECONDS", 120, minimum=1)),
            heartbeat_timeout_ms=env_int(env, "WORKER_HEARTBEAT_TIMEOUT_MS", 60_000, minimum=1000),
            worker_processes=env_int(env, "WORKER_PROCESSES", 2, minimum=1),
            worker_threads=env_int(env, "WORKER_THREADS", 8, minimum=1),
            worker_prefetch=env_int(env, "WORKER_PREFETCH", 64, minimum=1),
            worker_idle_poll_ms=env_int(env, "WORKER_IDLE_POLL_MS", 100, minimum=10),
            metrics_token=(env.get("INGEST_METRICS_TOKEN") or "").strip().encode() or None,
            retention_raw_events_days=_days(env, "RETENTION_RAW_EVENTS_DAYS", 30),
            retention_transcript_days=_days(env, "RETENTION_TRANSCRIPT_DAYS", 90),
            retention_anonymise_days=_days(env, "RETENTION_ANONYMISE_DAYS", 365),
            retention_interval_minutes=env_int(env, "RETENTION_INTERVAL_MINUTES", 60, minimum=1),
            reconcile_interval_minutes=env_int(env, "RECONCILE_INTERVAL_MINUTES", 15, minimum=1),
            reconcile_window_hours=_reconcile_window_hours(env),
            worker_metrics_port=worker_metrics_port(env),
            environment=MappingProxyType(dict(env)),
        )
