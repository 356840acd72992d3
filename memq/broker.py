"""Celery and its Redis broker: the configuration shared by the gateway (which only sends)
and the workers, and the one place that reads kombu's Redis layout.

Kombu's Redis transport keeps a queue as a list of JSON messages (`headers.id` is the
Celery task id, memq's job id) and a message a worker has taken but not acknowledged in
the `unacked` hash (delivery tag → `[message, exchange, routing key]`) with its time in
the `unacked_index` zset. It moves a message from the list to the hash in two steps, so
a worker killed in between loses it; and it restores unacknowledged messages only after
the visibility timeout. The reconciler (worker/reconciler.py) covers both, using
`waiting_job_ids`, `unacked_job_ids` and `drop_unacked` below.

It is also the only module that sends Celery messages:

    send_jobs        every run-job message (a job's id is its task id): the gateway's
                     `dispatch`, a batch's line jobs, the worker's summary jobs and the
                     reconciler's re-sends
    WebhookQueue     a finished job's webhook delivery (`memq.deliver_webhook`)

and the one place that says what follows a job's end: `terminal_hooks` builds the hooks
(the webhook queue and the batch line writer) and `job_store` the `JobStore` that fires
them, the one every process that can end a job uses (gateway, worker, launcher, CLI).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery

from memq.contracts import ConsolidateJobRequest, JobRequest, Priority
from memq.errors import QueueUnavailable
from memq.logs import bind_job_id
from memq.settings import CommonSettings
from memq.store.batches import BatchLines, BatchStore
from memq.store.jobs import Created, JobRecord, JobStore, TerminalHook
from memq.store.keys import Keys
from memq.store.webhooks import WebhookStore

log = logging.getLogger("memq.broker")

RUN_JOB_TASK = "memq.run_job"
"""Celery task name; the gateway dispatches by name so it never imports worker code."""
DELIVER_WEBHOOK_TASK = "memq.deliver_webhook"
"""The webhook delivery task (worker/webhooks.py runs it)."""

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


def send_jobs(
    celery: Celery, tenant: str, jobs: Iterable[tuple[str, str]], *, retry: bool = True
) -> None:
    """Send the run-job message of each `(job id, queue)` (task id = job id), pipelined in
    one flush per `BATCH_FLUSH` messages.

    Each is the message `send_task` makes (Celery's own protocol builder), published
    without its per-call routing and queue declaration (the job queues are Redis lists that
    need none): about 2.5× faster, which a 10,000-line batch needs. `retry` retries a lost
    broker connection with Celery's publish retry policy; without it the error propagates
    at once. Raises what kombu raises when the broker refuses."""
    amqp = celery.amqp
    policy = celery.conf.task_publish_retry_policy if retry else None
    with celery.producer_or_acquire() as producer, producer.batch(max_size=BATCH_FLUSH):
        for job_id, queue in jobs:
            message = amqp.as_task_v2(job_id, RUN_JOB_TASK, args=[job_id, tenant], reply_to="")
            producer.publish(
                message.body,
                exchange="",
                routing_key=queue,
                serializer="json",
                headers=message.headers,
                declare=[],
                retry=retry,
                retry_policy=policy,
                **message.properties,
            )


BATCH_FLUSH = 500
"""Messages `send_jobs` pipelines into one Redis round trip."""


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
        send_jobs(celery, tenant, [(job_id, queue_for(settings, request))])
    except Exception as exc:
        store.delete(tenant, job_id, create.get("idempotency_key"))
        log.exception("dispatch of job %s failed", job_id)
        raise QueueUnavailable(f"the job queue is unavailable, retry later: {exc}") from exc
    with bind_job_id(job_id):
        log.info("job %s queued (%s, priority %s)", job_id, request.type, request.priority.value)
    return created


class WebhookQueue:
    """The terminal hook that queues a job's webhook delivery when it ends. The delivery is
    recorded first and only once per job, so a job is never queued twice whoever sees it
    end (a worker, the reconciler, the gateway's cancel)."""

    def __init__(self, celery: Celery, webhooks: WebhookStore, settings: CommonSettings) -> None:
        self.celery = celery
        self.webhooks = webhooks
        self.settings = settings

    def __call__(self, record: JobRecord) -> None:
        url = record.request.callback_url
        if url is None:
            return
        delivery_id = str(uuid.uuid4())
        if not self.webhooks.begin(record.tenant, record.id, url):
            return
        self.celery.send_task(
            DELIVER_WEBHOOK_TASK,
            args=[record.tenant, record.id, delivery_id],
            task_id=delivery_id,
            queue=queue_name(self.settings, Priority.high),
        )


def terminal_hooks(
    celery: Celery, client: redis.Redis, settings: CommonSettings
) -> list[TerminalHook]:
    """What follows every job's end, whichever process ends it: its webhook is queued and,
    for a batch's line job, its output line written."""
    return [
        WebhookQueue(celery, WebhookStore(client, Keys(settings.key_prefix)), settings),
        BatchLines(BatchStore(client, settings.key_prefix), settings.gateway_url),
    ]


def job_store(settings: CommonSettings, celery: Celery) -> JobStore:
    """The `JobStore` of a process that can end jobs, with `terminal_hooks` wired in."""
    client = redis.Redis.from_url(settings.redis_url)
    return JobStore.from_settings(
        settings, client=client, hooks=terminal_hooks(celery, client, settings)
    )


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
