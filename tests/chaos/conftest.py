"""Clients of the stack each chaos module starts for itself (its `stack` fixture, made by
tests/utils/stack.py with `kills=True`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from memq.ops.launcher import Stack
from memq.sdk import Client
from memq.store.jobs import JobStore


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.gateway_url) as c:
        yield c


@pytest.fixture
def store(stack: Stack) -> Iterator[JobStore]:
    """The stack's job records as they are in Redis, for counting what was committed."""
    s = JobStore(redis.Redis.from_url(stack.redis_url), prefix=stack.key_prefix)
    yield s
    s.r.close()
