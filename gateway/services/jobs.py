"""Job logic: validate against the served model, record, dispatch, read back."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Celery
from tokenizers import Tokenizer

from gateway.core.config import GatewaySettings
from gateway.core.errors import (
    IdempotencyKeyReused,
    JobExpired,
    JobNotCancellable,
    JobNotReplayable,
    TooManyJobs,
)
from gateway.services.adapters import AdapterService
from memq.broker import dispatch
from memq.budget import check_job_fits
from memq.contracts import (
    AdapterRef,
    ChatJobRequest,
    ConsolidateJobRequest,
    GenerateJobRequest,
    JobListResponse,
    JobRequest,
    JobStatus,
    JobType,
    ModelInfo,
    PinnedMemory,
)
from memq.errors import (
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    PromptTooLong,
    QuotaExceeded,
)
from memq.store.jobs import Created, JobRecord, JobStore

log = logging.getLogger("memq.gateway.jobs")


MODEL_INFO_TTL_S = 2.0
"""How long a read of the served model is trusted. Its tokenizer is megabytes of JSON (3.5 MB
for SmolLM2): reading and parsing it on every submit cost ~20 ms of gateway CPU, more than a
whole core at 200 submits/s. A worker that starts serving another model is seen within this
time; the worker still checks every job against the model it actually serves."""


class TokenCounter:
    """Counts tokens with the tokenizer the workers publish (re-read every
    `MODEL_INFO_TTL_S`, rebuilt only when it changed)."""

    def __init__(
        self,
        store: JobStore,
        ttl_s: float = MODEL_INFO_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._reading = threading.Lock()
        self._cached: tuple[Tokenizer, ModelInfo] | None = None
        self._fresh_until = -math.inf

    def model(self) -> tuple[Tokenizer, ModelInfo] | None:
        cached = self._cached
        if cached is not None and self._clock() < self._fresh_until:
            return cached
        # One request re-reads a known model; the others keep using it meanwhile. With no
        # model known yet, every request looks (a missing key is a cheap read).
        if not self._reading.acquire(blocking=cached is None):
            return cached
        try:
            now = self._clock()
            info = self._store.model_info()
            if info is None:
                self._cached = None
            elif cached is None or cached[1] != info:
                self._cached = (Tokenizer.from_str(info.tokenizer_json), info)
            self._fresh_until = now + self._ttl_s if self._cached is not None else -math.inf
            return self._cached
        finally:
            self._reading.release()


class JobService:
    def __init__(self, store: JobStore, celery: Celery, settings: GatewaySettings) -> None:
        self.store = store
        self.celery = celery
        self.settings = settings
        self.queue = settings.queue
        self.tokens = TokenCounter(store)
        self.adapters = AdapterService.from_store(store, settings.key_prefix)

    def validate(self, request: JobRequest) -> None:
        """The budget rule the worker applies, at the door (once a worker has published
        its model; before that the worker is the only judge)."""
        if isinstance(request, ConsolidateJobRequest):
            return  # trains on memories: nothing to fit into a context window
        served = self.tokens.model()
        if served is None:
            return
        tokenizer, info = served
        job_type = JobType(request.type)
        prompt_tokens = None
        if isinstance(request, GenerateJobRequest):
            prompt_tokens = len(tokenizer.encode(request.prompt, add_special_tokens=False).ids)
        elif isinstance(request, ChatJobRequest):
            prompt_tokens = sum(
                len(tokenizer.encode(m.content, add_special_tokens=False).ids)
                for m in request.messages
            )
        try:
            check_job_fits(
                job_type,
                max_new_tokens=request.params.max_new_tokens,
                context_window=info.context_window,
                template_tokens=info.template_tokens.get(job_type, 0),
                prompt_tokens=prompt_tokens,
            )
        except PromptTooLong as exc:
            raise PromptTooLong(f"{exc.message} (model: {info.name})") from exc

    def submit(
        self,
        tenant: str,
        request: JobRequest,
        *,
        idempotency_key: str | None = None,
        replay_of: str | None = None,
    ) -> Created:
        """Validate, record and queue a job (or return the one its Idempotency-Key made)."""
        self.validate(request)
        self.adapters.check(tenant, request)
        try:
            return dispatch(
                self.celery,
                self.store,
                self.settings,
                tenant,
                request,
                quota=self.settings.max_unfinished_jobs,
                idempotency_key=idempotency_key,
                replay_of=replay_of,
            )
        except QuotaExceeded as exc:
            raise TooManyJobs(
                f"this API key's tenant already has {self.settings.max_unfinished_jobs:,} "
                "unfinished jobs (MEMQ_MAX_UNFINISHED_JOBS); wait for some to finish or cancel "
                "some"
            ) from exc
        except IdempotencyConflict as exc:
            raise IdempotencyKeyReused(
                f"Idempotency-Key was used in the last 24 h for job {exc.original_id} with a "
                "different request body; use a new key for a new request"
            ) from exc

    def get(self, tenant: str, job_id: str) -> JobRecord:
        record = self.store.get(tenant, job_id)
        if record is None:
            if self.store.expired(tenant, job_id):
                raise JobExpired(
                    f"job {job_id} finished and its record expired: results are kept "
                    f"{self.settings.job_ttl_seconds:,} s (MEMQ_JOB_TTL_SECONDS)"
                )
            raise JobNotFound(f"no job {job_id!r} for this API key's tenant")
        return record

    def list(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None,
        statuses: list[JobStatus],
        types: list[JobType],
        created_after: datetime | None,
        created_before: datetime | None,
    ) -> JobListResponse:
        try:
            items, next_cursor = self.store.list_jobs(
                tenant,
                limit=limit,
                cursor=cursor,
                statuses=statuses,
                types=types,
                created_after=created_after,
                created_before=created_before,
            )
        except ValueError as exc:
            raise InvalidInput(
                "cursor is not one this service issued; pass `next_cursor` from the previous page"
            ) from exc
        return JobListResponse(items=items, next_cursor=next_cursor)

    def cancel(self, tenant: str, job_id: str) -> JobRecord:
        """A queued job is cancelled at once and never runs; a running one stops at its next
        decode step and keeps its partial text; a finished one is a conflict."""
        cancelled = self.store.cancel(tenant, job_id)
        if cancelled is not None:
            log.info("job %s cancelled", job_id)
            return cancelled
        record = self.get(tenant, job_id)
        raise JobNotCancellable(
            f"job {job_id} already {record.status.value}; only queued or running jobs can be "
            "cancelled"
        )

    def replay(self, tenant: str, job_id: str) -> Created:
        """Run a finished job again against what it saw: its exact memories (pinned, even if
        they changed or were deleted since) and its applied parameters and seed."""
        original = self.get(tenant, job_id)
        request = original.request
        if isinstance(request, ConsolidateJobRequest):
            raise JobNotReplayable(
                f"job {job_id} is a consolidate job; submit it again to train a new version"
            )
        if original.result is None or original.result.params is None:
            raise JobNotReplayable(
                f"job {job_id} is {original.status.value} without a result to replay; only "
                "jobs that produced a result can be replayed"
            )
        pinned = [
            PinnedMemory(
                id=m.id,
                text=m.text,
                score=m.score,
                version=m.version,
                similarity=m.similarity,
            )
            for m in original.result.memories
        ]
        memory = request.memory.model_copy(update={"pinned": pinned})
        update: dict[str, Any] = {
            "params": original.result.params,
            "memory": memory,
            "callback_url": None,
        }
        served = original.result.adapter
        if served is not None:  # the version that served it, not whatever is latest now
            update["adapter"] = AdapterRef(name=served.name, version=served.version)
        replayed = request.model_copy(update=update)
        return self.submit(tenant, replayed, replay_of=job_id)

    def cancel_queued_reading(self, tenant: str, namespace: str) -> int:
        """Cancel the tenant's queued jobs that would retrieve from `namespace` (it was
        forgotten), or train on it; returns how many."""
        cancelled = 0
        for job_tenant, job_id in self.store.active_jobs(tenant=tenant):
            record = self.store.get(job_tenant, job_id)
            if record is None or record.status != JobStatus.queued:
                continue
            request = record.request
            if isinstance(request, ConsolidateJobRequest):
                reads = request.namespace == namespace
            else:
                reads = request.memory.namespace == namespace and request.memory.pinned is None
            if reads and self.store.cancel(job_tenant, job_id) is not None:
                cancelled += 1
        return cancelled
