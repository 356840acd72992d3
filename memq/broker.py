"""Celery and its Redis broker: the configuration shared by the gateway (which only sends)
and the workers, and the one place that reads kombu's Redis layout.

Kombu's Redis transport keeps a queue as a list of JSON messages (`headers.id` is the
Celery task id, memq's job id) and a message a worker has taken but not acknowledged in
the `unacked` hash (delivery tag → `[message, exchange, routing key]`) with its time in
the `unacked_index` zset. It moves a message from the list to the hash in two steps, so
a worker killed in between loses it; and it restores unacknowledged messages only after
the visibility timeout. The reconciler (worker/reconciler.py) covers both, using
`pending_job_ids` and `drop_unacked` below.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery

from memq.contracts import ConsolidateJobRequest, JobRequest, Priority
from memq.errors import QueueUnavailable
from memq.logs import bind_job_id
from memq.settings import CommonSettings

if TYPE_CHECKING:
    from memq.store.jobs import Created, JobStore

log = logging.getLogger("memq.broker")

RUN_JOB_TASK = "memq.run_job"
"""Celery task name; the gateway dispatches by name so it never imports worker code."""

UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
SCAN_PAGE = 1000


def queue_name(settings: CommonSettings, priority: Priority) -> str:
    """The Celery queue of a priority: `{queue}.high`, `{queue}`, `{queue}.low`."""
    return settings.queue if priority == Priority.normal else f"{settings.queue}.{priority.value}"


def train_queue(settings: CommonSettings) -> str:
    """The queue of consolidation (training) jobs: `{queue}.train`, drained after `low`, so
    a burst of training never holds up generation (a worker runs one training at a time)."""
    return f"{settings.queue}.train"


def job_queues(settings: CommonSettings) -> list[str]:
    """Every job queue, in the order workers drain them."""
    priorities = (Priority.high, Priority.normal, Priority.low)
    return [*(queue_name(settings, p) for p in priorities), train_queue(settings)]


def queue_for(settings: CommonSettings, request: JobRequest) -> str:
    """Where a job waits: consolidation jobs in the training queue, others by priority."""
    if isinstance(request, ConsolidateJobRequest):
        return train_queue(settings)
    return queue_name(settings, request.priority)


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
        "broker_transport_options": {
            # Kombu restores an unacknowledged message after this long. A lost worker's jobs
            # come back much sooner through memq's leases and reconciler, so this only has
            # to exceed the longest job (a longer job would run twice; its result is still
            # committed once).
            "visibility_timeout": settings.job_timeout_s + 300,
            "unacked_key": UNACKED_KEY,
            "unacked_index_key": UNACKED_INDEX_KEY,
            # Workers poll the queues in the order given (high, normal, low) every time,
            # instead of kombu's default round robin, so a higher priority always goes first.
            "queue_order_strategy": "priority",
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def producer_app(settings: CommonSettings) -> Celery:
    """A Celery app that only sends tasks by name (the gateway never imports worker code)."""
    app = Celery("memq-gateway", broker=settings.redis_url, set_as_current=False)
    app.conf.update(celery_conf(settings))
    return app


def dispatch(
    celery: Celery,
    store: JobStore,
    settings: CommonSettings,
    tenant: str,
    request: JobRequest,
    **create: Any,
) -> Created:
    """Record a job and send its message (task id = job id) to its priority's queue.

    Not queued means not accepted: when the broker refuses the message the record is
    removed again and QueueUnavailable is raised. `create` goes to `JobStore.create`
    (quota, idempotency key, replay_of), whose refusals propagate.
    """
    job_id = str(uuid.uuid4())
    created = store.create(tenant, job_id, request, **create)
    if created.existing:
        return created
    try:
        celery.send_task(
            RUN_JOB_TASK,
            args=[job_id, tenant],
            task_id=job_id,
            queue=queue_for(settings, request),
        )
    except Exception as exc:
        store.delete(tenant, job_id, create.get("idempotency_key"))
        log.exception("dispatch of job %s failed", job_id)
        raise QueueUnavailable(f"the job queue is unavailable, retry later: {exc}") from exc
    with bind_job_id(job_id):
        log.info("job %s queued (%s, priority %s)", job_id, request.type, request.priority.value)
    return created


def _task_id(message: Any) -> str | None:
    if isinstance(message, dict):
        headers = message.get("headers")
        if isinstance(headers, dict) and isinstance(headers.get("id"), str):
            return str(headers["id"])
    return None


def waiting_job_ids(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Ids of the jobs whose message waits in one of `queues`."""
    found: set[str] = set()
    for queue in queues:
        start = 0
        while True:
            page: Any = client.lrange(queue, start, start + SCAN_PAGE - 1)
            for raw in page:
                try:
                    task_id = _task_id(json.loads(raw))
                except ValueError:
                    continue
                if task_id:
                    found.add(task_id)
            if len(page) < SCAN_PAGE:
                break
            start += SCAN_PAGE
    return found


def unacked_job_ids(client: redis.Redis) -> dict[str, list[str]]:
    """Job id → delivery tags of its messages taken by a worker and not yet acknowledged."""
    found: dict[str, list[str]] = {}
    for tag, raw in client.hscan_iter(UNACKED_KEY, count=SCAN_PAGE):
        try:
            message = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError):
            continue
        task_id = _task_id(message)
        if task_id:
            found.setdefault(task_id, []).append(tag.decode() if isinstance(tag, bytes) else tag)
    return found


def drop_unacked(client: redis.Redis, tags: Iterable[str]) -> None:
    """Forget unacknowledged deliveries (of a lost worker), so kombu does not restore
    them later: the reconciler sends the job again instead."""
    tags = list(tags)
    if not tags:
        return
    pipe = client.pipeline(transaction=True)
    pipe.zrem(UNACKED_INDEX_KEY, *tags)
    pipe.hdel(UNACKED_KEY, *tags)
    pipe.execute()
