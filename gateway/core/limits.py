"""Request limits: a per-API-key rate limit (the `limits` library, moving window, counted on
memq's Redis so every gateway process shares it) and queue-depth backpressure on job
submission. Both refuse before anything is recorded, with Retry-After."""

from __future__ import annotations

import math
import time

import limits
import redis
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from gateway.core.config import GatewaySettings
from gateway.core.errors import QueueFull, RateLimited
from memq.broker import job_queues
from memq.store.keys import Keys

QUEUE_FULL_RETRY_AFTER_S = 5


class RateLimiter:
    """At most `rate` requests per caller in any window of the rate's length (a moving
    window: no double burst at a window boundary)."""

    def __init__(self, client: redis.Redis, rate: str, key_prefix: str) -> None:
        self.rate = limits.parse(rate)
        storage = RedisStorage(
            "redis://", connection_pool=client.connection_pool, key_prefix=key_prefix
        )
        self._limiter = MovingWindowRateLimiter(storage)

    def hit(self, caller: str) -> None:
        """Count one request of `caller`; RateLimited (nothing counted) when over the rate."""
        if self._limiter.hit(self.rate, caller):
            return
        stats = self._limiter.get_window_stats(self.rate, caller)
        # reset_time is when the oldest request in the window leaves it (epoch seconds).
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"rate limit reached: {self.rate.amount} requests per {self._window()} per API key "
            f"(MEMQ_RATE_LIMIT); retry after {retry_after} s",
            retry_after,
        )

    def _window(self) -> str:
        unit = self.rate.GRANULARITY.name
        return unit if self.rate.multiples == 1 else f"{self.rate.multiples} {unit}s"


class QueueDepthGuard:
    """Refuses new jobs while the job queues hold `max_depth` messages. The check and the
    enqueue are not atomic, so concurrent submissions can pass the bound by a few: it is
    backpressure, not an exact cap."""

    def __init__(self, client: redis.Redis, queues: list[str], max_depth: int) -> None:
        self.r = client
        self.queues = queues
        self.max_depth = max_depth

    def depth(self) -> int:
        pipe = self.r.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
        return sum(int(n) for n in pipe.execute())

    def check(self) -> None:
        depth = self.depth()
        if depth >= self.max_depth:
            raise QueueFull(
                f"the job queues are full: {depth:,} jobs waiting (MEMQ_MAX_QUEUE_DEPTH = "
                f"{self.max_depth:,}); nothing was accepted, retry after "
                f"{QUEUE_FULL_RETRY_AFTER_S} s",
                QUEUE_FULL_RETRY_AFTER_S,
            )


class Limits:
    """The gateway's limits, built once in the lifespan."""

    def __init__(self, rate: RateLimiter | None, queue: QueueDepthGuard) -> None:
        self.rate = rate
        self.queue = queue

    @classmethod
    def from_settings(cls, settings: GatewaySettings, client: redis.Redis) -> Limits:
        rate = None
        if settings.rate_limit:
            prefix = Keys(settings.key_prefix).rate_limits()
            rate = RateLimiter(client, settings.rate_limit, prefix)
        return cls(rate, QueueDepthGuard(client, job_queues(settings), settings.max_queue_depth))

    def hit(self, caller: str) -> None:
        if self.rate is not None:
            self.rate.hit(caller)
