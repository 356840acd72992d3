"""Settings every memq process shares, and the one place their defaults live.

Each service subclasses `ServiceSettings` in its own `core/config.py` (the worker in
`worker/config.py`); `memq up` uses `LauncherSettings`; the CLI and the SDK use
`ClientSettings`. All read `MEMQ_*` environment variables and `.env`, and validate at
start-up, so a bad value fails loudly before the first request.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TENANT = "default"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"
SERVICE_TOKEN_FILE = "service-token"
"""Where `memq up` keeps the service token it generated, inside the data dir."""
DEFAULT_KEY_PREFIX = "memq"
"""Prefix of every Redis key memq writes (`MEMQ_KEY_PREFIX`; memq.store.keys)."""


class _Env(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMQ_", env_file=".env", extra="ignore")


class ClientSettings(_Env):
    """What a client of the gateway needs (CLI, SDK)."""

    gateway_url: str = Field(
        default=DEFAULT_GATEWAY_URL, description="Base URL of the gateway (CLI and SDK)."
    )
    api_key: SecretStr | None = Field(default=None, description="API key for the gateway.")


class CommonSettings(_Env):
    """Fields shared by the services and the launcher."""

    data_dir: Path = Field(default=Path(".memq"), description="Where embedded state lives.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Broker + job records. `memq up` starts an embedded Redis when unset.",
    )
    memory_url: str = Field(
        default="http://127.0.0.1:8001", description="Base URL of the memory service."
    )
    gateway_url: str = Field(
        default=DEFAULT_GATEWAY_URL,
        description="Public base URL of the gateway: status URLs are built from it, never "
        "from the request's Host header.",
    )
    gateway_port: int = Field(default=8000, ge=1, le=65535, description="Gateway port.")
    memory_port: int = Field(default=8001, ge=1, le=65535, description="Memory service port.")
    service_token: SecretStr | None = Field(
        default=None,
        description="Shared secret between gateway/worker and the memory service. Required: "
        "`memq up` generates one per data dir; every other start must set it.",
    )
    key_prefix: str = Field(
        default=DEFAULT_KEY_PREFIX,
        pattern=r"^[A-Za-z0-9_.\-]{1,32}$",
        description="Prefix of Redis keys.",
    )
    queue: str = Field(
        default="memq.jobs",
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="Base name of the Celery job queue.",
    )
    job_ttl_seconds: int = Field(
        default=7 * 86400, gt=0, description="How long a finished job's record is kept."
    )
    job_timeout_s: int = Field(
        default=3600,
        ge=10,
        le=7 * 86400,
        description="The longest a job may run; Celery's visibility timeout is derived from it.",
    )
    max_queued_s: int = Field(
        default=86400,
        ge=60,
        description="A job still queued after this long fails with `expired` (the reconciler).",
    )
    lease_ttl_s: float = Field(
        default=10.0,
        ge=1.0,
        le=600.0,
        description="A worker's hold on a job lapses this long after its last heartbeat; "
        "the reconciler then sends the job again.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(default="INFO")
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json`: one JSON object per line, with the job id."
    )

    @property
    def redis_url_explicit(self) -> bool:
        return "redis_url" in self.model_fields_set


class ServiceSettings(CommonSettings):
    """Settings of a process that talks to the memory service: the token is required."""

    @model_validator(mode="after")
    def _token_is_set(self) -> ServiceSettings:
        if self.service_token is None or not self.service_token.get_secret_value().strip():
            raise ValueError(
                "MEMQ_SERVICE_TOKEN is not set: the services share it to authenticate each "
                "other. `memq up` generates one per data dir; otherwise set it to a long random "
                "string: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return self

    @property
    def token(self) -> str:
        assert self.service_token is not None  # enforced by the validator
        return self.service_token.get_secret_value()


class LauncherSettings(CommonSettings):
    """`memq up`: which parts to start and where."""

    embedded_redis_port: int = Field(
        default=6390, ge=1, le=65535, description="Port of the embedded Redis `memq up` starts."
    )
    workers: int = Field(default=1, ge=1, le=16, description="Worker processes `memq up` starts.")
    restart_backoff_initial_s: float = Field(
        default=0.5, gt=0, le=60, description="Delay before restarting a child after its crash."
    )
    restart_backoff_max_s: float = Field(
        default=30.0, gt=0, le=600, description="The backoff doubles per fast crash up to this."
    )
    restart_window_s: float = Field(
        default=60.0,
        gt=0,
        description="A crash less than this long after the child (re)started is a fast crash; "
        "a child that ran longer starts a fresh count.",
    )
    restart_max_fast_crashes: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Fast crashes in a row after which `memq up` gives up and stops everything.",
    )


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], service: str) -> S:
    """Settings for an entry point; a bad or missing value exits with a message that names
    the variable and says what to fix, instead of a traceback."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"  MEMQ_{field.upper()}: {message}" if field else f"  {message}")
        print(
            f"cannot start the {service}: bad configuration\n" + "\n".join(problems),
            file=sys.stderr,
        )
        raise SystemExit(2) from None
