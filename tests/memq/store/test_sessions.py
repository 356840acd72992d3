"""Chat-session bookkeeping on a real Redis (memq.store.sessions): turn numbers, summary
claims, and the ids of a session's memories."""

from __future__ import annotations

import uuid

import redis

from memq.contracts import ChatRole
from memq.store.jobs import JobStore
from memq.store.sessions import message_id, summary_id


def test_session_turns_are_reserved_once_per_job_and_summaries_only_move_forward(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    assert store.sessions.state("acme", "s") == (0, 0)
    assert store.sessions.reserve_turns("acme", "s", "j1", 2) == 1
    assert store.sessions.reserve_turns("acme", "s", "j2", 3) == 3
    assert store.sessions.reserve_turns("acme", "s", "j1", 2) == 1  # a redelivery: the same turns
    assert store.sessions.state("acme", "s") == (5, 0)
    store.sessions.summarized("acme", "s", 3)
    assert store.sessions.state("acme", "s") == (5, 3)
    store.sessions.summarized("acme", "s", 2)
    assert store.sessions.state("acme", "s") == (5, 3)
    assert store.sessions.state("beta", "s") == (0, 0)
    store.sessions.forget("acme", "s")
    assert store.sessions.state("acme", "s") == (0, 0)
    assert redis_client.exists(store.keys.session("acme", "s")) == 0


def test_one_rolling_summary_claim_per_session_until_it_is_done(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    assert store.sessions.claim_summary("acme", "s", ttl_s=600) is True
    assert store.sessions.claim_summary("acme", "s", ttl_s=600) is False
    assert store.sessions.claim_summary("acme", "other", ttl_s=600) is True
    store.sessions.summarized("acme", "s", 4)  # done: the claim is dropped
    assert store.sessions.claim_summary("acme", "s", ttl_s=600) is True


def test_memory_ids_derive_from_the_job_and_the_session() -> None:
    user, assistant = message_id("j1", ChatRole.user), message_id("j1", ChatRole.assistant)
    assert user == message_id("j1", ChatRole.user)  # a redelivery writes the same memory
    assert len({user, assistant, message_id("j2", ChatRole.user)}) == 3
    assert summary_id("s1") == summary_id("s1") != summary_id("s2")
    assert str(uuid.UUID(user)) == user and uuid.UUID(summary_id("s1")).version == 5
