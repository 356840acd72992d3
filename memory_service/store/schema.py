"""Payload fields both backends index, besides the tenant (indexed with `is_tenant`)."""

from __future__ import annotations

from memory_service.store.base import TENANT_KEY

# Every query filters on namespace and expiry; dedup looks up content_hash. Each index
# adds files to fsync on flush, so fields filtered only occasionally (kind) stay unindexed.
KEYWORD_FIELDS = ("namespace", "content_hash")
FLOAT_FIELDS = ("created_ts", "expires_ts")

__all__ = ["FLOAT_FIELDS", "KEYWORD_FIELDS", "TENANT_KEY"]
