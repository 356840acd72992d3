from __future__ import annotations

from pydantic import Field, field_validator

from memq.settings import CommonSettings


class GatewaySettings(CommonSettings):
    gateway_host: str = Field(default="127.0.0.1", description="Gateway bind address.")
    gateway_port: int = Field(default=8000, ge=1, le=65535, description="Gateway port.")
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='API key → tenant, as JSON (`{"key1": "acme"}`) or `key1:acme,key2:beta`. '
        "Empty: no authentication, every caller is tenant `default`.",
    )
    queue: str = Field(default="memq.jobs")
    job_ttl_seconds: int = Field(default=7 * 86400, gt=0)
    memory_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, v: object) -> object:
        if isinstance(v, str) and v.strip() and not v.strip().startswith("{"):
            pairs = (item.split(":", 1) for item in v.split(",") if item.strip())
            return {k.strip(): t.strip() for k, t in pairs}
        return v
