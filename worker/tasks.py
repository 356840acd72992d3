"""Thin Celery tasks: start the job record, run the pipeline, commit the outcome (through
the session book, which keeps a chat turn's write-back in step with it); and deliver a
finished job's webhook (worker.webhooks)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import redis
from celery import Task
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from memq import metrics
from memq.broker import (
    DELIVER_WEBHOOK_TASK,
    RUN_JOB_TASK,
    dispatch,
    job_queues,
    queue_for,
    queue_name,
    send_jobs,
    train_queue,
)
from memq.contracts import (
    ErrorResponse,
    JobRequest,
    Priority,
)
from memq.errors import EngineUnavailable, MemoryUnavailable, MemqError
from memq.logs import bind_job_id
from worker.errors import JobCancelled
from worker.training import TrainingBusy

if TYPE_CHECKING:
    from worker.config import WorkerSettings
    from worker.runtime import Runtime
    from worker.webhooks import WebhookSender

log = logging.getLogger("memq.worker.tasks")

TRAINING_BUSY_RETRY_S = 5
"""A consolidation job that finds this process training waits this long in the queue."""


class JobTask(Task):  # type: ignore[misc]
    """Base class of memq's tasks: the per-process `runtime` (model, engine, clients) is
    built once, on first use, and closed on worker shutdown."""

    abstract = True
    _runtimes: ClassVar[list[Runtime]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _runtime: Runtime | None = None

    @property
    def settings(self) -> WorkerSettings:
        settings: WorkerSettings = self.app.settings
        return settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    from worker.runtime import Runtime

                    queues = job_queues(self.settings)
                    self._runtime = Runtime(
                        self.settings, self.app, self.send_job, queues, self.submit_job
                    )
                    JobTask._runtimes.append(self._runtime)
        return self._runtime

    def send_job(self, tenant: str, job_id: str) -> None:
        """Send a job's message again (the reconciler); its id stays the job id."""
        record = self.runtime.store.get(tenant, job_id)
        queue = queue_for(self.settings, record.request) if record else None
        send_jobs(self.app, tenant, [(job_id, queue or queue_name(self.settings, Priority.normal))])

    def submit_job(self, tenant: str, request: JobRequest) -> None:
        """Record and send a new job (a session's rolling summary)."""
        dispatch(self.app, self.runtime.store, self.settings, tenant, request)

    def commit(self, write: Callable[[], bool]) -> bool:
        """Write a job's outcome, retrying while Redis is down (a restart takes seconds;
        the work done must not be thrown away for it)."""
        for attempt in Retrying(
            retry=retry_if_exception_type(redis.ConnectionError),
            stop=stop_after_delay(self.settings.commit_retry_s),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                return write()
        return False  # unreachable: Retrying re-raises

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            for runtime in cls._runtimes:
                runtime.close()
            cls._runtimes.clear()


class RunJob(JobTask):
    name = RUN_JOB_TASK

    def run(self, job_id: str, tenant: str) -> None:
        rt = self.runtime
        with bind_job_id(job_id):
            rt.leases.hold(tenant, job_id)
            try:
                self._run(rt, job_id, tenant)
            finally:
                rt.leases.release(tenant, job_id)

    def _run(self, rt: Runtime, job_id: str, tenant: str) -> None:
        delivery = self.request.delivery_info or {}
        if delivery.get("routing_key") == train_queue(self.settings) and rt.training.busy:
            # One training per process; the job stays queued, untouched, for a while.
            raise self.retry(countdown=TRAINING_BUSY_RETRY_S, max_retries=None)
        started = rt.store.start(
            tenant,
            job_id,
            worker=rt.worker_id,
            engine=rt.engine.name,
            max_lost=self.settings.max_lost_workers,
        )
        record = started.record
        if record is None:
            log.info("job %s: not run (%s)", job_id, started.reason)
            return
        try:
            result = rt.runner.run(record)
        except (MemoryUnavailable, EngineUnavailable) as exc:
            # The memory service restarting, or the engine process that died under the job
            # (being restarted): the job runs again later, a bounded number of times.
            memory = isinstance(exc, MemoryUnavailable)
            retries = self.settings.memory_retries if memory else self.settings.engine_retries
            if self.request.retries < retries:
                log.warning("job %s: %s; retrying", job_id, exc)
                self.commit(lambda: rt.store.requeue(record))
                raise self.retry(
                    exc=exc, countdown=min(2**self.request.retries, 30), max_retries=retries
                ) from exc
            setting = "MEMQ_MEMORY_RETRIES" if memory else "MEMQ_ENGINE_RETRIES"
            message = f"{exc.message} (gave up after {retries} retries, {setting})"
            error = ErrorResponse(error=exc.code, message=message)
            self.commit(lambda: rt.store.fail(record, error))
            return
        except TrainingBusy as exc:  # another thread took the training slot first
            self.commit(lambda: rt.store.requeue(record))
            raise self.retry(exc=exc, countdown=TRAINING_BUSY_RETRY_S, max_retries=None) from exc
        except JobCancelled as exc:
            if exc.partial is not None:
                partial = exc.partial
                if self.commit(lambda: rt.store.attach_partial(record, partial)):
                    tokens = partial.usage.completion_tokens
                    rt.store.metrics.add(metrics.partial_tokens(record, tokens))
            log.info("job %s: cancelled while running", job_id)
            return
        except MemqError as exc:
            error = exc.to_response()
            self.commit(lambda: rt.store.fail(record, error))
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)
            error = ErrorResponse(error="internal_error", message=repr(exc))
            self.commit(lambda: rt.store.fail(record, error))
            return
        if not rt.sessions.commit(
            tenant,
            job_id,
            record.request,
            result,
            lambda: self.commit(lambda: rt.store.succeed(record, result)),
        ):
            log.warning("job %s: result not committed (already finished or cancelled)", job_id)
            return
        log.info(
            "job %s: succeeded (%d tokens, %d memories)",
            job_id,
            result.usage.completion_tokens,
            len(result.memories),
        )


class DeliverWebhook(Task):  # type: ignore[misc]
    """One delivery attempt of a finished job's webhook; runs again after the backoff the
    attempt asks for. Light: it never loads the model."""

    name = DELIVER_WEBHOOK_TASK
    max_retries = None  # worker.webhooks bounds the attempts (MEMQ_WEBHOOK_MAX_ATTEMPTS)
    _senders: ClassVar[list[WebhookSender]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _sender: WebhookSender | None = None

    @property
    def sender(self) -> WebhookSender:
        if self._sender is None:
            with self._lock:
                if self._sender is None:
                    from worker.webhooks import WebhookSender

                    self._sender = WebhookSender.from_settings(self.app.settings)
                    DeliverWebhook._senders.append(self._sender)
        return self._sender

    def run(self, tenant: str, job_id: str, delivery_id: str) -> None:
        with bind_job_id(job_id):
            try:
                wait = self.sender.deliver(tenant, job_id, delivery_id)
            except redis.RedisError as exc:
                log.warning("webhook of job %s: redis unavailable (%s); retrying", job_id, exc)
                wait = 5.0
        if wait is not None:
            raise self.retry(countdown=wait)

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            for sender in cls._senders:
                sender.close()
            cls._senders.clear()
