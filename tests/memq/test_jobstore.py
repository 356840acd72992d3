"""Job records on a real Redis: lifecycle, tenant-scoped keys, commit-at-most-once."""

from __future__ import annotations

import redis

from memq.contracts import (
    ErrorResponse,
    GenerateJobRequest,
    JobResult,
    JobStatus,
    JobTimings,
    TokenUsage,
)
from memq.jobstore import JobStore


def _result(text: str) -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text=text, model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt="p"
    )


def test_lifecycle_records_a_timestamp_per_state(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "j1", GenerateJobRequest(prompt="hi"))
    assert store.status("acme", "j1") == JobStatus.queued
    running = store.start("acme", "j1", engine="simple")
    assert running is not None and running.attempts == 1
    assert store.succeed(running, _result("out"))
    job = store.get("acme", "j1")
    assert job is not None and job.status == JobStatus.succeeded
    assert job.result is not None and job.result.text == "out"
    assert list(job.timestamps) == [JobStatus.queued, JobStatus.running, JobStatus.succeeded]
    assert redis_client.ttl(store.key("acme", "j1")) > 0  # finished records expire


def test_result_is_committed_at_most_once(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "j2", GenerateJobRequest(prompt="hi"))
    first = store.start("acme", "j2", engine="simple")
    second = store.start("acme", "j2", engine="simple")  # redelivered after a worker death
    assert first is not None and second is not None and second.attempts == 2
    assert store.succeed(second, _result("second"))
    assert not store.succeed(first, _result("first"))
    assert not store.fail(first, ErrorResponse(error="x", message="late failure"))
    job = store.get("acme", "j2")
    assert job is not None and job.result is not None and job.result.text == "second"
    assert store.start("acme", "j2", engine="simple") is None  # finished: never rerun


def test_jobs_are_scoped_by_tenant(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "j3", GenerateJobRequest(prompt="hi"))
    assert store.get("beta", "j3") is None
    assert store.start("beta", "j3", engine="simple") is None
    assert all(k.startswith(b"memq:acme:") for k in redis_client.keys("*j3*"))


def test_progress_is_visible_while_running(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "j4", GenerateJobRequest(prompt="hi"))
    store.start("acme", "j4", engine="batched")
    store.set_progress("acme", "j4", 3, "abc")
    job = store.get("acme", "j4")
    assert job is not None and job.progress is not None
    assert (job.progress.tokens, job.progress.text) == (3, "abc")
