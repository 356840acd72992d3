"""Celery configuration. The job id is the Celery task id; results live in memq's job
records (see memq.jobstore), so Celery's result backend is off."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_shutdown

from worker.config import WorkerSettings

settings = WorkerSettings()

app = Celery("memq", broker=settings.redis_url, include=["worker.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=settings.queue,
    # A job is acknowledged only after it finished: a worker killed mid-job leaves the
    # message to be redelivered instead of losing the job.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # Unacked messages come back after this long; longer than any job may run.
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)


@worker_init.connect
def _load_model(**_: Any) -> None:
    # Load before consuming, so a broken model fails the worker loudly at start and the
    # gateway learns the context window before the first job arrives.
    from worker.runtime import get_runtime

    # The engine thread runs hundreds of small torch ops per step, each releasing and
    # re-taking the GIL; with task threads busy in Python (HTTP, JSON, Redis) it waits up
    # to a switch interval every time (A/B at N=32: +3% and +9% tokens/s).
    sys.setswitchinterval(settings.gil_switch_interval_s)
    try:
        get_runtime(settings)
    except Exception as exc:
        # Celery logs and swallows exceptions from signal handlers; a worker without a
        # model must not consume jobs, so leave with an error instead.
        logging.getLogger("memq.worker").critical("cannot start the worker: %s", exc)
        raise SystemExit(1) from exc


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    from worker import runtime

    if runtime._runtime is not None:
        runtime._runtime.close()
