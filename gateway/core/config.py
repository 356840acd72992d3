"""Gateway settings: every `MEMQ_*` variable the gateway reads, validated at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import limits
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from memq.settings import TENANT_PATTERN, ServiceSettings

MIB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    gateway_host: str = Field(default="127.0.0.1", description="Gateway bind address.")
    # NoDecode: the validator below parses both documented forms, not only JSON.
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='Bootstrap API key → tenant, as JSON (`{"key1": "acme"}`) or '
        "`key1:acme,key2:beta`; keys made with `memq keys create` work too. With neither "
        "(and MEMQ_REQUIRE_API_KEY off) there is no authentication: every caller is tenant "
        "`default`.",
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
    require_api_key: bool = Field(
        default=False,
        description="Require an API key even while no key exists (every request is then "
        "401 until `memq keys create`). Authentication is on anyway as soon as any key exists.",
    )
    api_key_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long the gateway trusts a resolved API key without asking Redis: a "
        "revoked key stops working at most this long after `memq keys revoke`.",
    )
    rate_limit: str = Field(
        default="",
        description="Requests allowed per API key (per tenant when authentication is off), "
        "e.g. `600/minute` or `20/second`; beyond it 429 with Retry-After. Empty: no limit.",
    )
    max_queue_depth: int = Field(
        default=100_000,
        ge=1,
        description="Messages the job queues (all priorities) may hold; while they hold this "
        "many, `POST /v1/jobs` and replays answer 503 `queue_full` with Retry-After.",
    )
    max_unfinished_jobs: int = Field(
        default=10_000,
        ge=1,
        description="Per tenant: unfinished (queued or running) jobs beyond this are refused "
        "with 429 until some finish.",
    )

    files_dir: Path | None = Field(
        default=None,
        description="Where uploaded files and batch output files are kept (default "
        "`DATA_DIR/files`).",
    )
    max_file_bytes: int = Field(
        default=200 * MIB,
        ge=1024,
        le=8 * 1024 * MIB,
        description="Largest file `POST /v1/files` accepts (bytes); bigger ones get 413.",
    )
    batch_max_lines: int = Field(
        default=50_000,
        ge=1,
        le=1_000_000,
        description="Most request lines one batch input file may hold (OpenAI's limit: 50,000).",
    )
    batch_sweep_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a gateway looks at unfinished batches: creates, cancels, "
        "expires and finalizes them (any gateway picks up a batch another one left).",
    )
    batch_reconcile_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often a running batch is checked for line jobs that ended without "
        "their line being written (their process died in between).",
    )

    @property
    def files_path(self) -> Path:
        return self.files_dir if self.files_dir is not None else self.data_dir / "files"

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, v: str) -> str:
        text = v.strip()
        if text:
            try:
                amount = limits.parse(text).amount
            except ValueError:
                amount = 0
            if amount < 1:
                raise ValueError(
                    f"MEMQ_RATE_LIMIT {text!r} is not a rate: write `<count>/<unit>` with a "
                    "count of at least 1, e.g. `600/minute`, `20/second`, `10000/hour`, or "
                    "leave it empty for no limit"
                )
        return text

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
