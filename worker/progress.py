"""Progress publishing off the decode loop.

Engines call `on_token` from their scheduler thread once per token per row; Redis I/O
there would stall every sequence in the batch. Callbacks only enqueue; one thread drains
the queue, publishes every token event and keeps the latest progress per job, all in one
pipeline per round. (A late write after the job finished is harmless: progress is only
read while a job is running, and the key expires.)
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from memq.jobstore import JobStore

log = logging.getLogger("memq.worker.progress")

_Item = tuple[str, str, int, str]


class ProgressPublisher:
    def __init__(self, store: JobStore, interval_s: float = 0.05) -> None:
        self.store = store
        self.interval_s = interval_s
        self._q: queue.SimpleQueue[_Item | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="memq-progress", daemon=True)
        self._thread.start()

    def token(self, tenant: str, job_id: str, tokens: int, text: str) -> None:
        self._q.put((tenant, job_id, tokens, text))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every token enqueued so far is written: a job's last token event
        must reach subscribers before its terminal status event."""
        done = threading.Event()
        self._q.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            batch = [self._q.get()]
            while not self._q.empty():
                batch.append(self._q.get_nowait())
            items = [b for b in batch if isinstance(b, tuple)]
            if items:
                self._write(items)
            for b in batch:
                if isinstance(b, threading.Event):
                    b.set()
            if None in batch:
                return
            time.sleep(self.interval_s)

    def _write(self, items: list[_Item]) -> None:
        pipe = self.store.r.pipeline(transaction=False)
        latest: dict[tuple[str, str], tuple[int, str]] = {}
        for tenant, job_id, tokens, text in items:
            event = {"event": "token", "tokens": tokens, "text": text}
            pipe.publish(self.store.channel(tenant, job_id), json.dumps(event))
            latest[(tenant, job_id)] = (tokens, text)
        for (tenant, job_id), (tokens, text) in latest.items():
            key = self.store.progress_key(tenant, job_id)
            pipe.hset(key, mapping={"tokens": tokens, "text": text})
            pipe.expire(key, self.store.ttl_s)
        try:
            pipe.execute()
        except Exception:
            log.exception("progress write failed; the job itself is unaffected")


class CancelWatcher:
    """Watches the status of the jobs this process runs, so engines can check
    cancellation between decode steps without a Redis round trip per step per row."""

    def __init__(self, store: JobStore, interval_s: float = 0.2) -> None:
        self.store = store
        self.interval_s = interval_s
        self._active: dict[tuple[str, str], int] = {}
        self._cancelled: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="memq-cancel", daemon=True)
        self._thread.start()

    def watch(self, tenant: str, job_id: str) -> None:
        with self._lock:
            self._active[(tenant, job_id)] = self._active.get((tenant, job_id), 0) + 1

    def unwatch(self, tenant: str, job_id: str) -> None:
        with self._lock:
            left = self._active.get((tenant, job_id), 1) - 1
            if left <= 0:
                self._active.pop((tenant, job_id), None)
                self._cancelled.discard((tenant, job_id))
            else:
                self._active[(tenant, job_id)] = left

    def is_cancelled(self, tenant: str, job_id: str) -> bool:
        return (tenant, job_id) in self._cancelled

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            with self._lock:
                jobs = list(self._active)
            if not jobs:
                continue
            try:
                pipe = self.store.r.pipeline(transaction=False)
                for tenant, job_id in jobs:
                    pipe.hget(self.store.key(tenant, job_id), "status")
                statuses = pipe.execute()
            except Exception:
                log.exception("cancellation poll failed")
                continue
            with self._lock:
                for job, status in zip(jobs, statuses, strict=True):
                    if status == b"cancelled" and job in self._active:
                        self._cancelled.add(job)
