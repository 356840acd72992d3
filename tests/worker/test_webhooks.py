"""Webhook delivery on a real Redis to a real HTTP receiver (a server thread on a free port):
signed bodies that verify, retries with backoff on 5xx / 408 / 429 / timeouts / refused
connections, giving up on other 4xx and after the last attempt, every attempt recorded on the
job without racing its status, SSRF refusal, the tenant's secret and its rotation, queued once
per job whoever ends it, and the Celery task around it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from celery.exceptions import Retry

from memq import metrics
from memq.broker import DELIVER_WEBHOOK_TASK, WebhookQueue
from memq.contracts import (
    ErrorResponse,
    GenerateJobRequest,
    JobPublic,
    JobResult,
    JobStatus,
    JobTimings,
    TokenUsage,
    WebhookAttempt,
)
from memq.store.jobs import JobRecord, JobStore
from memq.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    InvalidWebhook,
    verify,
)
from tests.utils.webhook_receiver import Receiver, webhook_receiver
from tests.worker.helpers import worker_settings
from worker.celery_app import create_celery_app
from worker.tasks import DeliverWebhook
from worker.webhooks import (
    PARTIAL_POLL_S,
    WebhookAddressRefused,
    WebhookPolicy,
    WebhookSender,
    resolve_target,
)

TENANT = "acme"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        running.url += "/hooks/memq"
        yield running


def _policy(**overrides: Any) -> WebhookPolicy:
    fields: dict[str, Any] = {
        "max_attempts": 5,
        "timeout_s": 5.0,
        "backoff_s": 1.0,
        "backoff_max_s": 60.0,
        "allow_private": True,
        "gateway_url": "http://gateway.example",
    }
    return WebhookPolicy(**(fields | overrides))


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client


def _sender(store: JobStore, http: httpx.Client, **policy: Any) -> WebhookSender:
    return WebhookSender(store, _policy(**policy), http)


def _result(text: str = "out") -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text=text, model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt="p"
    )


def _finished(store: JobStore, url: str, job_id: str = "j1") -> JobRecord:
    """A succeeded job with a callback_url whose webhook is pending."""
    store.create(TENANT, job_id, GenerateJobRequest(prompt="hi", callback_url=url))
    record = store.start(TENANT, job_id, worker="w", engine="e").record
    assert record is not None and store.succeed(record, _result())
    assert store.webhooks.begin(TENANT, job_id, url)
    return record


def _attempts(store: JobStore, job_id: str = "j1") -> list[WebhookAttempt]:
    job = store.get(TENANT, job_id)
    assert job is not None and job.webhook is not None
    return job.webhook.attempts


def test_the_receiver_gets_the_finished_job_signed_with_the_tenants_secret(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    _finished(store, receiver.url)
    assert _sender(store, http).deliver(TENANT, "j1", "d-1") is None

    [delivery] = receiver.received
    secret = store.webhooks.secret(TENANT).secret
    assert verify(secret, delivery.headers, delivery.body) == "d-1"
    job = JobPublic.model_validate_json(delivery.body)
    assert (job.id, job.status, job.result and job.result.text) == ("j1", "succeeded", "out")
    assert job.status_url == "http://gateway.example/v1/jobs/j1"
    assert "webhook" not in json.loads(delivery.body)  # the body is the same on every retry
    assert delivery.headers["Content-Type"] == "application/json"

    record = store.get(TENANT, "j1")
    assert record is not None and record.webhook is not None
    assert record.webhook.delivered_at is not None and not record.webhook.gave_up
    assert [(a.status_code, a.error) for a in record.webhook.attempts] == [(200, None)]
    # a redelivered task message does not post again
    assert _sender(store, http).deliver(TENANT, "j1", "d-1") is None
    assert len(receiver.received) == 1


def test_a_5xx_is_retried_with_backoff_under_the_same_delivery_id(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    _finished(store, receiver.url)
    sender = _sender(store, http, backoff_s=1.5)
    assert sender.deliver(TENANT, "j1", "d-1") == 1.5
    assert sender.deliver(TENANT, "j1", "d-1") == 3.0
    assert sender.deliver(TENANT, "j1", "d-1") is None

    assert [d.headers[ID_HEADER] for d in receiver.received] == ["d-1"] * 3
    assert [d.body for d in receiver.received] == [receiver.received[0].body] * 3
    assert [a.status_code for a in _attempts(store)] == [500, 503, 200]
    found = store.metrics.read()
    assert _count(found, metrics.WEBHOOK_FAILED_ATTEMPTS) == 2
    assert _count(found, metrics.WEBHOOK_DELIVERIES, "delivered") == 1


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
def test_a_refusal_by_the_receiver_gives_up_at_once(
    store: JobStore, http: httpx.Client, receiver: Receiver, status: int
) -> None:
    receiver.statuses = [status]
    _finished(store, receiver.url)
    assert _sender(store, http).deliver(TENANT, "j1", "d-1") is None
    job = store.get(TENANT, "j1")
    assert job is not None and job.webhook is not None
    assert job.webhook.gave_up and job.webhook.delivered_at is None
    [attempt] = job.webhook.attempts
    assert attempt.status_code == status and attempt.error is not None
    assert _sender(store, http).deliver(TENANT, "j1", "d-1") is None
    assert len(receiver.received) == 1
    assert _count(store.metrics.read(), metrics.WEBHOOK_DELIVERIES, "gave_up") == 1


@pytest.mark.parametrize("status", [408, 429])
def test_timeout_and_too_many_requests_answers_are_retried(
    store: JobStore, http: httpx.Client, receiver: Receiver, status: int
) -> None:
    receiver.statuses = [status]
    _finished(store, receiver.url)
    sender = _sender(store, http)
    assert sender.deliver(TENANT, "j1", "d-1") == 1.0
    assert sender.deliver(TENANT, "j1", "d-1") is None
    assert [a.status_code for a in _attempts(store)] == [status, 200]


def test_retry_after_lengthens_the_wait_up_to_the_longest_backoff(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    receiver.statuses = [429, 503]
    receiver.headers = {"Retry-After": "30"}
    _finished(store, receiver.url)
    sender = _sender(store, http, backoff_max_s=20.0)
    assert sender.deliver(TENANT, "j1", "d-1") == 20.0
    assert sender.deliver(TENANT, "j1", "d-1") == 20.0


def test_the_last_attempt_gives_up(store: JobStore, http: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    _finished(store, receiver.url)
    sender = _sender(store, http, max_attempts=3, backoff_s=2.0, backoff_max_s=3.0)
    waits = [sender.deliver(TENANT, "j1", "d-1") for _ in range(4)]
    assert waits == [2.0, 3.0, None, None]
    assert len(receiver.received) == 3
    job = store.get(TENANT, "j1")
    assert job is not None and job.webhook is not None
    assert job.webhook.gave_up and len(job.webhook.attempts) == 3


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    store: JobStore, receiver: Receiver
) -> None:
    receiver.hold = threading.Event()
    _finished(store, receiver.url)
    with httpx.Client(timeout=0.2, trust_env=False) as impatient:
        wait = WebhookSender(store, _policy(timeout_s=0.2), impatient).deliver(TENANT, "j1", "d")
    receiver.hold.set()
    assert wait == 1.0
    [attempt] = _attempts(store)
    assert attempt.status_code is None and attempt.error is not None
    assert "MEMQ_WEBHOOK_TIMEOUT_S" in attempt.error


def test_a_refused_connection_is_retried(store: JobStore, http: httpx.Client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    _finished(store, f"http://127.0.0.1:{closed_port}/hook")
    assert _sender(store, http).deliver(TENANT, "j1", "d-1") == 1.0
    [attempt] = _attempts(store)
    assert attempt.status_code is None and attempt.error and "ConnectError" in attempt.error


def test_a_private_address_is_refused_unless_allowed(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    _finished(store, receiver.url)
    assert _sender(store, http, allow_private=False).deliver(TENANT, "j1", "d-1") is None
    assert receiver.received == []
    job = store.get(TENANT, "j1")
    assert job is not None and job.webhook is not None and job.webhook.gave_up
    [attempt] = job.webhook.attempts
    assert attempt.error is not None and "MEMQ_WEBHOOK_ALLOW_PRIVATE" in attempt.error


def _resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.0.7", "172.16.5.5", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(WebhookAddressRefused, match=address):
        resolve_target(
            "https://hooks.example.com/x", allow_private=False, resolve=_resolver(address)
        )


def test_one_non_public_address_among_public_ones_is_refused() -> None:
    with pytest.raises(WebhookAddressRefused):
        resolve_target(
            "https://hooks.example.com/x",
            allow_private=False,
            resolve=_resolver("93.184.216.34", "10.0.0.1"),
        )


def test_the_connection_is_pinned_to_the_checked_address() -> None:
    target = resolve_target(
        "https://hooks.example.com:8443/in?x=1#frag",
        allow_private=False,
        resolve=_resolver("93.184.216.34"),
    )
    assert target.url == "https://93.184.216.34:8443/in?x=1"
    assert target.host == "hooks.example.com:8443"
    assert target.sni_hostname == "hooks.example.com"
    global_v6 = resolve_target(
        "http://h.example/", allow_private=False, resolve=_resolver("2606:4700::1111")
    )
    assert global_v6.url == "http://[2606:4700::1111]/"
    assert global_v6.sni_hostname is None


def test_a_pinned_delivery_reaches_the_address_with_the_original_host_header(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    _finished(store, f"http://receiver.test:{port}/hooks/memq")
    sender = WebhookSender(store, _policy(), http, resolve=_resolver("127.0.0.1"))
    assert sender.deliver(TENANT, "j1", "d-1") is None
    [delivery] = receiver.received
    assert delivery.headers["Host"] == f"receiver.test:{port}"


def test_a_name_that_does_not_resolve_is_retried(store: JobStore, http: httpx.Client) -> None:
    _finished(store, "http://no-such-host.invalid/hook")

    def fail(*_: Any, **__: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    sender = WebhookSender(store, _policy(), http, resolve=fail)
    assert sender.deliver(TENANT, "j1", "d-1") == 1.0
    [attempt] = _attempts(store)
    assert attempt.error is not None and "cannot resolve" in attempt.error


def test_a_cancelled_running_job_waits_for_its_partial_text(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    store.create(TENANT, "j1", GenerateJobRequest(prompt="hi", callback_url=receiver.url))
    running = store.start(TENANT, "j1", worker="w", engine="e").record
    assert running is not None
    assert store.cancel(TENANT, "j1") is not None
    assert store.webhooks.begin(TENANT, "j1", receiver.url)
    sender = _sender(store, http)
    assert sender.deliver(TENANT, "j1", "d-1") == PARTIAL_POLL_S
    assert receiver.received == [] and _attempts(store) == []

    assert store.attach_partial(running, _result("half"))
    assert sender.deliver(TENANT, "j1", "d-1") is None
    job = JobPublic.model_validate_json(receiver.received[0].body)
    assert job.status == JobStatus.cancelled and job.result and job.result.text == "half"


def test_the_partial_text_is_not_awaited_forever(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    store.create(TENANT, "j1", GenerateJobRequest(prompt="hi", callback_url=receiver.url))
    assert store.start(TENANT, "j1", worker="w", engine="e").record is not None
    cancelled = store.cancel(TENANT, "j1")
    assert cancelled is not None and store.webhooks.begin(TENANT, "j1", receiver.url)
    later = cancelled.timestamps[JobStatus.cancelled] + timedelta(seconds=30)
    sender = WebhookSender(store, _policy(), http, clock=later.timestamp)
    assert sender.deliver(TENANT, "j1", "d-1") is None
    assert JobPublic.model_validate_json(receiver.received[0].body).result is None


def test_attempts_recorded_concurrently_are_all_kept(store: JobStore, receiver: Receiver) -> None:
    _finished(store, receiver.url)
    at = datetime.now(UTC)

    def record(i: int) -> None:
        attempt = WebhookAttempt(at=at, status_code=500 + i)
        store.webhooks.record_attempt(TENANT, "j1", attempt, delivered=False, gave_up=False)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code or 0 for a in _attempts(store)) == list(range(500, 520))


def test_webhook_bookkeeping_never_overwrites_the_jobs_record(
    store: JobStore, receiver: Receiver
) -> None:
    store.create(TENANT, "j1", GenerateJobRequest(prompt="hi", callback_url=receiver.url))
    running = store.start(TENANT, "j1", worker="w", engine="e").record
    assert running is not None and store.cancel(TENANT, "j1") is not None
    assert store.webhooks.begin(TENANT, "j1", receiver.url)
    attempt = WebhookAttempt(at=datetime.now(UTC), status_code=500)
    store.webhooks.record_attempt(TENANT, "j1", attempt, delivered=False, gave_up=False)
    # the worker attaches the partial text from a record it read before that attempt
    assert store.attach_partial(running, _result("half"))
    job = store.get(TENANT, "j1")
    assert job is not None and job.webhook is not None and job.result is not None
    assert [a.status_code for a in job.webhook.attempts] == [500]
    assert job.status == JobStatus.cancelled and job.result.text == "half"


def test_nothing_is_recorded_on_an_expired_record(store: JobStore, receiver: Receiver) -> None:
    assert not store.webhooks.begin(TENANT, "gone", receiver.url)
    assert not store.r.exists(store.keys.job(TENANT, "gone"))
    attempt = WebhookAttempt(at=datetime.now(UTC), status_code=200)
    assert (
        store.webhooks.record_attempt(TENANT, "gone", attempt, delivered=True, gave_up=False)
        is None
    )


def test_the_secret_is_made_once_and_rotation_keeps_the_old_one_signing_for_a_while(
    store: JobStore, http: httpx.Client, receiver: Receiver
) -> None:
    first = store.webhooks.secret(TENANT)
    assert first.secret.startswith("whsec_") and first.previous_valid_until is None
    assert store.webhooks.secret(TENANT) == first
    assert store.webhooks.secret("other").secret != first.secret

    rotated = store.webhooks.secret(TENANT, rotate=True)
    assert rotated.secret != first.secret and rotated.previous_valid_until is not None
    assert store.webhooks.signing_secrets(TENANT) == [rotated.secret, first.secret]

    _finished(store, receiver.url)
    _sender(store, http).deliver(TENANT, "j1", "d-1")
    [delivery] = receiver.received
    assert verify(rotated.secret, delivery.headers, delivery.body) == "d-1"
    assert verify(first.secret, delivery.headers, delivery.body) == "d-1"
    assert delivery.headers[SIGNATURE_HEADER].count("v1=") == 2

    # once the overlap is over only the new secret signs
    store.r.hset(store.keys.webhook_secret(TENANT), "previous_until", first.created_at.isoformat())
    assert store.webhooks.signing_secrets(TENANT) == [rotated.secret]
    assert store.webhooks.secret(TENANT).previous_valid_until is None
    with pytest.raises(InvalidWebhook):
        verify("whsec_guess", delivery.headers, delivery.body)


class RecordingCelery:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **kwargs: Any) -> None:
        self.sent.append({"name": name, **kwargs})


@pytest.mark.parametrize("ended_by", ["worker success", "worker failure", "cancel", "reconciler"])
def test_a_job_with_a_callback_is_queued_once_on_the_high_queue_whoever_ends_it(
    redis_client: redis.Redis, ended_by: str
) -> None:
    settings = worker_settings(queue="memq.t")
    celery = RecordingCelery()
    queue = WebhookQueue(celery, JobStore(redis_client).webhooks, settings)
    gateway, worker = JobStore(redis_client, hooks=[queue]), JobStore(redis_client, hooks=[queue])
    worker.create(TENANT, "j1", GenerateJobRequest(prompt="hi", callback_url="https://h.example/"))
    worker.create(TENANT, "quiet", GenerateJobRequest(prompt="hi"))
    for job_id in ("j1", "quiet"):
        record = worker.start(TENANT, job_id, worker="w", engine="e").record
        assert record is not None
        if ended_by == "worker success":
            assert worker.succeed(record, _result())
        elif ended_by == "worker failure":
            assert worker.fail(record, ErrorResponse(error="internal_error", message="x"))
        elif ended_by == "cancel":
            assert gateway.cancel(TENANT, job_id) is not None
        else:
            assert worker.fail(record, ErrorResponse(error="expired", message="too old"))
        # a second observer of the same end (a late commit, a second cancel) queues nothing
        assert not worker.succeed(record, _result())
        assert gateway.cancel(TENANT, job_id) is None

    [sent] = celery.sent
    assert sent["name"] == DELIVER_WEBHOOK_TASK
    assert sent["queue"] == "memq.t.high"
    assert sent["args"][:2] == [TENANT, "j1"] and sent["task_id"] == sent["args"][2]
    job = gateway.get(TENANT, "j1")
    assert job is not None and job.webhook is not None
    assert job.webhook.url == "https://h.example/" and job.webhook.attempts == []
    assert not gateway.webhooks.begin(TENANT, "j1", "https://h.example/")


def test_a_hook_that_fails_leaves_the_transition_committed(redis_client: redis.Redis) -> None:
    def broken(_: JobRecord) -> None:
        raise RuntimeError("broker down")

    store = JobStore(redis_client, hooks=[broken])
    store.create(TENANT, "j1", GenerateJobRequest(prompt="hi"))
    assert store.cancel(TENANT, "j1") is not None
    assert store.status(TENANT, "j1") == JobStatus.cancelled


@pytest.fixture
def task(redis_server: str, redis_client: redis.Redis) -> Iterator[Any]:
    app = create_celery_app(worker_settings(redis_url=redis_server, queue="memq.test-hooks"))
    deliver: Any = app.tasks[DELIVER_WEBHOOK_TASK]
    yield deliver
    deliver._sender = None
    app.close()


def test_the_task_runs_again_after_the_wait_an_attempt_asks_for(
    task: Any, store: JobStore, http: httpx.Client, receiver: Receiver, monkeypatch: Any
) -> None:
    assert isinstance(task, DeliverWebhook)
    receiver.statuses = [500]
    _finished(store, receiver.url)
    task._sender = _sender(store, http, backoff_s=7.0)
    asked: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Retry:
        asked.append(kwargs)
        return Retry(when=kwargs.get("countdown"))

    monkeypatch.setattr(task, "retry", retry)
    with pytest.raises(Retry):
        task.run(TENANT, "j1", "d-1")
    assert asked == [{"countdown": 7.0}]
    task.run(TENANT, "j1", "d-1")  # delivered: no retry asked
    assert [a.status_code for a in _attempts(store)] == [500, 200]


def _count(found: dict[str, float], counter: metrics.Counter, *labels: str) -> float:
    key = json.dumps([counter.name, list(labels), ""], separators=(",", ":"))
    return found.get(key, 0.0)
