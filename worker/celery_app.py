"""The Celery app factory. The job id is the Celery task id; results live in memq's job
records (see memq.store.jobs), so Celery's result backend is off; delivery settings are in
memq.broker (shared with the gateway)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import task_received, worker_init, worker_shutdown

from memq.broker import celery_conf
from worker.config import WorkerSettings

log = logging.getLogger("memq.worker")


class MemqCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries the worker settings its tasks read."""

    settings: WorkerSettings


def create_celery_app(settings: WorkerSettings) -> MemqCelery:
    from worker.tasks import DeliverWebhook, JobTask, RunJob

    app = MemqCelery("memq", broker=settings.redis_url, set_as_current=False)
    app.settings = settings
    app.conf.update(celery_conf(settings))
    run_job = app.register_task(RunJob())
    app.register_task(DeliverWebhook())

    def load_runtime(sender: Any, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        # The engine thread runs hundreds of small torch ops per step, each releasing and
        # re-taking the GIL; with task threads busy in Python (HTTP, JSON, Redis) it waits
        # up to a switch interval every time (A/B at N=32: +3% and +9% tokens/s).
        sys.setswitchinterval(settings.gil_switch_interval_s)
        # Load before consuming, so a broken model fails the worker loudly at start and
        # the gateway learns the context window before the first job arrives.
        try:
            run_job.runtime  # noqa: B018 - builds it
        except Exception as exc:
            # Celery logs and swallows exceptions from signal handlers; a worker without a
            # model must not consume jobs, so leave with an error instead.
            log.critical("cannot start the worker: %s", exc)
            raise SystemExit(1) from exc

    def close_runtime(sender: Any, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            JobTask.close_all()
            DeliverWebhook.close_all()

    def lease_on_receipt(sender: Any, request: Any = None, **_: Any) -> None:
        # The broker just handed this worker the message: hold the job's lease from now,
        # so the reconciler knows a live worker has it (even before a thread starts it).
        if getattr(sender, "app", None) is not app or request is None:
            return
        if request.name == run_job.name and len(request.args) == 2:
            job_id, tenant = request.args
            try:
                run_job.runtime.leases.hold(tenant, job_id)
            except Exception:
                log.exception("could not lease job %s on receipt", job_id)

    worker_init.connect(load_runtime, weak=False)
    task_received.connect(lease_on_receipt, weak=False)
    worker_shutdown.connect(close_runtime, weak=False)
    return app
