"""Job records on a real Redis: lifecycle, tenant-scoped keys, commit-at-most-once, events."""

from __future__ import annotations

import time

import pytest
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
from memq.jobstore import EVENTS_MAXLEN, JobKeys, JobStore, QuotaExceeded, TokenUpdate


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
    store = JobStore(redis_client, ttl_s=1234, max_unfinished_age_s=100_000)
    store.create("acme", "j1", GenerateJobRequest(prompt="hi"))
    assert store.status("acme", "j1") == JobStatus.queued
    assert redis_client.ttl(store.keys.job("acme", "j1")) > 100_000  # unfinished: far bound
    running = store.start("acme", "j1", worker="w1", engine="simple").record
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
    first = store.start("acme", "j2", worker="w1", engine="simple").record
    # redelivered to another worker after the first one was lost (its lease lapsed)
    redis_client.delete(store.keys.lease("acme", "j2"))
    second = store.start("acme", "j2", worker="w2", engine="simple").record
    assert first is not None and second is not None and second.attempts == 2
    assert store.succeed(second, _result("second"))
    assert not store.succeed(first, _result("first"))
    assert not store.fail(first, ErrorResponse(error="x", message="late failure"))
    job = store.get("acme", "j2")
    assert job is not None and job.result is not None and job.result.text == "second"
    assert job.error is None
    assert (
        store.start("acme", "j2", worker="w1", engine="simple").record is None
    )  # finished: never rerun
    assert _statuses(store, "acme", "j2") == ["running", "running", "succeeded"]


def test_fail_records_the_error_and_ends_the_job(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=60)
    store.create("acme", "jf", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "jf", worker="w1", engine="batched").record
    assert running is not None
    assert store.fail(running, ErrorResponse(error="boom", message="it broke"))
    job = store.get("acme", "jf")
    assert job is not None and job.status == JobStatus.failed
    assert job.error is not None and (job.error.error, job.error.message) == ("boom", "it broke")
    assert JobStatus.failed in job.timestamps
    assert 0 < redis_client.ttl(store.keys.job("acme", "jf")) <= 60
    assert not store.succeed(running, _result("late"))
    assert store.start("acme", "jf", worker="w1", engine="batched").record is None


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
    assert (
        store.start("acme", "c1", worker="w1", engine="simple").record is None
    )  # a cancelled job never runs

    store.create("acme", "c2", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "c2", worker="w1", engine="simple").record
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
    assert store.start("acme", "d1", worker="w1", engine="simple").record is not None
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
    assert store.start("beta", "j3", worker="w1", engine="simple").record is None
    assert all(k.startswith(b"memq:acme:") for k in redis_client.keys("*j3*"))


def test_progress_and_token_events_while_running(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=99)
    store.create("acme", "j4", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "j4", worker="w1", engine="batched").record is not None
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
    assert store.start("acme", "j5", worker="w1", engine="batched").record is not None
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


# --------------------------------------------------------------------- delivery bookkeeping


def test_a_running_job_leased_by_a_live_worker_is_not_started_elsewhere(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, lease_ttl_s=30)
    store.create("acme", "l1", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "l1", worker="w1", engine="e").record is not None
    assert redis_client.get(store.keys.lease("acme", "l1")) == b"w1"
    assert 0 < redis_client.pttl(store.keys.lease("acme", "l1")) <= 30_000
    duplicate = store.start("acme", "l1", worker="w2", engine="e")
    assert duplicate.record is None and duplicate.reason == "held by another worker"
    again = store.start("acme", "l1", worker="w1", engine="e")  # same worker: allowed
    assert again.record is not None and again.record.attempts == 2


def test_a_redelivery_keeps_the_first_running_timestamp_and_counts_attempts(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "r1", GenerateJobRequest(prompt="hi"))
    first = store.start("acme", "r1", worker="w1", engine="e").record
    assert first is not None
    redis_client.delete(store.keys.lease("acme", "r1"))  # w1 died
    second = store.start("acme", "r1", worker="w2", engine="e").record
    assert second is not None
    assert second.attempts == 2 and second.worker == "w2"
    assert second.timestamps[JobStatus.running] == first.timestamps[JobStatus.running]


