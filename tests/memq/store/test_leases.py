"""Leases, heartbeats and the reconciler lock on a real Redis (memq.store.leases), reached
as callers reach them: `JobStore.leases`."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import redis

from memq.store import leases
from memq.store.jobs import JobStore


def test_leases_are_taken_renewed_and_released_only_by_their_holder(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, lease_ttl_s=5)
    assert store.leases.take("acme", "x", "w1")
    assert not store.leases.take("acme", "x", "w2")
    assert store.leases.take("acme", "x", "w1")  # idempotent for the holder
    assert store.leases.renew([("acme", "x"), ("acme", "y")], "w1") == [True, False]
    assert store.leases.renew([("acme", "x")], "w2") == [False]
    store.leases.release("acme", "x", "w2")  # not the holder: no effect
    assert store.leases.leased([("acme", "x"), ("acme", "y")]) == [True, False]
    store.leases.release("acme", "x", "w1")
    assert store.leases.leased([("acme", "x")]) == [False]
    assert store.leases.renew([], "w1") == [] and store.leases.leased([]) == []


def test_worker_heartbeats_tell_which_workers_are_live(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.leases.heartbeat("w1")
    redis_client.zadd(store.keys.workers(), {"old": time.time() - 60})
    assert store.leases.live_workers(within_s=10) == ["w1"]
    store.leases.forget_worker("w1")
    assert store.leases.live_workers(within_s=10) == []


def test_one_worker_at_a_time_holds_the_reconciler_lock(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    assert store.leases.lock_reconciler("w1", ttl_s=5)
    assert not store.leases.lock_reconciler("w2", ttl_s=5)
    assert store.leases.lock_reconciler("w1", ttl_s=5)
    redis_client.delete(store.keys.reconciler())
    assert store.leases.lock_reconciler("w2", ttl_s=5)


def test_lease_and_lock_lifetimes_are_the_ones_asked_for(redis_client: redis.Redis) -> None:
    # Lifetimes of ~11.6 days: a millisecond-rounding mistake would be off by minutes.
    store = JobStore(redis_client, lease_ttl_s=1_000_000)
    assert store.leases.take("acme", "x", "w1") is True
    lease = store.keys.lease("acme", "x")
    assert 999_000_000 < redis_client.pttl(lease) <= 1_000_000_000
    redis_client.pexpire(lease, 5_000)
    assert store.leases.renew([("acme", "x")], "w1") == [True]
    assert 999_000_000 < redis_client.pttl(lease) <= 1_000_000_000
    assert store.leases.lock_reconciler("w1", ttl_s=2_000_000) is True
    assert 1_999_000_000 < redis_client.pttl(store.keys.reconciler()) <= 2_000_000_000
    assert store.leases.lock_reconciler("w2", ttl_s=5) is False


def test_live_workers_prune_heartbeats_older_than_an_hour_past_the_window(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1_700_000_000.0
    monkeypatch.setattr(leases, "time", SimpleNamespace(time=lambda: now))
    store = JobStore(redis_client)
    store.leases.heartbeat("live")
    assert redis_client.zscore(store.keys.workers(), "live") == now
    cutoff = now - 10
    redis_client.zadd(
        store.keys.workers(),
        {
            "edge": cutoff,
            "recent": cutoff - 1,
            "kept": cutoff - 3599.5,
            "pruned": cutoff - 3600.5,
        },
    )
    assert store.leases.live_workers(within_s=10) == ["edge", "live"]
    left = [w.decode() for w in redis_client.zrange(store.keys.workers(), 0, -1)]
    assert left == ["kept", "recent", "edge", "live"]
    store.leases.forget_worker("live")
    assert store.leases.live_workers(within_s=10) == ["edge"]
