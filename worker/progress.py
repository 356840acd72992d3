"""Per-token progress and cancellation, kept off the decode loop.

Engines call back once per token; `ProgressPublisher` queues the update and a thread of
its own writes batches to the job store (token events + latest progress), so a slow
Redis never slows decoding. `CancelWatcher` polls the status of the jobs this process
runs, so engines can check cancellation between decode steps without a Redis round trip
per step per row.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from memq.contracts import JobStatus
from memq.store.jobs import JobStore, TokenUpdate

log = logging.getLogger("memq.worker.progress")

_Key = tuple[str, str]  # (tenant, job id)


@dataclass(frozen=True)
class _Token:
    key: _Key
    tokens: int
    text: str


@dataclass(frozen=True)
class _Forget:
    key: _Key


_Item = _Token | _Forget | threading.Event | None


class ProgressPublisher:
    def __init__(self, store: JobStore, interval_s: float = 0.05) -> None:
        self.store = store
        self.interval_s = interval_s
        self._q: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._sent: dict[_Key, str] = {}  # text already published, per job (publisher thread)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memq-progress", daemon=True)
        self._thread.start()

    def token(self, tenant: str, job_id: str, tokens: int, text: str) -> None:
        self._q.put(_Token((tenant, job_id), tokens, text))

    def forget(self, tenant: str, job_id: str) -> None:
        """Drop a finished job's state, once its queued tokens are written."""
        self._q.put(_Forget((tenant, job_id)))

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
            tokens = [b for b in batch if isinstance(b, _Token)]
            if tokens:
                self._write(tokens)
            for b in batch:
                if isinstance(b, _Forget):
                    self._sent.pop(b.key, None)
                elif isinstance(b, threading.Event):
                    b.set()
            if None in batch:
                return
            self._stop.wait(self.interval_s)

    def _write(self, items: list[_Token]) -> None:
        updates = []
        for item in items:
            sent = self._sent.get(item.key, "")
            offset = _common_prefix(sent, item.text)
            tenant, job_id = item.key
            updates.append(
                TokenUpdate(tenant, job_id, item.tokens, item.text, offset, item.text[offset:])
            )
            self._sent[item.key] = item.text
        try:
            self.store.publish_tokens(updates)
        except Exception:
            log.exception("progress write failed; the job itself is unaffected")


def _common_prefix(a: str, b: str) -> int:
    if b.startswith(a):
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class CancelWatcher:
    def __init__(self, store: JobStore, interval_s: float = 0.2) -> None:
        self.store = store
        self.interval_s = interval_s
        self._active: dict[_Key, int] = {}
        self._cancelled: set[_Key] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
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

    def poll(self) -> None:
        """One check of every watched job (the thread calls it every `interval_s`)."""
        with self._lock:
            jobs = list(self._active)
        if not jobs:
            return
        statuses = self.store.statuses(jobs)
        with self._lock:
            for job, status in zip(jobs, statuses, strict=True):
                if status == JobStatus.cancelled and job in self._active:
                    self._cancelled.add(job)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:
                log.exception("cancellation poll failed")
