"""Job records on a real Redis (memq.store.jobs): lifecycle, tenant-scoped keys,
commit-at-most-once, listings, events, the terminal hooks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from memq import metrics
from memq.contracts import (
    ErrorResponse,
    GenerateJobRequest,
    JobPublic,
    JobResult,
    JobStatus,
    JobTimings,
    JobType,
    ModelInfo,
    SummarizeJobRequest,
    TokenUsage,
)
from memq.errors import IdempotencyConflict, QuotaExceeded
from memq.ops.process import free_port
from memq.settings import CommonSettings
from memq.store.jobs import (
    EVENTS_MAXLEN,
    Created,
    JobRecord,
    JobStore,
    StartOutcome,
    TokenUpdate,
    decode_cursor,
    encode_cursor,
)
from tests.utils.redis_monitor import commands_since


def _result(text: str) -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text=text, model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt="p"
    )


def _statuses(store: JobStore, tenant: str, job_id: str) -> list[str]:
    return [e["status"] for _, e in store.read_events(tenant, job_id) if e["event"] == "status"]


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


def test_unfinished_jobs_are_indexed_until_they_end(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "a1", GenerateJobRequest(prompt="hi"))
    store.create("beta", "a2", GenerateJobRequest(prompt="hi"))
    assert store.active_jobs() == [("acme", "a1"), ("beta", "a2")]
    assert store.active_jobs(tenant="acme") == [("acme", "a1")]
    running = store.start("acme", "a1", worker="w1", engine="e").record
    assert running is not None and store.succeed(running, _result("x"))
    assert store.active_jobs() == [("beta", "a2")]
    assert store.active_jobs(tenant="acme") == []
    assert redis_client.exists(store.keys.lease("acme", "a1")) == 0  # released on commit
    store.drop_active("beta", "a2")
    assert store.active_jobs() == [] and store.active_jobs(tenant="beta") == []


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


# ------------------------------------------------------------- every key, value and default


def test_outcomes_and_token_updates_are_immutable_values() -> None:
    record = JobRecord(
        id="j",
        type=JobType.generate,
        status=JobStatus.queued,
        tenant="acme",
        created_at=datetime.now(UTC),
        request=GenerateJobRequest(prompt="hi"),
    )
    values: list[Any] = [
        TokenUpdate("acme", "j", 1, "a", 0, "a"),
        Created(record),
        StartOutcome(None, "why"),
    ]
    for value in values:
        field = next(iter(dataclasses.fields(value))).name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, None)
    assert Created(record).existing is False
    assert StartOutcome(record).reason == ""


def test_store_defaults_a_week_of_records_and_ten_second_leases(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    assert store.keys.prefix == "memq"
    assert (store.ttl_s, store.leases.ttl_ms, store.max_unfinished_age_s) == (
        604_800,
        10_000,
        604_800,
    )
    assert store.index_retention_s == 604_800 + 604_800 + 30 * 86_400
    assert JobStore(redis_client, lease_ttl_s=0.25).leases.ttl_ms == 250
    assert JobStore(redis_client, lease_ttl_s=30).leases.ttl_ms == 30_000


def test_store_from_settings_uses_their_redis_prefix_and_ages(redis_server: str) -> None:
    settings = CommonSettings(
        redis_url=redis_server,
        key_prefix="fromenv",
        job_ttl_seconds=77,
        lease_ttl_s=2.5,
        max_queued_s=100,
        job_timeout_s=20,
    )
    store = JobStore.from_settings(settings)
    try:
        assert store.keys.prefix == "fromenv"
        assert (store.ttl_s, store.leases.ttl_ms, store.max_unfinished_age_s) == (77, 2500, 120)
        store.ping()
        store.create("acme", "fs1", GenerateJobRequest(prompt="hi"))
        assert store.r.exists("fromenv:acme:job:fs1") == 1
    finally:
        store.r.close()


def test_ping_raises_when_redis_cannot_be_reached() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        JobStore(client).ping()


def test_a_record_shows_the_public_view_without_bookkeeping(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    record = store.create("acme", "pv", GenerateJobRequest(prompt="hi")).record
    assert record.lost_workers == 0 and record.engine is None
    public = record.public(status_url="https://x/v1/jobs/pv")
    assert type(public) is JobPublic
    assert public.status_url == "https://x/v1/jobs/pv" and public.id == "pv"
    assert "engine" not in public.model_dump() and "lost_workers" not in public.model_dump()
    assert record.public().status_url is None


# ----------------------------------------------------------------------- cursors and listings


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def test_a_cursor_round_trips_its_exact_score_and_id() -> None:
    position = (1712345678.123456, "job|with-bar")
    assert decode_cursor(encode_cursor(position)) == position
    assert decode_cursor(encode_cursor((2.0, "j"))) == (2.0, "j")
    assert decode_cursor(_b64(b"5.5|j")) == (5.5, "j")


@pytest.mark.parametrize(
    "cursor",
    ["garbage", _b64(b"nan|j"), _b64(b"1.0|"), _b64(b"1.0"), _b64(b"x|j"), _b64(b"\xff|j")],
)
def test_a_cursor_this_store_did_not_issue_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match=r"^not a cursor this service issued$"):
        decode_cursor(cursor)


def test_a_cursor_inside_a_tie_continues_after_its_id(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    for job_id, offset in [("a", 1), ("b", 2), ("c", 2), ("d", 2), ("e", 3)]:
        _create_at(store, job_id, offset)
    for limit in (1, 2, 3, 4):
        flat, cursor = [], None
        while True:
            items, cursor = store.list_jobs("acme", limit=limit, cursor=cursor)
            flat += [i.id for i in items]
            if cursor is None:
                break
        assert flat == ["e", "d", "c", "b", "a"], limit
    first, cursor = store.list_jobs("acme", limit=2)
    assert [i.id for i in first] == ["e", "d"]
    assert cursor is not None and decode_cursor(cursor) == (BASE + 2, "d")


def test_a_listing_reads_on_past_a_page_of_filtered_out_jobs(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    for i in range(120):
        _create_at(store, f"m{i:03}", i)
    store.cancel("acme", "m000")
    store.cancel("acme", "m002")
    items, cursor = store.list_jobs("acme", limit=10, statuses=[JobStatus.cancelled])
    assert [i.id for i in items] == ["m002", "m000"] and cursor is None
    items, cursor = store.list_jobs("acme", limit=1, statuses=[JobStatus.cancelled])
    assert [i.id for i in items] == ["m002"] and cursor is not None
    items, cursor = store.list_jobs("acme", limit=1, cursor=cursor, statuses=[JobStatus.cancelled])
    assert [i.id for i in items] == ["m000"]
    everything, cursor = store.list_jobs("acme", limit=200)
    assert [i.id for i in everything] == [f"m{i:03}" for i in reversed(range(120))]
    assert cursor is None


def test_a_listing_filters_by_status_and_type_together(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "g1", GenerateJobRequest(prompt="hi"))
    store.create("acme", "s1", SummarizeJobRequest(text="some text"))
    store.create("acme", "s2", SummarizeJobRequest(text="some text"))
    store.cancel("acme", "s2")
    store.cancel("acme", "g1")

    def ids(**filters: Any) -> set[str]:
        return {i.id for i in store.list_jobs("acme", limit=10, **filters)[0]}

    assert ids(types=[JobType.summarize]) == {"s1", "s2"}
    assert ids(statuses=[JobStatus.cancelled]) == {"g1", "s2"}
    assert ids(statuses=[JobStatus.cancelled], types=[JobType.summarize]) == {"s2"}
    assert ids(statuses=[JobStatus.queued], types=[JobType.generate]) == set()
    assert ids() == {"g1", "s1", "s2"}


# ------------------------------------------------------------------------- create and delete


def test_the_same_body_in_another_key_order_is_the_same_idempotent_request(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    first = GenerateJobRequest(prompt="hi", metadata={"a": "1", "b": "2"})
    again = GenerateJobRequest(prompt="hi", metadata={"b": "2", "a": "1"})
    store.create("acme", "o1", first, idempotency_key="k")
    created = store.create("acme", "o2", again, idempotency_key="k")
    assert created.existing and created.record.id == "o1"
    assert 86_380 < redis_client.ttl(store.keys.idempotency("acme", "k")) <= 86_400


def test_an_idempotency_conflict_names_the_original_job(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "c1", GenerateJobRequest(prompt="hi"), idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as err:
        store.create("acme", "c2", GenerateJobRequest(prompt="other"), idempotency_key="k")
    assert err.value.original_id == "c1"
    assert err.value.message == (
        "the Idempotency-Key was used for job c1 with a different request body"
    )
    assert (err.value.status_code, err.value.code) == (422, "idempotency_key_reused")


def test_the_quota_message_names_the_tenant_and_the_limit(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "q1", GenerateJobRequest(prompt="hi"), quota=1)
    message = r"^tenant 'acme' already has 1 unfinished jobs$"
    with pytest.raises(QuotaExceeded, match=message) as err:
        store.create("acme", "q2", GenerateJobRequest(prompt="hi"), quota=1)
    assert (err.value.status_code, err.value.code) == (429, "too_many_jobs")


def test_creating_a_job_prunes_index_entries_past_the_retention(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, ttl_s=100, max_unfinished_age_s=1000)
    retention = 1000 + 100 + 30 * 86_400
    assert store.index_retention_s == retention
    now = time.time()
    index = store.keys.index("acme")
    redis_client.zadd(index, {"gone": now - retention - 20, "kept": now - retention + 20})
    store.create("acme", "new", GenerateJobRequest(prompt="hi"))
    assert redis_client.zscore(index, "gone") is None
    assert redis_client.zscore(index, "kept") is not None
    assert redis_client.zscore(index, "new") is not None
    redis_client.zadd(index, {"gone": now - retention - 20})
    store.create_many("acme", [("bulk", GenerateJobRequest(prompt="hi"), "1")], group="g")
    assert redis_client.zscore(index, "gone") is None
    assert redis_client.zscore(index, "kept") is not None


def test_delete_removes_every_trace_of_the_job_in_one_transaction(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "d2", GenerateJobRequest(prompt="hi"), idempotency_key="dk")
    store.create("acme", "keep", GenerateJobRequest(prompt="hi"), idempotency_key="other")
    assert store.start("acme", "d2", worker="w1", engine="e").record is not None
    store.publish_tokens([TokenUpdate("acme", "d2", 1, "a", 0, "a")])
    traces = [
        store.keys.job("acme", "d2"),
        store.keys.progress("acme", "d2"),
        store.keys.events("acme", "d2"),
        store.keys.lease("acme", "d2"),
        store.keys.idempotency("acme", "dk"),
    ]
    assert redis_client.exists(*traces) == 5
    with redis_client.monitor() as monitor:
        store.delete("acme", "d2", idempotency_key="dk")
        commands = commands_since(monitor, redis_client)
    assert redis_client.exists(*traces) == 0
    assert redis_client.zscore(store.keys.index("acme"), "d2") is None
    assert store.active_jobs() == [("acme", "keep")]
    assert store.active_jobs(tenant="acme") == [("acme", "keep")]
    assert store.get("acme", "keep") is not None
    assert redis_client.exists(store.keys.idempotency("acme", "other")) == 1
    assert commands[0] == "MULTI" and commands[-1] == "EXEC"
    assert commands.count("DEL") == 2 and commands.count("ZREM") == 3


def test_delete_without_an_idempotency_key_leaves_the_keys_alone(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "d3", GenerateJobRequest(prompt="hi"), idempotency_key="dk3")
    store.delete("acme", "d3")
    assert store.get("acme", "d3") is None
    assert redis_client.exists(store.keys.idempotency("acme", "dk3")) == 1


# ----------------------------------------------------------------------------- transitions


def test_start_says_why_it_skips_a_job(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    unknown = store.start("acme", "nope", worker="w1", engine="e")
    assert unknown == StartOutcome(None, "unknown (expired or never accepted)")
    store.create("acme", "s1", GenerateJobRequest(prompt="hi"))
    store.cancel("acme", "s1")
    assert store.start("acme", "s1", worker="w1", engine="e") == StartOutcome(
        None, "already cancelled"
    )
    store.create("acme", "s2", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "s2", worker="w1", engine="e").record
    assert running is not None and store.succeed(running, _result("x"))
    assert store.start("acme", "s2", worker="w1", engine="e").reason == "already succeeded"


def test_a_job_started_then_cancelled_before_its_compare_and_set_does_not_run(
    redis_client: redis.Redis,
) -> None:
    gateway = JobStore(redis_client)

    class CancelledMeanwhile(JobStore):
        def get(self, tenant: str, job_id: str) -> JobRecord | None:
            record = super().get(tenant, job_id)
            gateway.cancel(tenant, job_id)
            return record

    store = CancelledMeanwhile(redis_client)
    store.create("acme", "cm", GenerateJobRequest(prompt="hi"))
    outcome = store.start("acme", "cm", worker="w1", engine="e")
    assert outcome == StartOutcome(None, "changed while starting (cancelled or finished)")
    assert store.status("acme", "cm") == JobStatus.cancelled
    assert redis_client.exists(store.keys.lease("acme", "cm")) == 0


def test_a_lost_worker_limit_does_not_fail_a_job_another_worker_still_holds(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "h1", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "h1", worker="w1", engine="e", max_lost=1).record is not None
    outcome = store.start("acme", "h1", worker="w2", engine="e", max_lost=1)
    assert outcome == StartOutcome(None, "held by another worker")
    job = store.get("acme", "h1")
    assert job is not None and job.status == JobStatus.running and job.worker == "w1"
    assert job.lost_workers == 0 and job.attempts == 1


def test_a_first_start_counts_no_lost_worker(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "f1", GenerateJobRequest(prompt="hi"))
    started = store.start("acme", "f1", worker="w1", engine="e", max_lost=1).record
    assert started is not None and started.lost_workers == 0 and started.attempts == 1
    job = store.get("acme", "f1")
    assert job is not None and job.lost_workers == 0 and job.attempts == 1


def test_a_transition_to_running_keeps_the_record_lease_and_active_index(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, ttl_s=100, max_unfinished_age_s=1000)
    store.create("acme", "k1", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "k1", worker="w1", engine="e").record is not None
    assert redis_client.ttl(store.keys.job("acme", "k1")) > 1000
    assert redis_client.ttl(store.keys.events("acme", "k1")) == -1  # no expiry until it ends
    assert redis_client.get(store.keys.lease("acme", "k1")) == b"w1"
    assert store.active_jobs() == [("acme", "k1")]
    assert store.active_jobs(tenant="acme") == [("acme", "k1")]


def test_a_requeued_job_shows_no_progress_of_its_last_run(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "rq", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "rq", worker="w1", engine="e").record
    assert running is not None
    store.publish_tokens([TokenUpdate("acme", "rq", 2, "ab", 0, "ab")])
    assert store.requeue(running)
    queued = store.get("acme", "rq")
    assert queued is not None and queued.status == JobStatus.queued and queued.progress is None
    assert _statuses(store, "acme", "rq") == ["running", "queued"]


def test_cancel_queued_leaves_running_and_unknown_jobs_alone(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "cq1", GenerateJobRequest(prompt="hi"))
    cancelled = store.cancel_queued("acme", "cq1")
    assert cancelled is not None and cancelled.status == JobStatus.cancelled
    assert cancelled.id == "cq1" and JobStatus.cancelled in cancelled.timestamps
    assert store.status("acme", "cq1") == JobStatus.cancelled
    assert _statuses(store, "acme", "cq1") == ["cancelled"]
    store.create("acme", "cq2", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "cq2", worker="w1", engine="e").record is not None
    assert store.cancel_queued("acme", "cq2") is None
    assert store.status("acme", "cq2") == JobStatus.running
    assert store.cancel_queued("acme", "nope") is None
    assert store.cancel_queued("acme", "cq1") is None


def test_a_partial_result_is_refused_with_false(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    assert (
        store.attach_partial(
            JobRecord(
                id="gone",
                type=JobType.generate,
                status=JobStatus.cancelled,
                tenant="acme",
                created_at=datetime.now(UTC),
                request=GenerateJobRequest(prompt="hi"),
            ),
            _result("x"),
        )
        is False
    )
    record = store.create("acme", "pr", GenerateJobRequest(prompt="hi")).record
    assert store.attach_partial(record, _result("x")) is False  # queued, not cancelled
    store.cancel("acme", "pr")
    assert store.attach_partial(record, _result("x")) is True
    assert store.attach_partial(record, _result("y")) is False


# --------------------------------------------------------------------- job ends: hooks, metrics


def test_the_terminal_hook_and_the_metrics_run_once_for_the_transition_that_won(
    redis_client: redis.Redis,
) -> None:
    ended: list[tuple[str, JobStatus]] = []
    store = JobStore(redis_client, hooks=[lambda record: ended.append((record.id, record.status))])
    store.create("acme", "t1", GenerateJobRequest(prompt="hi"))
    running = store.start("acme", "t1", worker="w1", engine="e").record
    assert running is not None
    assert ended == []  # starting is no end
    assert store.succeed(running, _result("x"))
    assert not store.succeed(running, _result("again"))
    assert not store.fail(running, ErrorResponse(error="late", message="m"))
    assert store.cancel("acme", "t1") is None
    assert ended == [("t1", JobStatus.succeeded)]
    finished = {k: v for k, v in store.metrics.read().items() if "memq_jobs_finished" in k}
    assert finished == {'["memq_jobs_finished",["generate","succeeded"],""]': 1.0}


def test_a_failing_observer_neither_undoes_nor_stops_the_others(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(record: JobRecord) -> None:
        raise RuntimeError("observer broke")

    store = JobStore(redis_client, hooks=[broken, lambda record: seen.append(record.id)])
    store.create("acme", "o1", GenerateJobRequest(prompt="hi"))
    with caplog.at_level(logging.WARNING, logger="memq.store.jobs"):
        assert store.cancel("acme", "o1") is not None
    assert seen == ["o1"]
    assert store.status("acme", "o1") == JobStatus.cancelled
    (logged,) = [r for r in caplog.records if r.name == "memq.store.jobs"]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None
    assert logged.getMessage().startswith("job o1: what follows its end (")


@pytest.mark.parametrize(
    ("error", "level", "message"),
    [
        (
            redis.ConnectionError("down"),
            logging.WARNING,
            "job m1: not counted in the metrics (down)",
        ),
        (ValueError("bad"), logging.ERROR, "job m1: not counted in the metrics"),
    ],
)
def test_metrics_that_cannot_be_counted_are_logged_and_the_job_still_ends(
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    level: int,
    message: str,
) -> None:
    seen: list[str] = []
    store = JobStore(redis_client, hooks=[lambda record: seen.append(record.id)])

    def add_metrics(update: metrics.MetricUpdate) -> None:
        raise error

    monkeypatch.setattr(store.metrics, "add", add_metrics)
    store.create("acme", "m1", GenerateJobRequest(prompt="hi"))
    with caplog.at_level(logging.WARNING, logger="memq.store.jobs"):
        assert store.cancel("acme", "m1") is not None
    assert seen == ["m1"]
    (logged,) = [r for r in caplog.records if r.name == "memq.store.jobs"]
    assert (logged.levelno, logged.getMessage()) == (level, message)


# ------------------------------------------------------------------------ progress and events


def test_token_events_of_several_jobs_in_one_call(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=99)
    for job_id in ("a", "b"):
        store.create("acme", job_id, GenerateJobRequest(prompt="hi"))
        assert store.start("acme", job_id, worker="w1", engine="e").record is not None
    store.publish_tokens(
        [
            TokenUpdate("acme", "a", 1, "x", 0, "x"),
            TokenUpdate("acme", "b", 1, "y", 0, "y"),
            TokenUpdate("acme", "a", 2, "xz", 1, "z"),
        ]
    )
    store.publish_tokens([])
    a, b = store.get("acme", "a"), store.get("acme", "b")
    assert (
        a is not None
        and a.progress is not None
        and (a.progress.tokens, a.progress.text)
        == (
            2,
            "xz",
        )
    )
    assert (
        b is not None
        and b.progress is not None
        and (b.progress.tokens, b.progress.text)
        == (
            1,
            "y",
        )
    )
    for job_id in ("a", "b"):
        assert 0 < redis_client.ttl(store.keys.events("acme", job_id)) <= 99
        assert 0 < redis_client.ttl(store.keys.progress("acme", job_id)) <= 99


def test_training_progress_is_an_event_and_the_latest_step(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=99)
    store.create("acme", "tr", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "tr", worker="w1", engine="e").record is not None
    store.publish_progress("acme", "tr", step=1, total=10, loss=2.5)
    store.publish_progress("acme", "tr", step=2, total=10, loss=0.125)
    events = [e for _, e in store.read_events("acme", "tr") if e["event"] == "progress"]
    assert events == [
        {"event": "progress", "step": 1, "total": 10, "loss": 2.5},
        {"event": "progress", "step": 2, "total": 10, "loss": 0.125},
    ]
    job = store.get("acme", "tr")
    assert job is not None and job.progress is not None
    assert job.progress.model_dump() == {
        "tokens": 0,
        "text": "",
        "step": 2,
        "total_steps": 10,
        "loss": 0.125,
    }
    assert 0 < redis_client.ttl(store.keys.progress("acme", "tr")) <= 99
    assert 0 < redis_client.ttl(store.keys.events("acme", "tr")) <= 99


def test_events_read_on_an_asyncio_client(redis_client: redis.Redis, redis_server: str) -> None:
    store = JobStore(redis_client)
    store.create("acme", "as", GenerateJobRequest(prompt="hi"))
    assert store.start("acme", "as", worker="w1", engine="e").record is not None
    store.publish_tokens([TokenUpdate("acme", "as", 1, "x", 0, "x")])

    async def read() -> list[tuple[str, dict[str, Any]]]:
        client = redis.asyncio.Redis.from_url(redis_server)
        try:
            return await store.read_events_async(client, "acme", "as")
        finally:
            await client.aclose()

    events = asyncio.run(read())
    assert events == store.read_events("acme", "as")
    assert [e for _, e in events] == [
        {"event": "status", "status": "running"},
        {"event": "token", "tokens": 1, "offset": 0, "delta": "x"},
    ]
    assert store.read_events("acme", "nothing") == []


@contextlib.contextmanager
def _stream_nodes_of_one_entry(client: redis.Redis) -> Iterator[None]:
    """Approximate trimming drops whole stream nodes: with one entry per node it is exact."""
    old = client.config_get("stream-node-max-entries")["stream-node-max-entries"]
    client.config_set("stream-node-max-entries", 1)
    try:
        yield
    finally:
        client.config_set("stream-node-max-entries", old)


_FILL = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'event', 'token', 'tokens', i, 'offset', 0, 'delta', 'x')
end
"""


