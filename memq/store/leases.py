"""Who holds which job: leases, worker heartbeats and the reconciler lock, in Redis.

Delivery (see docs/reliability.md): a worker takes a job's *lease* when the broker hands
it the message and renews it while it holds the job; a job that is unfinished, not
waiting in a queue and not leased has lost its worker, and the reconciler (worker/
reconciler.py, one worker at a time: the reconciler lock) sends it again. `JobStore.start`
takes the lease in the same script as the transition to running.

Keys (memq.store.keys): `lease`, `workers`, `reconciler`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from memq.store import lua
from memq.store.keys import Keys, as_text

DEFAULT_LEASE_TTL_S = 10.0


class LeaseStore:
    """Job leases (`ttl_ms` long unless renewed), heartbeats and the reconciler lock."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, ttl_s: float = DEFAULT_LEASE_TTL_S
    ) -> None:
        self.r = client
        self.keys = keys
        self.ttl_ms = int(ttl_s * 1000)
        self._lease = client.register_script(lua.LEASE)

    def take(self, tenant: str, job_id: str, worker: str) -> bool:
        """Lease a job for `worker` unless another worker holds it."""
        lease_key = self.keys.lease(tenant, job_id)
        return bool(self._lease(keys=[lease_key], args=[worker, self.ttl_ms, "take"]))

    def renew(self, jobs: Sequence[tuple[str, str]], worker: str) -> list[bool]:
        """Extend `worker`'s leases; False for a job whose lease it no longer holds."""
        if not jobs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tenant, job_id in jobs:
            self._lease(
                keys=[self.keys.lease(tenant, job_id)],
                args=[worker, self.ttl_ms, "renew"],
                client=pipe,
            )
        return [bool(v) for v in pipe.execute()]

    def release(self, tenant: str, job_id: str, worker: str) -> None:
        self._lease(keys=[self.keys.lease(tenant, job_id)], args=[worker, 0, "release"])

    def leased(self, jobs: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each job is held by a live worker, in one round trip."""
        if not jobs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tenant, job_id in jobs:
            pipe.exists(self.keys.lease(tenant, job_id))
        return [bool(v) for v in pipe.execute()]

    def heartbeat(self, worker: str) -> None:
        self.r.zadd(self.keys.workers(), {worker: time.time()})

    def forget_worker(self, worker: str) -> None:
        self.r.zrem(self.keys.workers(), worker)

    def live_workers(self, within_s: float) -> list[str]:
        """Workers whose last heartbeat is at most `within_s` old (older ones are pruned)."""
        cutoff = time.time() - within_s
        pipe = self.r.pipeline(transaction=False)
        pipe.zremrangebyscore(self.keys.workers(), "-inf", f"({cutoff - 3600}")
        pipe.zrangebyscore(self.keys.workers(), cutoff, "+inf")
        found: Any = pipe.execute()[1]
        return [as_text(w) for w in found]

    def lock_reconciler(self, worker: str, ttl_s: float) -> bool:
        """Hold the reconciler lock for `ttl_s` (taken or renewed); one worker reconciles."""
        lock = self.keys.reconciler()
        return bool(self._lease(keys=[lock], args=[worker, int(ttl_s * 1000), "take"]))
