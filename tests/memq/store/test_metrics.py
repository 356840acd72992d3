"""The shared metrics on a real Redis (memq.store.metrics): counted in one transaction,
read back, and the live gauges."""

from __future__ import annotations

import redis

from memq import metrics
from memq.contracts import GenerateJobRequest
from memq.store.jobs import JobStore
from tests.utils.redis_monitor import commands_since


def test_metrics_are_added_in_one_transaction_and_read_back(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    update = metrics.MetricUpdate(counts={"a": 2, "b": 1}, sums={"s": 0.5})
    with redis_client.monitor() as monitor:
        store.metrics.add(update)
        store.metrics.add(metrics.MetricUpdate())  # nothing to count: no round trip
        commands = commands_since(monitor, redis_client)
    assert commands == ["MULTI", "HINCRBY", "HINCRBY", "HINCRBYFLOAT", "EXEC"]
    store.metrics.add(metrics.MetricUpdate(counts={"a": 3}, sums={"s": 0.25}))
    assert store.metrics.read() == {"a": 5.0, "b": 1.0, "s": 0.75}


def test_queue_depths_and_unfinished_total(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    redis_client.rpush("q.high", "m1", "m2")
    redis_client.rpush("q", "m3")
    depths = store.metrics.queue_depths({"high": "q.high", "normal": "q", "low": "q.low"})
    assert depths == {"high": 2, "normal": 1, "low": 0}
    assert store.metrics.unfinished_total() == 0
    store.create("acme", "u1", GenerateJobRequest(prompt="hi"))
    store.create("beta", "u2", GenerateJobRequest(prompt="hi"))
    assert store.metrics.unfinished_total() == 2
