"""Gateway settings: every `MEMQ_*` variable the gateway reads, validated at start-up."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from memq.settings import TENANT_PATTERN, ServiceSettings

MIB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    gateway_host: str = Field(default="127.0.0.1", description="Gateway bind address.")
    # NoDecode: the validator below parses both documented forms, not only JSON.
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='API key → tenant, as JSON (`{"key1": "acme"}`) or `key1:acme,key2:beta`. '
        "Empty: no authentication, every caller is tenant `default`.",
    )
    memory_timeout_s: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(
        default=16 * MIB,
        ge=64 * 1024,
        description="Largest request body (bytes) of every route but memory import; bigger "
        "ones get 413 before they are read (a 1,000,000-character summarize text fits).",
    )
    max_import_bytes: int = Field(
        default=64 * MIB,
        ge=64 * 1024,
        description="Largest body of `POST /v1/namespaces/{ns}/import`.",
    )
    max_unfinished_jobs: int = Field(
        default=10_000,
        ge=1,
        description="Per tenant: unfinished (queued or running) jobs beyond this are refused "
        "with 429 until some finish.",
    )

    @field_validator("api_keys")
    @classmethod
    def _tenants_are_valid(cls, v: dict[str, str]) -> dict[str, str]:
        for key, tenant in v.items():
            if not TENANT_PATTERN.fullmatch(tenant):
                raise ValueError(
                    f"tenant {tenant!r} (of key {key[:4]}…) must be 1-128 characters of "
                    "letters, digits and `_ . : @ -`"
                )
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        text = v.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"MEMQ_API_KEYS is not valid JSON ({exc})") from exc
        keys: dict[str, str] = {}
        for item in text.split(","):
            key, sep, tenant = item.strip().partition(":")
            if not sep or not key.strip() or not tenant.strip():
                raise ValueError(
                    f"MEMQ_API_KEYS entry {item.strip()!r} is not `key:tenant`; use "
                    '`key1:tenant1,key2:tenant2` or JSON `{"key1": "tenant1"}`'
                )
            keys[key.strip()] = tenant.strip()
        return keys
