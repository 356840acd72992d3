"""Job records on a real Redis: lifecycle, tenant-scoped keys, commit-at-most-once, events."""

from __future__ import annotations

import redis

from memq.contracts import (
    ErrorResponse,
    GenerateJobRequest,
    JobResult,
    JobStatus,
    JobTimings,
    JobType,
    ModelInfo,
    TokenUsage,
)
from memq.jobstore import EVENTS_MAXLEN, JobKeys, JobStore, TokenUpdate


def _result(text: str) -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text=text, model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt="p"
    )


def _statuses(store: JobStore, tenant: str, job_id: str) -> list[str]:
    return [e["status"] for _, e in store.read_events(tenant, job_id) if e["event"] == "status"]


def test_key_schema_is_tenant_scoped_and_prefixed() -> None:
    keys = JobKeys("pfx")
    assert keys.job("acme", "j") == "pfx:acme:job:j"
    assert keys.progress("acme", "j") == "pfx:acme:job:j:progress"
    assert keys.events("acme", "j") == "pfx:acme:job:j:events"
    assert keys.index("acme") == "pfx:acme:jobs"
    assert keys.model() == "pfx:model"


def test_lifecycle_records_a_timestamp_per_state_and_expires_finished_records(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, ttl_s=1234)
    store.create("acme", "j1", GenerateJobRequest(prompt="hi"))
    assert store.status("acme", "j1") == JobStatus.queued
    assert redis_client.ttl(store.keys.job("acme", "j1")) == -1  # unfinished: no expiry yet
    running = store.start("acme", "j1", engine="simple")
    assert running is not None and running.attempts == 1 and running.engine == "simple"
    assert store.succeed(running, _result("out"))
    job = store.get("acme", "j1")
    assert job is not None and job.status == JobStatus.succeeded
    assert job.result is not None and job.result.text == "out"
    assert list(job.timestamps) == [JobStatus.queued, JobStatus.running, JobStatus.succeeded]
    assert 1200 < redis_client.ttl(store.keys.job("acme", "j1")) <= 1234
    assert 1200 < redis_client.ttl(store.keys.events("acme", "j1")) <= 1234
    assert _statuses(store, "acme", "j1") == ["running", "succeeded"]
    assert redis_client.zscore(store.keys.index("acme"), "j1") is not None


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
    assert job.error is None
    assert store.start("acme", "j2", engine="simple") is None  # finished: never rerun
    assert _statuses(store, "acme", "j2") == ["running", "running", "succeeded"]


def test_fail_records_the_error_and_ends_the_job(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=60)
    store.create("acme", "jf", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "jf", engine="batched")
    assert running is not None
    assert store.fail(running, ErrorResponse(error="boom", message="it broke"))
    job = store.get("acme", "jf")
    assert job is not None and job.status == JobStatus.failed
    assert job.error is not None and (job.error.error, job.error.message) == ("boom", "it broke")
    assert JobStatus.failed in job.timestamps
    assert 0 < redis_client.ttl(store.keys.job("acme", "jf")) <= 60
    assert not store.succeed(running, _result("late"))
    assert store.start("acme", "jf", engine="batched") is None


