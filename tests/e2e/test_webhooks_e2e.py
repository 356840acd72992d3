"""Webhooks on the real stack: a job with a callback_url is POSTed to it exactly once when it
ends, signed with the tenant's secret; a job the gateway cancels fires its webhook too (a
running one with its partial text); a refused first attempt is retried and every attempt
shows on the job; the secret is the tenant's own and rotates."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from memq.contracts import JobPublic, JobStatus
from memq.ops.launcher import Stack
from memq.webhooks import ID_HEADER, verify
from tests.e2e.ops import FUZZ_KEY, submit, wait_for_job
from tests.utils.stack import paused
from tests.utils.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def _delivery_settled(http: httpx.Client, job_id: str, timeout: float = 60) -> JobPublic:
    """The job once its webhook was delivered or given up (recorded after the POST)."""
    deadline = time.monotonic() + timeout
    while True:
        job = JobPublic.model_validate(http.get(f"/v1/jobs/{job_id}").json())
        if job.webhook is not None and (job.webhook.delivered_at or job.webhook.gave_up):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"webhook of job {job_id}: {job.webhook}")
        time.sleep(0.05)


def _secret(http: httpx.Client) -> str:
    resp = http.get("/v1/webhooks/secret")
    assert resp.status_code == 200, resp.text
    secret: str = resp.json()["secret"]
    return secret


def test_a_finished_job_is_posted_once_signed_to_its_callback_url(
    ops_http: httpx.Client, receiver: Receiver
) -> None:
    path = "/hooks/finished"
    job_id = submit(ops_http, callback_url=receiver.url + path, params={"max_new_tokens": 8})
    final = wait_for_job(ops_http, job_id)
    assert final.status == JobStatus.succeeded
    [delivery] = receiver.wait_for(1, path=path)
    settled = _delivery_settled(ops_http, job_id)

    assert verify(_secret(ops_http), delivery.headers, delivery.body)
    posted = json.loads(delivery.body)
    shown = ops_http.get(f"/v1/jobs/{job_id}").json()
    assert posted == {k: v for k, v in shown.items() if k != "webhook"}
    assert settled.webhook is not None and settled.webhook.delivered_at is not None
    assert [(a.status_code, a.error) for a in settled.webhook.attempts] == [(200, None)]
    assert not settled.webhook.gave_up
    # the delivery is recorded, so nothing can post it again
    assert len([d for d in receiver.received if d.path == path]) == 1


def test_a_job_cancelled_while_queued_fires_its_webhook(
    ops_stack: Stack, ops_http: httpx.Client, receiver: Receiver
) -> None:
    path = "/hooks/cancelled-queued"
    with paused(ops_stack):
        job_id = submit(ops_http, callback_url=receiver.url + path)
        resp = ops_http.post(f"/v1/jobs/{job_id}/cancel")
        assert resp.status_code == 200, resp.text
    [delivery] = receiver.wait_for(1, path=path)
    assert verify(_secret(ops_http), delivery.headers, delivery.body)
    posted = JobPublic.model_validate_json(delivery.body)
    assert (posted.id, posted.status, posted.result) == (job_id, JobStatus.cancelled, None)
    _delivery_settled(ops_http, job_id)
    assert len([d for d in receiver.received if d.path == path]) == 1


def test_a_job_cancelled_while_running_is_posted_with_its_partial_text(
    ops_http: httpx.Client, receiver: Receiver
) -> None:
    path = "/hooks/cancelled-running"
    job_id = submit(
        ops_http,
        prompt="Alice lives in",
        callback_url=receiver.url + path,
        params={"max_new_tokens": 1000},
    )
    deadline = time.monotonic() + 120
    while True:  # cancel once it has generated something
        job = JobPublic.model_validate(ops_http.get(f"/v1/jobs/{job_id}").json())
        if job.progress is not None and job.progress.tokens > 0:
            break
        assert not job.status.terminal, job
        assert time.monotonic() < deadline, "the job never started generating"
        time.sleep(0.02)
    assert ops_http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    [delivery] = receiver.wait_for(1, path=path)
    posted = JobPublic.model_validate_json(delivery.body)
    assert posted.status == JobStatus.cancelled
    assert posted.result is not None and posted.result.finish_reason == "cancelled"
    assert posted.result.usage.completion_tokens > 0


def test_a_refused_attempt_is_retried_and_every_attempt_shows_on_the_job(
    ops_http: httpx.Client, receiver: Receiver
) -> None:
    path = "/hooks/flaky"
    receiver.statuses = [503, 500]
    job_id = submit(ops_http, callback_url=receiver.url + path, params={"max_new_tokens": 4})
    deliveries = receiver.wait_for(3, path=path)
    settled = _delivery_settled(ops_http, job_id)
    assert settled.webhook is not None
    assert [a.status_code for a in settled.webhook.attempts] == [503, 500, 200]
    assert settled.webhook.delivered_at is not None
    assert len({d.headers[ID_HEADER] for d in deliveries}) == 1  # one delivery, retried
    assert len({d.body for d in deliveries}) == 1


def test_a_receiver_that_refuses_is_given_up_on(ops_http: httpx.Client, receiver: Receiver) -> None:
    path = "/hooks/gone"
    receiver.statuses = [410]
    job_id = submit(ops_http, callback_url=receiver.url + path, params={"max_new_tokens": 4})
    settled = _delivery_settled(ops_http, job_id)
    assert settled.webhook is not None and settled.webhook.gave_up
    assert [a.status_code for a in settled.webhook.attempts] == [410]
    assert len(receiver.wait_for(1, path=path)) == 1


def test_the_webhook_secret_is_the_tenants_own_and_rotates(
    ops_stack: Stack, ops_http: httpx.Client, receiver: Receiver
) -> None:
    with httpx.Client(
        base_url=ops_stack.gateway_url, headers={"X-API-Key": FUZZ_KEY}, timeout=60
    ) as other:
        other_secret = other.get("/v1/webhooks/secret").json()["secret"]
    assert httpx.get(f"{ops_stack.gateway_url}/v1/webhooks/secret").status_code == 401
    before = _secret(ops_http)
    assert _secret(ops_http) == before != other_secret

    resp = ops_http.post("/v1/webhooks/secret/rotate")
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["secret"] != before and after["previous_valid_until"] is not None
    assert _secret(ops_http) == after["secret"]

    path = "/hooks/rotated"
    submit(ops_http, callback_url=receiver.url + path, params={"max_new_tokens": 4})
    [delivery] = receiver.wait_for(1, path=path)
    assert verify(after["secret"], delivery.headers, delivery.body)
    assert verify(before, delivery.headers, delivery.body)  # receivers switch at leisure
