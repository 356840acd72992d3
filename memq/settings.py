"""Settings every memq process shares. Each service subclasses `CommonSettings` in its
own `core/config.py`; all read `MEMQ_*` environment variables and validate at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TENANT = "default"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMQ_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".memq"), description="Where embedded state lives.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Broker + job records. `memq up` starts an embedded Redis when unset.",
    )
    memory_url: str = Field(
        default="http://127.0.0.1:8001", description="Base URL of the memory service."
    )
    service_token: SecretStr = Field(
        default=SecretStr("memq-dev-service-token"),
        description="Shared secret between gateway/worker and the memory service.",
    )
    key_prefix: str = Field(default="memq", description="Prefix of every Redis key.")
    log_level: str = Field(default="INFO")
