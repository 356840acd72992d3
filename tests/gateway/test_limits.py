"""Limits on a real Redis: the per-key rate limit (429 + Retry-After) and queue-depth
backpressure (503 + Retry-After), each refusing before anything is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway.core.config import GatewaySettings
from gateway.core.limits import QUEUE_FULL_RETRY_AFTER_S
from gateway.main import create_app
from memq.contracts import GenerationParams, JobResult, JobTimings, TokenUsage
from memq.store.jobs import JobStore

QUEUE = "memq.test"
JOB = {"type": "generate", "prompt": "hi"}
ACME = {"Authorization": "Bearer k-acme"}
BETA = {"Authorization": "Bearer k-beta"}


def _settings(redis_server: str, **extra: Any) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_server,
        queue=QUEUE,
        service_token="t",  # type: ignore[arg-type]
        **extra,
    )


@pytest.fixture
def app_factory(redis_server: str, redis_client: redis.Redis) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**extra: Any) -> TestClient:
        client = TestClient(create_app(_settings(redis_server, **extra)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _queued(client: redis.Redis) -> int:
    return sum(int(client.llen(q)) for q in (f"{QUEUE}.high", QUEUE, f"{QUEUE}.low"))


def _job_records(client: redis.Redis) -> list[bytes]:
    return [k for k in client.scan_iter("memq:*:job:*") if k.count(b":") == 3]


# ------------------------------------------------------------------------- rate limit


def test_a_key_past_its_rate_gets_429_with_retry_after_and_others_do_not(
    app_factory: Any,
) -> None:
    api = app_factory(api_keys={"k-acme": "acme", "k-beta": "beta"}, rate_limit="3/hour")
    for _ in range(3):
        assert api.get("/v1/jobs", headers=ACME).status_code == 200
    resp = api.get("/v1/jobs", headers=ACME)
    assert resp.status_code == 429
    body = resp.json()
    assert body["error"] == "rate_limited"
    assert "3 requests per hour per API key (MEMQ_RATE_LIMIT)" in body["message"]
    retry_after = int(resp.headers["retry-after"])
    # When the oldest of the three requests leaves the one-hour window: the rate's window,
    # not a fixed guess.
    assert 60 < retry_after <= 3600
    assert f"retry after {retry_after} s" in body["message"]
    # Another key has its own count.
    assert api.get("/v1/jobs", headers=BETA).status_code == 200


def test_a_rate_limited_submission_records_and_queues_nothing(
    app_factory: Any, redis_client: redis.Redis
) -> None:
    api = app_factory(api_keys={"k-acme": "acme"}, rate_limit="2/minute")
    assert api.post("/v1/jobs", json=JOB, headers=ACME).status_code == 202
    assert api.get("/v1/jobs", headers=ACME).status_code == 200
    refused = api.post("/v1/jobs", json=JOB, headers=ACME)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert _queued(redis_client) == 1
    assert len(_job_records(redis_client)) == 1


def test_without_authentication_the_tenant_is_counted(app_factory: Any) -> None:
    api = app_factory(rate_limit="2/minute")
    assert api.get("/v1/jobs").status_code == 200
    assert api.get("/v1/jobs", headers={"X-API-Key": "ignored"}).status_code == 200
    assert api.get("/v1/jobs").status_code == 429


def test_open_routes_and_refused_keys_are_not_counted(app_factory: Any) -> None:
    api = app_factory(api_keys={"k-acme": "acme"}, rate_limit="1/minute")
    assert api.get("/v1/jobs", headers=ACME).status_code == 200
    assert api.get("/v1/jobs", headers=ACME).status_code == 429
    assert api.get("/livez").status_code == 200
    # Authentication comes first: no key is a 401, never a 429.
    assert api.get("/v1/jobs").status_code == 401


def test_the_count_is_shared_by_every_gateway_on_the_redis(app_factory: Any) -> None:
    first = app_factory(api_keys={"k-acme": "acme"}, rate_limit="2/minute")
    second = app_factory(api_keys={"k-acme": "acme"}, rate_limit="2/minute")
    assert first.get("/v1/jobs", headers=ACME).status_code == 200
    assert second.get("/v1/jobs", headers=ACME).status_code == 200
    assert first.get("/v1/jobs", headers=ACME).status_code == 429


def test_no_rate_limit_by_default(app_factory: Any) -> None:
    api = app_factory(api_keys={"k-acme": "acme"})
    for _ in range(30):
        assert api.get("/v1/jobs", headers=ACME).status_code == 200


@pytest.mark.parametrize("rate", ["lots", "0/minute", "-1/second", "10/fortnight"])
def test_a_bad_rate_fails_at_start_with_the_format(redis_server: str, rate: str) -> None:
    with pytest.raises(ValidationError, match="600/minute"):
        _settings(redis_server, rate_limit=rate)


# ------------------------------------------------------------------------ queue depth


def test_a_full_queue_refuses_submissions_with_503_and_records_nothing(
    app_factory: Any, redis_client: redis.Redis
) -> None:
    api = app_factory(api_keys={"k-acme": "acme"}, max_queue_depth=2)
    high = {**JOB, "priority": "high"}
    low = {**JOB, "priority": "low"}
    assert api.post("/v1/jobs", json=high, headers=ACME).status_code == 202
    assert api.post("/v1/jobs", json=low, headers=ACME).status_code == 202
    refused = api.post("/v1/jobs", json=JOB, headers=ACME)
    assert refused.status_code == 503
    body = refused.json()
    assert body["error"] == "queue_full"
    assert "2 jobs waiting (MEMQ_MAX_QUEUE_DEPTH = 2)" in body["message"]
    assert refused.headers["retry-after"] == str(QUEUE_FULL_RETRY_AFTER_S)
    assert _queued(redis_client) == 2
    assert len(_job_records(redis_client)) == 2
    assert len(api.get("/v1/jobs", headers=ACME).json()["items"]) == 2
    # Reads are not refused while the queues are full.
    assert api.get("/v1/jobs", headers=ACME).status_code == 200


def test_the_queue_bound_counts_every_tenant(app_factory: Any) -> None:
    api = app_factory(api_keys={"k-acme": "acme", "k-beta": "beta"}, max_queue_depth=1)
    assert api.post("/v1/jobs", json=JOB, headers=ACME).status_code == 202
    assert api.post("/v1/jobs", json=JOB, headers=BETA).status_code == 503


def test_authentication_comes_before_the_queue_check(app_factory: Any) -> None:
    api = app_factory(api_keys={"k-acme": "acme"}, max_queue_depth=1)
    assert api.post("/v1/jobs", json=JOB, headers=ACME).status_code == 202
    assert api.post("/v1/jobs", json=JOB).status_code == 401


def test_a_replay_is_refused_like_a_submission_when_the_queue_is_full(
    app_factory: Any, redis_client: redis.Redis
) -> None:
    api = app_factory(api_keys={"k-acme": "acme"}, max_queue_depth=2)
    job_id = api.post("/v1/jobs", json=JOB, headers=ACME).json()["id"]
    # Finish it as a worker would (its message stays queued: no worker consumes here).
    store = JobStore(redis_client)
    running = store.start("acme", job_id, worker="w", engine="simple").record
    assert running is not None
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    result = JobResult(
        text="x",
        model="m",
        finish_reason="length",
        usage=usage,
        timings=JobTimings(),
        prompt="hi",
        params=GenerationParams(),
    )
    assert store.succeed(running, result)
    assert api.post(f"/v1/jobs/{job_id}/replay", headers=ACME).status_code == 202
    refused = api.post(f"/v1/jobs/{job_id}/replay", headers=ACME)
    assert refused.status_code == 503
    assert refused.json()["error"] == "queue_full"
    assert _queued(redis_client) == 2
    assert len(_job_records(redis_client)) == 2
