"""Thin Celery tasks: look up the job record, run the pipeline, commit the outcome."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from memq.contracts import RUN_JOB_TASK, ErrorResponse
from worker.celery_app import app, settings
from worker.errors import JobCancelled, MemoryUnavailable, WorkerError
from worker.runtime import get_runtime

log = logging.getLogger("memq.worker.tasks")

RUN_JOB = RUN_JOB_TASK


@app.task(name=RUN_JOB, bind=True, max_retries=settings.memory_retries)
def run_job(self: Task, job_id: str, tenant: str) -> None:
    rt = get_runtime(settings)
    record = rt.store.start(tenant, job_id, engine=rt.engine.name)
    if record is None:
        log.info("job %s: not runnable (unknown, cancelled or finished); skipping", job_id)
        return
    try:
        result = rt.runner.run(record)
    except MemoryUnavailable as exc:
        if self.request.retries < self.max_retries:
            log.warning("job %s: %s; retrying", job_id, exc)
            raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from exc
        rt.store.fail(record, rt.runner.error_of(exc))
        return
    except JobCancelled:
        return
    except WorkerError as exc:
        rt.store.fail(record, rt.runner.error_of(exc))
        return
    except Exception as exc:
        log.exception("job %s failed", job_id)
        rt.store.fail(record, ErrorResponse(error="internal_error", message=repr(exc)))
        return
    if not rt.store.succeed(record, result):
        log.warning("job %s: result not committed (already finished or cancelled)", job_id)


def describe() -> dict[str, Any]:
    return {"task": RUN_JOB, "queue": settings.queue}
