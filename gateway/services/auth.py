"""Who is calling: API keys (stored in Redis, or bootstrapped from `MEMQ_API_KEYS`) resolved
to tenants, with a short cache so a request is not a Redis round trip.

Authentication is on as soon as any key exists (stored or bootstrapped) or
`MEMQ_REQUIRE_API_KEY=true`; with none anywhere every caller is tenant `default`.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.config import GatewaySettings
from memq.errors import Unauthorized
from memq.settings import DEFAULT_TENANT
from memq.store.keystore import ApiKeyStore, key_digest, key_prefix_of

MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its tenant and what rate limits count against."""

    tenant: str
    limit_key: str


class Authenticator:
    """Resolves API keys. A resolved key is cached for `cache_s`, so a revoked key stops
    working at most `cache_s` seconds after `memq keys revoke`; unknown keys are not
    cached, so a new key works at once."""

    def __init__(
        self,
        keystore: ApiKeyStore,
        bootstrap: dict[str, str],
        *,
        require_key: bool = False,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keystore = keystore
        # Digests, so every comparison is between equal-length strings.
        self._bootstrap = [(key_digest(k), t) for k, t in bootstrap.items()]
        self._require_key = require_key or bool(bootstrap)
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, tuple[str, float]] = {}
        self._stored_keys: tuple[bool, float] | None = None

    @classmethod
    def from_settings(cls, settings: GatewaySettings, keystore: ApiKeyStore) -> Authenticator:
        return cls(
            keystore,
            settings.api_keys,
            require_key=settings.require_api_key,
            cache_s=settings.api_key_cache_s,
        )

    def required(self) -> bool:
        """Whether a caller must present a key (cached like keys are)."""
        if self._require_key:
            return True
        now = self._clock()
        with self._lock:
            if self._stored_keys is not None and now < self._stored_keys[1]:
                return self._stored_keys[0]
        exists = self.keystore.any_keys()
        with self._lock:
            self._stored_keys = (exists, now + self.cache_s)
        return exists

    def authenticate(self, key: str | None) -> Caller:
        """The caller presenting `key` (None: no key sent); Unauthorized when it must
        present a valid one."""
        if key is None:
            if self.required():
                raise Unauthorized(
                    "missing API key: send `Authorization: Bearer <key>` (or `X-API-Key: <key>`)"
                )
            return Caller(DEFAULT_TENANT, f"tenant:{DEFAULT_TENANT}")
        digest = key_digest(key)
        tenant = self._lookup(key, digest)
        if tenant is not None:
            return Caller(tenant, f"key:{digest[:32]}")
        if not self.required():
            # No key exists anywhere: a stray key (e.g. a leftover MEMQ_API_KEY) is ignored.
            return Caller(DEFAULT_TENANT, f"tenant:{DEFAULT_TENANT}")
        shown = key_prefix_of(key)
        named = f"API key {shown}" if shown else "the API key"
        raise Unauthorized(
            f"{named} is unknown or revoked: ask the operator for a valid key "
            "(`memq keys create --tenant NAME`)"
        )

    def _lookup(self, key: str, digest: str) -> str | None:
        found = None
        # Every bootstrap key is compared, so timing does not tell which one nearly matched.
        for known, tenant in self._bootstrap:
            if hmac.compare_digest(known, digest):
                found = tenant
        if found is not None:
            return found
        now = self._clock()
        with self._lock:
            cached = self._tenants.get(digest)
            if cached is not None and now < cached[1]:
                return cached[0]
        info = self.keystore.resolve(key)
        if info is None:
            with self._lock:
                self._tenants.pop(digest, None)
            return None
        with self._lock:
            if len(self._tenants) >= MAX_CACHED_KEYS:
                self._tenants = {d: v for d, v in self._tenants.items() if now < v[1]}
                if len(self._tenants) >= MAX_CACHED_KEYS:
                    self._tenants.clear()
            self._tenants[digest] = (info.tenant, now + self.cache_s)
        return info.tenant
