"""API keys on a real Redis: stored as digests only, listed without secrets, revoked by
prefix or id, resolved to their tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from memq.errors import InvalidInput
from memq.store.keystore import KEY_PATTERN, ApiKeyStore, key_digest


@pytest.fixture
def keys(redis_client: redis.Redis) -> Iterator[ApiKeyStore]:
    yield ApiKeyStore(redis_client, prefix="memq")


def _everything_stored(client: redis.Redis) -> bytes:
    """Every key name and value in the database, concatenated."""
    out = b""
    for name in client.scan_iter():
        out += name
        kind = client.type(name)
        value: Any
        if kind == b"hash":
            value = client.hgetall(name)
            out += b"".join(k + v for k, v in value.items())
        elif kind == b"zset":
            out += b"".join(client.zrange(name, 0, -1))
        elif kind == b"string":
            out += client.get(name) or b""
    return out


def test_create_returns_the_key_once_and_stores_only_its_digest(
    keys: ApiKeyStore, redis_client: redis.Redis
) -> None:
    created = keys.create("acme", name="ci")
    assert KEY_PATTERN.fullmatch(created.key)
    assert created.key.startswith(created.prefix + "_")
    assert (created.tenant, created.name) == ("acme", "ci")
    stored = _everything_stored(redis_client)
    secret = created.key.removeprefix(created.prefix + "_")
    assert secret.encode() not in stored
    assert created.key.encode() not in stored
    assert key_digest(created.key).encode() in stored


def test_resolve_gives_the_tenant_of_a_live_key_only(keys: ApiKeyStore) -> None:
    acme = keys.create("acme")
    beta = keys.create("beta")
    assert keys.resolve(acme.key).tenant == "acme"  # type: ignore[union-attr]
    assert keys.resolve(beta.key).tenant == "beta"  # type: ignore[union-attr]
    # The right id with another secret: the record is found, the digest does not match.
    forged = acme.prefix + "_" + "A" * 43
    assert keys.resolve(forged) is None
    assert keys.resolve("not-a-memq-key") is None
    assert keys.resolve(acme.key + "x") is None


def test_list_shows_no_secret_and_filters_by_tenant(keys: ApiKeyStore) -> None:
    first = keys.create("acme", name="one")
    second = keys.create("beta", name="two")
    third = keys.create("acme", name="three")
    listed = keys.list()
    assert [k.id for k in listed] == [first.id, second.id, third.id]
    for info in listed:
        dumped = info.model_dump_json()
        assert "key" not in info.model_dump()
        assert "digest" not in dumped
        assert first.key not in dumped and third.key not in dumped
    assert [k.name for k in keys.list("acme")] == ["one", "three"]
    assert keys.list("nobody") == []


def test_revoke_by_prefix_or_id_and_the_key_stops_resolving(keys: ApiKeyStore) -> None:
    by_prefix = keys.create("acme")
    by_id = keys.create("acme")
    kept = keys.create("acme")
    revoked = keys.revoke(by_prefix.prefix)
    assert revoked is not None and revoked.id == by_prefix.id
    assert keys.revoke(by_id.id) is not None
    assert keys.resolve(by_prefix.key) is None
    assert keys.resolve(by_id.key) is None
    assert keys.resolve(kept.key) is not None
    assert [k.id for k in keys.list()] == [kept.id]
    assert keys.revoke(by_prefix.prefix) is None  # already gone


def test_any_keys_follows_creation_and_revocation(keys: ApiKeyStore) -> None:
    assert not keys.any_keys()
    created = keys.create("acme")
    assert keys.any_keys()
    keys.revoke(created.id)
    assert not keys.any_keys()


@pytest.mark.parametrize("tenant", ["", "has space", "x" * 129, "semi;colon"])
def test_a_bad_tenant_is_refused_with_the_rule(keys: ApiKeyStore, tenant: str) -> None:
    with pytest.raises(InvalidInput, match="1-128 characters"):
        keys.create(tenant)
    assert not keys.any_keys()


def test_a_bad_name_is_refused(keys: ApiKeyStore) -> None:
    with pytest.raises(InvalidInput, match="128 printable"):
        keys.create("acme", name="x" * 129)
    with pytest.raises(InvalidInput, match="printable"):
        keys.create("acme", name="line\nbreak")


@pytest.mark.parametrize("bad", ["", "mq_", "mq_XYZ", "abc", "mq_0123456789ab_short"])
def test_revoke_of_something_that_is_no_prefix_is_invalid_input(
    keys: ApiKeyStore, bad: str
) -> None:
    with pytest.raises(InvalidInput, match="PREFIX column"):
        keys.revoke(bad)


def test_keys_live_under_the_configured_prefix(redis_client: redis.Redis) -> None:
    store = ApiKeyStore(redis_client, prefix="other")
    created = store.create("acme")
    assert redis_client.exists(f"other:apikey:{created.id}")
    assert not ApiKeyStore(redis_client, prefix="memq").any_keys()