def _fill_stream(client: redis.Redis, key: str, n: int) -> None:
    """Append `n` token events, untrimmed (server-side: one round trip)."""
    client.eval(_FILL, 1, key, n)


def test_a_jobs_stream_keeps_its_last_twenty_thousand_events(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("acme", "long", GenerateJobRequest(prompt="hi"))
    events = store.keys.events("acme", "long")
    with _stream_nodes_of_one_entry(redis_client):
        running = store.start("acme", "long", worker="w1", engine="e").record
        assert running is not None
        _fill_stream(redis_client, events, 20_010)
        store.publish_tokens([TokenUpdate("acme", "long", 1, "x", 0, "x")])
        assert redis_client.xlen(events) == 20_000
        _fill_stream(redis_client, events, 5)
        store.publish_progress("acme", "long", step=1, total=2, loss=1.0)
        assert redis_client.xlen(events) == 20_000
        _fill_stream(redis_client, events, 5)
        assert store.succeed(running, _result("x"))
        assert redis_client.xlen(events) == 20_000
    last = redis_client.xrevrange(events, count=1)[0][1]
    assert last == {b"event": b"status", b"status": b"succeeded"}


def test_stream_trimming_is_approximate_whole_nodes_at_a_time(redis_client: redis.Redis) -> None:
    # Exact trimming would cost a node rewrite on every event; Redis' default node holds
    # 100 entries, and a stream a few events past the limit keeps them.
    store = JobStore(redis_client)
    events = store.keys.events("acme", "ap")
    _fill_stream(redis_client, events, 20_010)
    store.publish_tokens([TokenUpdate("acme", "ap", 1, "x", 0, "x")])
    assert redis_client.xlen(events) == 20_011
    store.publish_progress("acme", "ap", step=1, total=2, loss=1.0)
    assert redis_client.xlen(events) == 20_012


# -------------------------------------------------------------- unfinished jobs (the index)


def test_active_jobs_are_listed_oldest_first_up_to_a_limit(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    for job_id, tenant in [("j1", "acme"), ("j2", "beta"), ("j3", "acme"), ("j4", "acme")]:
        store.create(tenant, job_id, GenerateJobRequest(prompt="hi"))
    assert store.active_jobs() == [("acme", "j1"), ("beta", "j2"), ("acme", "j3"), ("acme", "j4")]
    assert store.active_jobs(2) == [("acme", "j1"), ("beta", "j2")]
    assert store.active_jobs(1) == [("acme", "j1")]
    assert store.active_jobs(tenant="acme") == [("acme", "j1"), ("acme", "j3"), ("acme", "j4")]
    assert store.active_jobs(2, tenant="acme") == [("acme", "j1"), ("acme", "j3")]
    assert store.active_jobs(1, tenant="acme") == [("acme", "j1")]
    assert store.active_jobs(tenant="gamma") == []


def test_active_jobs_reads_at_most_a_hundred_thousand_by_default(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    redis_client.eval(
        "for i = 1, 100001 do redis.call('ZADD', KEYS[1], i, i) end",
        1,
        store.keys.tenant_active("t"),
    )
    listed = store.active_jobs(tenant="t")
    assert len(listed) == 100_000 and listed[-1] == ("t", "100000")


# ---------------------------------------------------------------------- bulk creation (batches)


def test_create_many_records_only_the_missing_jobs_outside_the_quota(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, ttl_s=100, max_unfinished_age_s=1000)
    assert store.create_many("acme", [], group="g") == []
    jobs = [(f"b{i}", GenerateJobRequest(prompt=f"p{i}"), str(i)) for i in range(3)]
    assert store.create_many("acme", jobs[:2], group="grp") == ["b0", "b1"]
    assert store.create_many("acme", jobs, group="grp") == ["b2"]  # a retry makes the rest
    for i in range(3):
        job = store.get("acme", f"b{i}")
        assert job is not None and job.status == JobStatus.queued
        assert isinstance(job.request, GenerateJobRequest) and job.request.prompt == f"p{i}"
        assert list(job.timestamps) == [JobStatus.queued]
        assert 1000 < redis_client.ttl(store.keys.job("acme", f"b{i}")) <= 1100
    assert redis_client.hgetall("grp") == {b"b0": b"0", b"b1": b"1", b"b2": b"2"}
    assert [i.id for i in store.list_jobs("acme", limit=10)[0]] == ["b2", "b1", "b0"]
    assert store.active_jobs() == [("acme", "b0"), ("acme", "b1"), ("acme", "b2")]
    # Outside the tenant's quota (a batch is bounded by its own limits): a quota of 1 still
    # takes one job, and only one.
    assert store.active_jobs(tenant="acme") == []
    store.create("acme", "q1", GenerateJobRequest(prompt="hi"), quota=1)
    with pytest.raises(QuotaExceeded):
        store.create("acme", "q2", GenerateJobRequest(prompt="hi"), quota=1)


def test_fail_ends_the_job_like_every_terminal_transition(redis_client: redis.Redis) -> None:
    ended: list[tuple[str, JobStatus]] = []
    store = JobStore(
        redis_client, ttl_s=60, hooks=[lambda record: ended.append((record.id, record.status))]
    )
    store.create("acme", "fq", GenerateJobRequest(prompt="hi"))
    store.create("acme", "fr", GenerateJobRequest(prompt="hi"))
    queued = store.get("acme", "fq")
    running = store.start("acme", "fr", worker="w1", engine="e").record
    assert queued is not None and running is not None
    assert store.fail(queued, ErrorResponse(error="bad", message="never ran"))
    assert store.fail(running, ErrorResponse(error="boom", message="broke"))
    assert _statuses(store, "acme", "fq") == ["failed"]
    assert _statuses(store, "acme", "fr") == ["running", "failed"]
    assert ended == [("fq", JobStatus.failed), ("fr", JobStatus.failed)]
    assert store.active_jobs() == [] and store.active_jobs(tenant="acme") == []
    assert redis_client.exists(store.keys.lease("acme", "fr")) == 0
    for job_id in ("fq", "fr"):
        assert 0 < redis_client.ttl(store.keys.job("acme", job_id)) <= 60
        assert 0 < redis_client.ttl(store.keys.events("acme", job_id)) <= 60
    listed = store.list_jobs("acme", limit=10, statuses=[JobStatus.failed])[0]
    assert {item.id: item.error for item in listed} == {"fq": "bad", "fr": "boom"}
    failed = store.metrics.read()['["memq_jobs_finished",["generate","failed"],""]']
    assert failed == 2.0
    assert not store.fail(running, ErrorResponse(error="again", message="m"))
    job = store.get("acme", "fr")
    assert job is not None and job.error is not None and job.error.error == "boom"