def test_a_queued_job_can_fail_before_it_ever_ran(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    record = store.create("acme", "jq", GenerateJobRequest(prompt="hi"))
    assert store.fail(record, ErrorResponse(error="x", message="never ran"))
    assert store.status("acme", "jq") == JobStatus.failed


def test_cancel_ends_queued_and_running_jobs_but_not_finished_ones(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "c1", GenerateJobRequest(prompt="hi"))
    cancelled = store.cancel("acme", "c1")
    assert cancelled is not None and cancelled.status == JobStatus.cancelled
    assert store.start("acme", "c1", engine="simple") is None  # a cancelled job never runs

    store.create("acme", "c2", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "c2", engine="simple")
    assert running is not None
    assert store.cancel("acme", "c2") is not None
    assert not store.succeed(running, _result("too late"))  # cancellation wins
    assert store.status("acme", "c2") == JobStatus.cancelled

    assert store.cancel("acme", "c2") is None  # already ended
    assert store.cancel("acme", "nope") is None
    assert store.cancel("beta", "c1") is None


def test_delete_removes_every_key_of_the_job(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "d1", GenerateJobRequest(prompt="hi"))
    store.start("acme", "d1", engine="simple")
    store.publish_tokens([TokenUpdate("acme", "d1", 1, "a", 0, "a")])
    store.delete("acme", "d1")
    assert store.get("acme", "d1") is None
    assert redis_client.exists(store.keys.progress("acme", "d1")) == 0
    assert redis_client.exists(store.keys.events("acme", "d1")) == 0
    assert redis_client.zscore(store.keys.index("acme"), "d1") is None


def test_jobs_are_scoped_by_tenant(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "j3", GenerateJobRequest(prompt="hi"))
    assert store.get("beta", "j3") is None
    assert store.status("beta", "j3") is None
    assert store.start("beta", "j3", engine="simple") is None
    assert all(k.startswith(b"memq:acme:") for k in redis_client.keys("*j3*"))


def test_progress_and_token_events_while_running(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=99)
    store.create("acme", "j4", GenerateJobRequest(prompt="hi"))
    store.start("acme", "j4", engine="batched")
    store.publish_tokens(
        [
            TokenUpdate("acme", "j4", 1, "ab", 0, "ab"),
            TokenUpdate("acme", "j4", 2, "abc", 2, "c"),
            TokenUpdate("acme", "j4", 3, "abX", 2, "X"),  # tail rewritten
        ]
    )
    job = store.get("acme", "j4")
    assert job is not None and job.progress is not None
    assert (job.progress.tokens, job.progress.text) == (3, "abX")
    assert 0 < redis_client.ttl(store.keys.progress("acme", "j4")) <= 99
    tokens = [e for _, e in store.read_events("acme", "j4") if e["event"] == "token"]
    assert tokens == [
        {"event": "token", "tokens": 1, "offset": 0, "delta": "ab"},
        {"event": "token", "tokens": 2, "offset": 2, "delta": "c"},
        {"event": "token", "tokens": 3, "offset": 2, "delta": "X"},
    ]
    text = ""
    for e in tokens:
        text = text[: e["offset"]] + e["delta"]
    assert text == "abX"
    # progress is dropped when the job ends; the finished record carries the result instead
    running = store.get("acme", "j4")
    assert running is not None and store.succeed(running, _result("abX"))
    assert redis_client.exists(store.keys.progress("acme", "j4")) == 0
    done = store.get("acme", "j4")
    assert done is not None and done.progress is None


def test_read_events_resumes_after_a_given_event_id(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "j5", GenerateJobRequest(prompt="hi"))
    store.start("acme", "j5", engine="batched")
    store.publish_tokens([TokenUpdate("acme", "j5", n, "x" * n, n - 1, "x") for n in (1, 2, 3)])
    events = store.read_events("acme", "j5")
    assert len(events) == 4
    after_second = store.read_events("acme", "j5", after=events[1][0])
    assert after_second == events[2:]
    assert store.read_events("acme", "j5", after=events[-1][0]) == []
    assert EVENTS_MAXLEN >= 2 * 1024  # room for every token of the longest job


def test_statuses_reads_many_jobs_in_order(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "s1", GenerateJobRequest(prompt="hi"))
    store.create("beta", "s2", GenerateJobRequest(prompt="hi"))
    store.cancel("beta", "s2")
    assert store.statuses([("acme", "s1"), ("beta", "s2"), ("acme", "s2")]) == [
        JobStatus.queued,
        JobStatus.cancelled,
        None,
    ]
    assert store.statuses([]) == []


def test_model_info_round_trips(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, prefix="other")
    assert store.model_info() is None
    info = ModelInfo(
        name="m", context_window=64, tokenizer_json="{}", template_tokens={JobType.summarize: 5}
    )
    store.publish_model(info)
    assert store.model_info() == info
    assert redis_client.get("other:model") is not None
