"""Job records on a real Redis: lifecycle, tenant-scoped keys, commit-at-most-once, events."""

from __future__ import annotations

import time
from datetime import UTC, datetime

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
from memq.jobstore import (
    EVENTS_MAXLEN,
    IdempotencyConflict,
    JobKeys,
    JobStore,
    QuotaExceeded,
    TokenUpdate,
)


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
    record = store.create("acme", "jq", GenerateJobRequest(prompt="hi")).record
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


# ------------------------------------------------------------------- job API bookkeeping


def test_an_idempotency_key_returns_the_original_job_for_the_same_body(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    first = store.create("acme", "i1", GenerateJobRequest(prompt="hi"), idempotency_key="k")
    again = store.create("acme", "i2", GenerateJobRequest(prompt="hi"), idempotency_key="k")
    assert not first.existing and again.existing
    assert again.record.id == "i1" and store.get("acme", "i2") is None
    assert 86000 < redis_client.ttl(store.keys.idempotency("acme", "k")) <= 86400
    with pytest.raises(IdempotencyConflict) as err:
        store.create("acme", "i3", GenerateJobRequest(prompt="other"), idempotency_key="k")
    assert err.value.original_id == "i1"
    other_tenant = store.create("beta", "i4", GenerateJobRequest(prompt="hi"), idempotency_key="k")
    assert not other_tenant.existing  # keys are per tenant


def test_a_failed_dispatch_forgets_the_idempotency_key_too(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "i5", GenerateJobRequest(prompt="hi"), idempotency_key="k2")
    store.delete("acme", "i5", idempotency_key="k2")
    again = store.create("acme", "i6", GenerateJobRequest(prompt="hi"), idempotency_key="k2")
    assert not again.existing and again.record.id == "i6"


def test_an_idempotency_key_whose_job_expired_makes_a_new_job(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "i7", GenerateJobRequest(prompt="hi"), idempotency_key="k3")
    redis_client.delete(store.keys.job("acme", "i7"))
    again = store.create("acme", "i8", GenerateJobRequest(prompt="hi"), idempotency_key="k3")
    assert not again.existing and store.get("acme", "i8") is not None


BASE = float(int(time.time()) - 3600)


def _create_at(store: JobStore, job_id: str, offset_s: float, **request: object) -> None:
    store.create("acme", job_id, GenerateJobRequest.model_validate({"prompt": "hi", **request}))
    store.r.zadd(store.keys.index("acme"), {job_id: BASE + offset_s})


def test_listing_is_newest_first_paged_by_cursor_and_filtered(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    for i in range(7):
        _create_at(store, f"l{i}", i)
    _create_at(store, "tie-a", 3)  # same instant as l3
    store.cancel("acme", "l5")
    pages, cursor = [], None
    while True:
        items, cursor = store.list_jobs("acme", limit=3, cursor=cursor)
        pages.append([i.id for i in items])
        if cursor is None:
            break
    flat = [i for page in pages for i in page]
    assert flat == ["l6", "l5", "l4", "tie-a", "l3", "l2", "l1", "l0"]
    assert all(len(p) <= 3 for p in pages)
    cancelled, _ = store.list_jobs("acme", limit=10, statuses=[JobStatus.cancelled])
    assert [i.id for i in cancelled] == ["l5"]
    window, _ = store.list_jobs(
        "acme",
        limit=10,
        created_after=datetime.fromtimestamp(BASE + 2, UTC),
        created_before=datetime.fromtimestamp(BASE + 5, UTC),
    )
    assert [i.id for i in window] == ["l4", "tie-a", "l3", "l2"]
    none, cursor = store.list_jobs("acme", limit=10, types=[JobType.summarize])
    assert none == [] and cursor is None
    assert store.list_jobs("beta", limit=10) == ([], None)
    with pytest.raises(ValueError, match="not a cursor"):
        store.list_jobs("acme", limit=3, cursor="garbage")


def test_an_expired_record_is_told_apart_from_an_unknown_id(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "x1", GenerateJobRequest(prompt="hi"))
    assert not store.expired("acme", "x1")
    redis_client.delete(store.keys.job("acme", "x1"))
    assert store.expired("acme", "x1")
    assert not store.expired("acme", "never") and not store.expired("beta", "x1")
    items, _ = store.list_jobs("acme", limit=10)
    assert items == []  # expired records are skipped in listings


def test_a_cancelled_job_keeps_its_partial_result_once(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "p2", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "p2", worker="w1", engine="e").record
    assert running is not None
    assert not store.attach_partial(running, _result("too early"))  # still running
    store.cancel("acme", "p2")
    assert store.attach_partial(running, _result("half"))
    assert not store.attach_partial(running, _result("again"))
    job = store.get("acme", "p2")
    assert job is not None and job.status == JobStatus.cancelled
    assert job.result is not None and job.result.text == "half"
    events = [e["event"] for _, e in store.read_events("acme", "p2")]
    assert events == ["status", "status", "partial"]


def test_the_summary_follows_every_transition(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    _create_at(store, "s9", 5, metadata={"team": "a"}, priority="high")
    running = store.start("acme", "s9", worker="w1", engine="e").record
    assert running is not None
    store.fail(running, ErrorResponse(error="boom", message="m"))
    (item,), _ = store.list_jobs("acme", limit=1)
    assert (item.status, item.error, item.priority.value) == (JobStatus.failed, "boom", "high")
    assert item.metadata == {"team": "a"}
    assert set(item.timestamps) == {JobStatus.queued, JobStatus.running, JobStatus.failed}
