"""Job logic: validate against the served model, record, dispatch, read back."""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid

from celery import Celery
from tokenizers import Tokenizer

from gateway.core.config import GatewaySettings
from gateway.core.errors import TooManyJobs
from memq.budget import check_job_fits
from memq.contracts import RUN_JOB_TASK, GenerateJobRequest, JobRequest, JobType, ModelInfo
from memq.errors import JobNotFound, PromptTooLong, QueueUnavailable
from memq.jobstore import JobRecord, JobStore, QuotaExceeded

log = logging.getLogger("memq.gateway.jobs")


class TokenCounter:
    """Counts tokens with the tokenizer the workers publish (cached by content hash)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._cached: tuple[str, Tokenizer, ModelInfo] | None = None

    def model(self) -> tuple[Tokenizer, ModelInfo] | None:
        info = self._store.model_info()
        if info is None:
            return None
        digest = hashlib.sha256(info.tokenizer_json.encode()).hexdigest()
        with self._lock:
            if self._cached is None or self._cached[0] != digest:
                self._cached = (digest, Tokenizer.from_str(info.tokenizer_json), info)
            return self._cached[1], info


class JobService:
    def __init__(self, store: JobStore, celery: Celery, settings: GatewaySettings) -> None:
        self.store = store
        self.celery = celery
        self.settings = settings
        self.queue = settings.queue
        self.tokens = TokenCounter(store)

    @staticmethod
    def status_url(settings: GatewaySettings, job_id: str) -> str:
        return f"{settings.gateway_url.rstrip('/')}/v1/jobs/{job_id}"

    def validate(self, request: JobRequest) -> None:
        """The budget rule the worker applies, at the door (once a worker has published
        its model; before that the worker is the only judge)."""
        served = self.tokens.model()
        if served is None:
            return
        tokenizer, info = served
        job_type = JobType(request.type)
        prompt_tokens = None
        if isinstance(request, GenerateJobRequest):
            prompt_tokens = len(tokenizer.encode(request.prompt, add_special_tokens=False).ids)
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

    def submit(self, tenant: str, request: JobRequest) -> JobRecord:
        self.validate(request)
        job_id = str(uuid.uuid4())
        try:
            record = self.store.create(
                tenant, job_id, request, quota=self.settings.max_unfinished_jobs
            )
        except QuotaExceeded as exc:
            raise TooManyJobs(
                f"this API key's tenant already has {self.settings.max_unfinished_jobs:,} "
                "unfinished jobs (MEMQ_MAX_UNFINISHED_JOBS); wait for some to finish or cancel "
                "some"
            ) from exc
        try:
            self.celery.send_task(
                RUN_JOB_TASK, args=[job_id, tenant], task_id=job_id, queue=self.queue
            )
        except Exception as exc:
            # Not queued means not accepted: remove the record so nothing waits forever.
            self.store.delete(tenant, job_id)
            log.exception("dispatch of job %s failed", job_id)
            raise QueueUnavailable(f"the job queue is unavailable, retry later: {exc}") from exc
        return record

    def get(self, tenant: str, job_id: str) -> JobRecord:
        record = self.store.get(tenant, job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id!r} for this tenant (it may have expired)")
        return record
