"""Payload fields both backends index, besides the tenant (indexed with `is_tenant`)."""

from __future__ import annotations

from memory_service.store.base import TENANT_KEY

KEYWORD_FIELDS = ("memory_id", "namespace", "kind", "content_hash")
FLOAT_FIELDS = ("created_ts", "expires_ts")

__all__ = ["FLOAT_FIELDS", "KEYWORD_FIELDS", "TENANT_KEY"]
