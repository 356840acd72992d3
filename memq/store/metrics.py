"""The Redis side of memq.metrics: the shared counters every process adds to, and the
gauges the gateway's `/metrics` reads live at scrape time (queue depths, unfinished jobs).

Keys (memq.store.keys): `metrics`, `active`; the Celery queues (lists, not memq's keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from memq.metrics import MetricUpdate
from memq.store.keys import Keys, as_text


class MetricStore:
    """Counters and histogram buckets in one hash (field names: memq.metrics)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def add(self, update: MetricUpdate) -> None:
        """Count `update` into the shared metrics (atomically: a scrape sees all or none)."""
        if not update:
            return
        key = self.keys.metrics()
        pipe = self.r.pipeline(transaction=True)
        for field, amount in update.counts.items():
            pipe.hincrby(key, field, amount)
        for field, value in update.sums.items():
            pipe.hincrbyfloat(key, field, value)
        pipe.execute()

    def read(self) -> dict[str, float]:
        raw: Any = self.r.hgetall(self.keys.metrics())
        return {as_text(k): float(v) for k, v in raw.items()}

    def queue_depths(self, queues: Mapping[str, str]) -> dict[str, int]:
        """Messages waiting in each queue (label → Redis list of the queue)."""
        pipe = self.r.pipeline(transaction=False)
        for queue in queues.values():
            pipe.llen(queue)
        return {label: int(n) for label, n in zip(queues, pipe.execute(), strict=True)}

    def unfinished_total(self) -> int:
        """Unfinished jobs of every tenant (the reconciler's index)."""
        count: Any = self.r.zcard(self.keys.active())
        return int(count)
