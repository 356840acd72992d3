"""Thin Celery tasks: start the job record, run the pipeline, commit the outcome."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, ClassVar

from celery import Task

from memq.contracts import RUN_JOB_TASK, ErrorResponse
from memq.errors import MemoryUnavailable, MemqError
from memq.logs import bind_job_id
from worker.errors import JobCancelled

if TYPE_CHECKING:
    from worker.config import WorkerSettings
    from worker.runtime import Runtime

log = logging.getLogger("memq.worker.tasks")


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

                    self._runtime = Runtime(self.settings)
                    JobTask._runtimes.append(self._runtime)
        return self._runtime

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            for runtime in cls._runtimes:
                runtime.close()
            cls._runtimes.clear()


class RunJob(JobTask):
    name = RUN_JOB_TASK

    def run(self, job_id: str, tenant: str) -> None:
        with bind_job_id(job_id):
            self._run(job_id, tenant)

    def _run(self, job_id: str, tenant: str) -> None:
        rt = self.runtime
        record = rt.store.start(tenant, job_id, engine=rt.engine.name)
        if record is None:
            log.info("job %s: not runnable (unknown, cancelled or finished); skipping", job_id)
            return
        try:
            result = rt.runner.run(record)
        except MemoryUnavailable as exc:
            if self.request.retries < self.settings.memory_retries:
                log.warning("job %s: %s; retrying", job_id, exc)
                raise self.retry(
                    exc=exc,
                    countdown=min(2**self.request.retries, 30),
                    max_retries=self.settings.memory_retries,
                ) from exc
            rt.store.fail(record, exc.to_response())
            return
        except JobCancelled:
            return
        except MemqError as exc:
            rt.store.fail(record, exc.to_response())
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)
            rt.store.fail(record, ErrorResponse(error="internal_error", message=repr(exc)))
            return
        if not rt.store.succeed(record, result):
            log.warning("job %s: result not committed (already finished or cancelled)", job_id)
