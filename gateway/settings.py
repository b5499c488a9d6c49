"""Process settings from the environment (pydantic-settings).

Deployment-shaped things (providers, models, prices) live in the YAML config; what
differs between one machine and a fleet of replicas — where the database, Redis and
Qdrant are, the admin key — comes from the environment, so the same config file runs
on a laptop and behind a load balancer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/gateway.db"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_env("DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    qdrant_url: str | None = Field(None, validation_alias=_env("QDRANT_URL"))
    qdrant_api_key: SecretStr | None = Field(None, validation_alias=_env("QDRANT_API_KEY"))
    # Qdrant's embedded local mode keeps RAG collections here when QDRANT_URL is not set.
    qdrant_path: Path = Field(Path("./data/qdrant"), validation_alias=_env("QDRANT_PATH"))
    admin_key: SecretStr | None = Field(None, validation_alias=_env("GATEWAY_ADMIN_KEY"))
    config_path: Path | None = Field(None, validation_alias=_env("GATEWAY_CONFIG"))
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, validation_alias=_env("GATEWAY_MAX_BODY_BYTES"))
    # HTTP limits, enforced before any route runs (gateway.server).
    max_header_bytes: int = Field(64 * 1024, ge=1024, validation_alias=_env("GATEWAY_MAX_HEADER_BYTES"))
    header_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("GATEWAY_HEADER_TIMEOUT_S"))
    body_timeout_s: float = Field(60.0, gt=0, validation_alias=_env("GATEWAY_BODY_TIMEOUT_S"))
    max_connections: int = Field(1024, ge=1, validation_alias=_env("GATEWAY_MAX_CONNECTIONS"))
    idle_connection_timeout_s: int = Field(
        5, ge=1, validation_alias=_env("GATEWAY_IDLE_CONNECTION_TIMEOUT_S")
    )
    # Browser protections (gateway.browser_guard): comma-separated lists.
    allowed_hosts: str = Field("", validation_alias=_env("GATEWAY_ALLOWED_HOSTS"))
    cors_origins: str = Field("", validation_alias=_env("GATEWAY_CORS_ORIGINS"))
    keepalive_interval_s: float = Field(5.0, gt=0, validation_alias=_env("GATEWAY_KEEPALIVE_S"))
    http_client: Literal["aiohttp", "httpx"] = Field("aiohttp", validation_alias=_env("GATEWAY_HTTP_CLIENT"))
    log_level: str = Field("info", validation_alias=_env("GATEWAY_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("GATEWAY_LOG_FORMAT"))
    # Telemetry (gateway.telemetry): "auto" traces only when an OTLP endpoint is configured.
    tracing: Literal["auto", "on", "off"] = Field("auto", validation_alias=_env("GATEWAY_TRACING"))
    metrics_token: SecretStr | None = Field(None, validation_alias=_env("GATEWAY_METRICS_TOKEN"))
    health_interval_s: float = Field(15.0, gt=0, validation_alias=_env("GATEWAY_HEALTH_INTERVAL_S"))
    # Keys, limits and the ledger (gateway.accounts).
    migrate_on_start: bool = Field(True, validation_alias=_env("GATEWAY_MIGRATE_ON_START"))
    key_cache_ttl_s: float = Field(5.0, ge=0, validation_alias=_env("GATEWAY_KEY_CACHE_TTL_S"))
    ledger_spool_dir: Path | None = Field(None, validation_alias=_env("GATEWAY_LEDGER_SPOOL_DIR"))
    ledger_flush_interval_s: float = Field(0.5, gt=0, validation_alias=_env("GATEWAY_LEDGER_FLUSH_S"))
    # Completion tokens a request without max_tokens is assumed to use, when tpm and
    # budgets reserve at admission (settled to the actual count afterwards).
    default_max_tokens: int = Field(1024, ge=1, le=10**7, validation_alias=_env("GATEWAY_DEFAULT_MAX_TOKENS"))
    ledger_memory_rows: int = Field(20_000, ge=10, validation_alias=_env("GATEWAY_LEDGER_MEMORY_ROWS"))
    # Stored Responses API responses (`previous_response_id`): how long, and how many.
    responses_retention_s: float = Field(
        30 * 24 * 3600, gt=0, validation_alias=_env("GATEWAY_RESPONSES_RETENTION_S")
    )
    responses_capacity: int = Field(10_000, ge=1, validation_alias=_env("GATEWAY_RESPONSES_CAPACITY"))
    workers: int = Field(1, ge=1, validation_alias=_env("GATEWAY_WORKERS"))
    # Graceful shutdown (gateway.lifecycle): keep accepting while not ready, then let streams finish.
    shutdown_drain_s: float = Field(0.0, ge=0, validation_alias=_env("GATEWAY_SHUTDOWN_DRAIN_S"))
    shutdown_timeout_s: float = Field(30.0, ge=0, validation_alias=_env("GATEWAY_SHUTDOWN_TIMEOUT_S"))

    @property
    def auth_enabled(self) -> bool:
        return self.admin_key is not None and bool(self.admin_key.get_secret_value())
