"""The key schema (memq.store.keys): every key, prefixed and tenant-scoped."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from memq.settings import DEFAULT_KEY_PREFIX, CommonSettings
from memq.store.keys import Keys, as_text


def test_key_schema_is_tenant_scoped_and_prefixed() -> None:
    keys = Keys("pfx")
    assert keys.job("acme", "j") == "pfx:acme:job:j"
    assert keys.progress("acme", "j") == "pfx:acme:job:j:progress"
    assert keys.events("acme", "j") == "pfx:acme:job:j:events"
    assert keys.index("acme") == "pfx:acme:jobs"
    assert keys.model() == "pfx:model"


def test_every_key_of_the_schema() -> None:
    keys = Keys("pfx")
    digest = hashlib.sha256(b"key-1").hexdigest()
    assert {
        "job": keys.job("acme", "j"),
        "progress": keys.progress("acme", "j"),
        "events": keys.events("acme", "j"),
        "lease": keys.lease("acme", "j"),
        "index": keys.index("acme"),
        "session": keys.session("acme", "s1"),
        "idempotency": keys.idempotency("acme", "key-1"),
        "tenant_active": keys.tenant_active("acme"),
        "active": keys.active(),
        "active_member": keys.active_member("acme", "j"),
        "workers": keys.workers(),
        "reconciler": keys.reconciler(),
        "model": keys.model(),
        "api_key": keys.api_key("k1"),
        "api_keys": keys.api_keys(),
        "rate_limits": keys.rate_limits(),
        "webhook_secret": keys.webhook_secret("acme"),
        "metrics": keys.metrics(),
        "file": keys.file("acme", "f1"),
        "files": keys.files("acme"),
        "batch": keys.batch("acme", "b1"),
        "batch_lines": keys.batch_lines("acme", "b1"),
        "batch_pending": keys.batch_pending("acme", "b1"),
        "batch_lease": keys.batch_lease("acme", "b1"),
        "batches": keys.batches("acme"),
        "active_batches": keys.active_batches(),
        "adapter": keys.adapter("acme", "a1"),
        "adapters": keys.adapters("acme"),
        "forgotten_namespaces": keys.forgotten_namespaces("acme"),
    } == {
        "job": "pfx:acme:job:j",
        "progress": "pfx:acme:job:j:progress",
        "events": "pfx:acme:job:j:events",
        "lease": "pfx:acme:job:j:lease",
        "index": "pfx:acme:jobs",
        "session": "pfx:acme:session:s1",
        "idempotency": f"pfx:acme:idem:{digest}",
        "tenant_active": "pfx:acme:active",
        "active": "pfx:active",
        "active_member": "acme/j",
        "workers": "pfx:workers",
        "reconciler": "pfx:reconciler",
        "model": "pfx:model",
        "api_key": "pfx:apikey:k1",
        "api_keys": "pfx:apikeys",
        "rate_limits": "pfx:ratelimit",
        "webhook_secret": "pfx:acme:webhook_secret",
        "metrics": "pfx:metrics",
        "file": "pfx:acme:file:f1",
        "files": "pfx:acme:files",
        "batch": "pfx:acme:batch:b1",
        "batch_lines": "pfx:acme:batch:b1:lines",
        "batch_pending": "pfx:acme:batch:b1:pending",
        "batch_lease": "pfx:acme:batch:b1:lease",
        "batches": "pfx:acme:batches",
        "active_batches": "pfx:batches:active",
        "adapter": "pfx:acme:adapter:a1",
        "adapters": "pfx:acme:adapters",
        "forgotten_namespaces": "pfx:acme:forgotten",
    }


def test_keys_are_an_immutable_value_with_the_settings_default_prefix() -> None:
    keys = Keys("pfx")
    with pytest.raises(dataclasses.FrozenInstanceError):
        keys.prefix = "other"  # type: ignore[misc]
    assert Keys() == Keys(DEFAULT_KEY_PREFIX) == Keys("memq")
    assert CommonSettings().key_prefix == DEFAULT_KEY_PREFIX


def test_a_reply_is_text_whether_the_client_decodes_or_not() -> None:
    assert as_text(b"caf\xc3\xa9") == "café"
    assert as_text("café") == "café"
