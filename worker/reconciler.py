"""Leases and the reconciler: a lost worker's jobs come back in seconds, and a message the
broker lost is sent again.

Each worker process holds a *lease* on every job the broker handed it (taken when the
message arrives, renewed by a heartbeat thread, released when the task ends). One worker
at a time (a Redis lock) also runs the reconciler, which looks at every unfinished job:

    finished                                → drop it from the unfinished index
    leased by a live worker                 → fine
    its message waits in a queue            → fine (queued jobs may wait long)
    neither, for longer than a grace period → its worker is gone or its message was lost:
        queued longer than `max_queued_s`    → fail it with `expired`
        otherwise                           → forget the dead worker's unacknowledged
                                              delivery and send the job again (same id)

Sending a job twice is safe: the job store starts it only when it is unfinished and not
leased by another worker, and commits its result once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import redis

from memq.broker import drop_unacked, unacked_job_ids, waiting_job_ids
from memq.contracts import ErrorResponse, JobStatus
from memq.store.jobs import JobStore

log = logging.getLogger("memq.worker.reconciler")

Job = tuple[str, str]  # (tenant, job id)
SendJob = Callable[[str, str], None]


class LeaseKeeper:
    """The jobs this worker process holds, and the heartbeat that keeps their leases."""

    def __init__(self, store: JobStore, worker_id: str) -> None:
        self.store = store
        self.worker_id = worker_id
        self._held: set[Job] = set()
        self._lock = threading.Lock()

    def hold(self, tenant: str, job_id: str) -> bool:
        """Lease the job for this worker; False when another live worker holds it."""
        with self._lock:
            self._held.add((tenant, job_id))
        return self.store.leases.take(tenant, job_id, self.worker_id)

    def release(self, tenant: str, job_id: str) -> None:
        with self._lock:
            self._held.discard((tenant, job_id))
        self.store.leases.release(tenant, job_id, self.worker_id)

    def held(self) -> list[Job]:
        with self._lock:
            return list(self._held)

    def beat(self) -> None:
        """One heartbeat: this worker is alive and still holds its jobs."""
        self.store.leases.heartbeat(self.worker_id)
        jobs = self.held()
        for job, renewed in zip(jobs, self.store.leases.renew(jobs, self.worker_id), strict=True):
            if not renewed:
                # Our lease lapsed (e.g. Redis restarted without it, or we stalled past the
                # TTL): take it again unless another worker got the job meanwhile.
                self.store.leases.take(job[0], job[1], self.worker_id)


class Reconciler:
    def __init__(
        self,
        store: JobStore,
        send: SendJob,
        queues: Sequence[str],
        *,
        worker_id: str,
        grace_s: float,
        max_queued_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.send = send
        self.queues = list(queues)
        self.worker_id = worker_id
        self.grace_s = grace_s
        self.max_queued_s = max_queued_s
        self.clock = clock
        self._missing_since: dict[Job, float] = {}

    @property
    def _redis(self) -> redis.Redis:
        return self.store.r

    def tick(self) -> list[Job]:
        """One pass over every unfinished job; returns the jobs sent again."""
        now = self.clock()
        active = self.store.active_jobs()
        statuses = self.store.statuses(active)
        leased = self.store.leases.leased(active)
        waiting = waiting_job_ids(self._redis, self.queues)
        unacked = unacked_job_ids(self._redis)
        resent: list[Job] = []
        seen: set[Job] = set()
        for job, status, has_lease in zip(active, statuses, leased, strict=True):
            tenant, job_id = job
            seen.add(job)
            if status is None or status.terminal:
                self.store.drop_active(tenant, job_id)
                continue
            if has_lease or job_id in waiting:
                self._missing_since.pop(job, None)
                continue
            first = self._missing_since.setdefault(job, now)
            if now - first < self.grace_s:
                continue
            self._missing_since.pop(job, None)
            if self._expire_if_too_old(tenant, job_id, status):
                continue
            drop_unacked(self._redis, unacked.get(job_id, []))
            log.warning(
                "job %s (%s): no worker holds it and no queue has it; sending it again",
                job_id,
                status.value,
            )
            self.send(tenant, job_id)
            resent.append(job)
        for job in list(self._missing_since):
            if job not in seen:
                del self._missing_since[job]
        return resent

    def _expire_if_too_old(self, tenant: str, job_id: str, status: JobStatus) -> bool:
        if status != JobStatus.queued:
            return False
        record = self.store.get(tenant, job_id)
        if record is None:
            return True
        age = (datetime.now(UTC) - record.created_at).total_seconds()
        if age <= self.max_queued_s:
            return False
        self.store.fail(
            record,
            ErrorResponse(
                error="expired",
                message=f"the job waited {age:,.0f} s without running (limit "
                f"MEMQ_MAX_QUEUED_S={self.max_queued_s:,.0f}); submit it again",
            ),
        )
        return True


class Housekeeper:
    """The worker's background thread: heartbeat every `interval_s`, and the reconciler
    when this worker holds the reconciler lock."""

    def __init__(
        self, leases: LeaseKeeper, reconciler: Reconciler, interval_s: float, every: int = 2
    ) -> None:
        self.leases = leases
        self.reconciler = reconciler
        self.interval_s = interval_s
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memq-housekeeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(redis.RedisError):
            self.leases.store.leases.forget_worker(self.leases.worker_id)

    def _run(self) -> None:
        beats = 0
        while not self._stop.is_set():
            try:
                self.leases.beat()
                beats += 1
                if beats % self.every == 0 and self.leases.store.leases.lock_reconciler(
                    self.leases.worker_id, ttl_s=self.interval_s * self.every * 3
                ):
                    self.reconciler.tick()
            except redis.RedisError as exc:
                log.warning("housekeeping: redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("housekeeping failed; retrying")
            self._stop.wait(self.interval_s)
