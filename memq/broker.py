"""Celery configuration shared by the gateway (which only sends) and the workers, so both
sides of the broker agree on every delivery setting."""

from __future__ import annotations

from typing import Any

from celery import Celery

from memq.settings import CommonSettings


def celery_conf(settings: CommonSettings) -> dict[str, Any]:
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_default_queue": settings.queue,
        # A job is acknowledged only after it finished: a worker killed mid-job leaves the
        # message to be redelivered instead of losing the job.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Unacked messages come back after this long; longer than any job may run.
        "broker_transport_options": {"visibility_timeout": 3600},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def producer_app(settings: CommonSettings) -> Celery:
    """A Celery app that only sends tasks by name (the gateway never imports worker code)."""
    app = Celery("memq-gateway", broker=settings.redis_url, set_as_current=False)
    app.conf.update(celery_conf(settings))
    return app