def test_after_max_lost_workers_the_job_fails_with_worker_lost_instead_of_looping(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "m1", GenerateJobRequest(prompt="hi"))
    for n in range(1, 4):
        redis_client.delete(store.keys.lease("acme", "m1"))  # worker w{n-1} died
        started = store.start("acme", "m1", worker=f"w{n}", engine="e", max_lost=3)
        assert started.record is not None and started.record.attempts == n
        assert started.record.lost_workers == n - 1
    redis_client.delete(store.keys.lease("acme", "m1"))
    outcome = store.start("acme", "m1", worker="w4", engine="e", max_lost=3)
    assert outcome.record is None and "3 lost workers" in outcome.reason
    job = store.get("acme", "m1")
    assert job is not None and job.status == JobStatus.failed
    assert job.error is not None and job.error.error == "worker_lost"
    assert "lost 3 times" in job.error.message


def test_planned_retries_do_not_count_as_lost_workers(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "p1", GenerateJobRequest(prompt="hi"))
    for n in range(1, 6):
        started = store.start("acme", "p1", worker="w1", engine="e", max_lost=1)
        assert started.record is not None and started.record.attempts == n
        assert store.requeue(started.record)
        assert store.status("acme", "p1") == JobStatus.queued
    job = store.get("acme", "p1")
    assert job is not None and job.lost_workers == 0
    assert not store.requeue(job)  # only a running job can go back to the queue


def test_leases_are_taken_renewed_and_released_only_by_their_holder(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, lease_ttl_s=5)
    assert store.take_lease("acme", "x", "w1")
    assert not store.take_lease("acme", "x", "w2")
    assert store.take_lease("acme", "x", "w1")  # idempotent for the holder
    assert store.renew_leases([("acme", "x"), ("acme", "y")], "w1") == [True, False]
    assert store.renew_leases([("acme", "x")], "w2") == [False]
    store.release_lease("acme", "x", "w2")  # not the holder: no effect
    assert store.leased([("acme", "x"), ("acme", "y")]) == [True, False]
    store.release_lease("acme", "x", "w1")
    assert store.leased([("acme", "x")]) == [False]
    assert store.renew_leases([], "w1") == [] and store.leased([]) == []


def test_unfinished_jobs_are_indexed_until_they_end(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "a1", GenerateJobRequest(prompt="hi"))
    store.create("beta", "a2", GenerateJobRequest(prompt="hi"))
    assert store.active_jobs() == [("acme", "a1"), ("beta", "a2")]
    assert store.unfinished_count("acme") == 1
    running = store.start("acme", "a1", worker="w1", engine="e").record
    assert running is not None and store.succeed(running, _result("x"))
    assert store.active_jobs() == [("beta", "a2")]
    assert store.unfinished_count("acme") == 0
    assert redis_client.exists(store.keys.lease("acme", "a1")) == 0  # released on commit
    store.drop_active("beta", "a2")
    assert store.active_jobs() == [] and store.unfinished_count("beta") == 0


def test_create_refuses_past_the_tenants_quota_of_unfinished_jobs(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "q1", GenerateJobRequest(prompt="hi"), quota=2)
    store.create("acme", "q2", GenerateJobRequest(prompt="hi"), quota=2)
    with pytest.raises(QuotaExceeded):
        store.create("acme", "q3", GenerateJobRequest(prompt="hi"), quota=2)
    assert store.get("acme", "q3") is None
    store.create("beta", "q4", GenerateJobRequest(prompt="hi"), quota=2)  # other tenant
    store.cancel("acme", "q1")
    store.create("acme", "q3", GenerateJobRequest(prompt="hi"), quota=2)


def test_unfinished_records_expire_eventually(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=100, max_unfinished_age_s=1000)
    store.create("acme", "e1", GenerateJobRequest(prompt="hi"))
    assert 1000 < redis_client.ttl(store.keys.job("acme", "e1")) <= 1100


def test_worker_heartbeats_tell_which_workers_are_live(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.heartbeat("w1")
    redis_client.zadd(store.keys.workers(), {"old": time.time() - 60})
    assert store.live_workers(within_s=10) == ["w1"]
    store.forget_worker("w1")
    assert store.live_workers(within_s=10) == []


def test_one_worker_at_a_time_holds_the_reconciler_lock(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    assert store.try_lock_reconciler("w1", ttl_s=5)
    assert not store.try_lock_reconciler("w2", ttl_s=5)
    assert store.try_lock_reconciler("w1", ttl_s=5)
    redis_client.delete(store.keys.reconciler())
    assert store.try_lock_reconciler("w2", ttl_s=5)
