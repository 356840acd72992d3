"""API keys in Redis: each binds a caller to a tenant; only a digest of the key is stored.

A key reads `mq_<id>_<secret>`: `id` (12 hex digits) is public and finds the record, `secret`
(`secrets.token_urlsafe(32)`, 256 random bits) is shown once by `create` and never stored.
`mq_<id>` is the key's prefix, safe to print in listings and logs.

Keys (memq.store.keys):
    {prefix}:apikey:{id}    hash: digest (SHA-256 of the whole key, hex), tenant, name,
                            created_at
    {prefix}:apikeys        zset: key ids by creation time

Revoking deletes both; the gateway's cache lets a revoked key work for at most
`MEMQ_API_KEY_CACHE_S` more seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import redis
from pydantic import BaseModel, Field
from redis.typing import EncodableT, FieldT

from memq.errors import InvalidInput
from memq.settings import DEFAULT_KEY_PREFIX, TENANT_PATTERN, CommonSettings
from memq.store.keys import Keys, as_text

KEY_PREFIX = "mq_"
KEY_PATTERN = re.compile(r"^mq_([0-9a-f]{12})_[A-Za-z0-9_\-]{43}$")
ID_PATTERN = re.compile(r"^(?:mq_)?([0-9a-f]{12})$")
MAX_NAME_CHARS = 128


class ApiKeyInfo(BaseModel):
    """An API key as listings show it: everything but the secret and its digest."""

    id: str = Field(description="Public id of the key (12 hex digits).")
    prefix: str = Field(description="`mq_<id>`: the key's first characters, safe to show.")
    tenant: str
    name: str = Field(description="The operator's label for the key.")
    created_at: datetime


class CreatedApiKey(ApiKeyInfo):
    """A key just created: the only time its plaintext exists."""

    key: str = Field(description="The API key. It is not stored: keep it now.")


def key_digest(key: str) -> str:
    # A fast hash is enough: the secret is 256 random bits, so there is no dictionary to
    # try (slow password hashes protect low-entropy secrets).
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(prefix_or_id: str) -> str:
    """The id named by `mq_<id>`, `<id>` or a whole key; InvalidInput otherwise."""
    text = prefix_or_id.strip()
    whole = KEY_PATTERN.fullmatch(text)
    found = whole or ID_PATTERN.fullmatch(text)
    if found is None:
        raise InvalidInput(
            f"{text[:20]!r} is not an API key prefix or id: give `mq_` and 12 hex digits "
            "(the PREFIX column of `memq keys ls`) or the 12-digit id"
        )
    return found.group(1)


def key_prefix_of(key: str) -> str | None:
    """`mq_<id>` of a key in memq's format (safe to show), None for any other string."""
    found = KEY_PATTERN.fullmatch(key)
    return f"{KEY_PREFIX}{found.group(1)}" if found else None


def validate_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidInput(
            f"tenant {tenant[:40]!r} must be 1-128 characters of letters, digits and `_ . : @ -`"
        )
    return tenant


def _validate_name(name: str) -> str:
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidInput(
            f"key name must be at most {MAX_NAME_CHARS} printable characters "
            f"(got {len(name)} characters)"
        )
    return name


class ApiKeyStore:
    """Create, list, revoke and resolve API keys on memq's Redis."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.r = client
        self.keys = Keys(prefix)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ApiKeyStore:
        return cls(redis.Redis.from_url(settings.redis_url), prefix=settings.key_prefix)

    def close(self) -> None:
        self.r.close()

    def create(self, tenant: str, name: str = "") -> CreatedApiKey:
        """A new key for `tenant`; its plaintext is in the result and nowhere else."""
        validate_tenant(tenant)
        _validate_name(name)
        while True:
            key_id = secrets.token_hex(6)
            key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            created_at = datetime.now(UTC)
            digest = key_digest(key)
            fields: dict[FieldT, EncodableT] = {
                "digest": digest,
                "tenant": tenant,
                "name": name,
                "created_at": created_at.isoformat(),
            }
            # HSETNX on the digest claims the id; another key with the same id (one in 2^48
            # per pair) would be overwritten otherwise.
            if self.r.hsetnx(self.keys.api_key(key_id), "digest", digest):
                break
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.api_key(key_id), mapping=fields)
        pipe.zadd(self.keys.api_keys(), {key_id: created_at.timestamp()})
        pipe.execute()
        return CreatedApiKey(
            id=key_id,
            prefix=f"{KEY_PREFIX}{key_id}",
            tenant=tenant,
            name=name,
            created_at=created_at,
            key=key,
        )

    def list(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        """Every key (of `tenant`, when given), oldest first, without secrets."""
        if tenant is not None:
            validate_tenant(tenant)
        members: Any = self.r.zrange(self.keys.api_keys(), 0, -1)
        ids = [as_text(i) for i in members]
        pipe = self.r.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(self.keys.api_key(key_id))
        found = []
        for key_id, raw in zip(ids, pipe.execute(), strict=True):
            info = self._info(key_id, raw)
            if info is not None and (tenant is None or info.tenant == tenant):
                found.append(info)
        return found

    def revoke(self, prefix_or_id: str) -> ApiKeyInfo | None:
        """Delete a key; returns what it was, or None when no such key exists."""
        key_id = key_id_of(prefix_or_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(self.keys.api_key(key_id))
        pipe.delete(self.keys.api_key(key_id))
        pipe.zrem(self.keys.api_keys(), key_id)
        raw, _, _ = pipe.execute()
        return self._info(key_id, raw)

    def resolve(self, key: str) -> ApiKeyInfo | None:
        """The key's record when `key` is a live key, else None."""
        found = KEY_PATTERN.fullmatch(key)
        if found is None:
            return None
        key_id = found.group(1)
        raw: dict[Any, Any] = self.r.hgetall(self.keys.api_key(key_id))
        stored = raw.get(b"digest") or raw.get("digest")
        if stored is None:
            return None
        # The id is public, so an attacker can aim at one record: compare without leaking
        # through timing how much of the digest matched.
        if not hmac.compare_digest(as_text(stored).encode(), key_digest(key).encode()):
            return None
        return self._info(key_id, raw)

    def any_keys(self) -> bool:
        return bool(self.r.zcard(self.keys.api_keys()))

    @staticmethod
    def _info(key_id: str, raw: Any) -> ApiKeyInfo | None:
        fields = {as_text(k): as_text(v) for k, v in (raw or {}).items()}
        if "tenant" not in fields:
            return None
        return ApiKeyInfo(
            id=key_id,
            prefix=f"{KEY_PREFIX}{key_id}",
            tenant=fields["tenant"],
            name=fields.get("name", ""),
            created_at=datetime.fromisoformat(fields["created_at"]),
        )
