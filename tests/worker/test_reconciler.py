"""The reconciler on a real Redis with real Celery messages: a job nobody holds and no
queue has is sent again (after a grace period); everything else is left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from memq.broker import (
    RUN_JOB_TASK,
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    producer_app,
    unacked_job_ids,
)
from memq.contracts import GenerateJobRequest, JobStatus
from memq.settings import CommonSettings
from memq.store.jobs import JobStore
from worker.reconciler import LeaseKeeper, Reconciler

QUEUE = "memq.test-reconcile"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, lease_ttl_s=30)


@pytest.fixture
def send_message(redis_server: str) -> Iterator[object]:
    app = producer_app(CommonSettings(redis_url=redis_server, queue=QUEUE))

    def send(tenant: str, job_id: str) -> None:
        app.send_task(RUN_JOB_TASK, args=[job_id, tenant], task_id=job_id, queue=QUEUE)

    yield send
    app.close()


def _reconciler(store: JobStore, sent: list[tuple[str, str]], clock: Clock) -> Reconciler:
    return Reconciler(
        store,
        lambda tenant, job_id: sent.append((tenant, job_id)),
        [QUEUE],
        worker_id="w-reconciler",
        grace_s=10,
        max_queued_s=3600,
        clock=clock,
    )


def _take_like_a_worker(client: redis.Redis, tag: str) -> None:
    """What kombu does when a worker takes a message: pop it, park it in `unacked`."""
    raw = client.rpop(QUEUE)
    assert raw is not None
    message = json.loads(raw)
    client.zadd(UNACKED_INDEX_KEY, {tag: 1.0})
    client.hset(UNACKED_KEY, tag, json.dumps([message, "", QUEUE]))


def test_a_job_waiting_in_its_queue_is_left_alone(
    store: JobStore, send_message: object, redis_client: redis.Redis
) -> None:
    store.create("acme", "j1", GenerateJobRequest(prompt="hi"))
    send_message("acme", "j1")  # type: ignore[operator]
    sent: list[tuple[str, str]] = []
    clock = Clock()
    reconciler = _reconciler(store, sent, clock)
    for _ in range(3):
        assert reconciler.tick() == []
        clock.now += 60
    assert sent == [] and redis_client.llen(QUEUE) == 1


def test_a_job_whose_message_was_lost_is_sent_again_after_the_grace_period(
    store: JobStore,
) -> None:
    store.create("acme", "j2", GenerateJobRequest(prompt="hi"))  # no message: lost
    sent: list[tuple[str, str]] = []
    clock = Clock()
    reconciler = _reconciler(store, sent, clock)
    assert reconciler.tick() == []  # first seen missing: wait (the worker may be taking it)
    clock.now += 9
    assert reconciler.tick() == []
    clock.now += 2
    assert reconciler.tick() == [("acme", "j2")]
    assert sent == [("acme", "j2")]
    clock.now += 1
    assert reconciler.tick() == []  # a new grace period starts before any second send


def test_a_dead_workers_job_is_sent_again_and_its_stale_delivery_dropped(
    store: JobStore, send_message: object, redis_client: redis.Redis
) -> None:
    store.create("acme", "j3", GenerateJobRequest(prompt="hi"))
    send_message("acme", "j3")  # type: ignore[operator]
    _take_like_a_worker(redis_client, "tag-1")
    dead = LeaseKeeper(store, "w-dead")
    assert dead.hold("acme", "j3")
    assert store.start("acme", "j3", worker="w-dead", engine="e").record is not None
    sent: list[tuple[str, str]] = []
    clock = Clock()
    reconciler = _reconciler(store, sent, clock)
    assert reconciler.tick() == []  # leased: a live worker runs it
    assert unacked_job_ids(redis_client) == {"j3": ["tag-1"]}
    redis_client.delete(store.keys.lease("acme", "j3"))  # the worker died; its lease lapsed
    assert reconciler.tick() == []
    clock.now += 11
    assert reconciler.tick() == [("acme", "j3")]
    assert unacked_job_ids(redis_client) == {}  # kombu will not restore it a second time
    assert redis_client.zcard(UNACKED_INDEX_KEY) == 0


def test_a_job_held_by_a_live_worker_is_left_alone_however_long(store: JobStore) -> None:
    store.create("acme", "j4", GenerateJobRequest(prompt="hi"))
    keeper = LeaseKeeper(store, "w-live")
    keeper.hold("acme", "j4")  # received, not started yet
    sent: list[tuple[str, str]] = []
    clock = Clock()
    reconciler = _reconciler(store, sent, clock)
    for _ in range(5):
        keeper.beat()
        assert reconciler.tick() == []
        clock.now += 60
    assert sent == []
    keeper.release("acme", "j4")
    assert store.leases.leased([("acme", "j4")]) == [False]


def test_finished_and_vanished_jobs_leave_the_unfinished_index(
    store: JobStore, redis_client: redis.Redis
) -> None:
    store.create("acme", "j5", GenerateJobRequest(prompt="hi"))
    store.create("acme", "j6", GenerateJobRequest(prompt="hi"))
    redis_client.hset(store.keys.job("acme", "j5"), "status", "succeeded")  # ended elsewhere
    redis_client.delete(store.keys.job("acme", "j6"))  # expired
    sent: list[tuple[str, str]] = []
    _reconciler(store, sent, Clock()).tick()
    assert store.active_jobs() == [] and sent == []


def test_a_job_queued_past_the_limit_fails_as_expired(store: JobStore) -> None:
    store.create("acme", "j7", GenerateJobRequest(prompt="hi"))
    sent: list[tuple[str, str]] = []
    clock = Clock()
    reconciler = Reconciler(
        store,
        lambda t, j: sent.append((t, j)),
        [QUEUE],
        worker_id="w",
        grace_s=0,
        max_queued_s=-1,  # everything is too old
        clock=clock,
    )
    assert reconciler.tick() == []
    job = store.get("acme", "j7")
    assert job is not None and job.status == JobStatus.failed
    assert job.error is not None and job.error.error == "expired"
    assert "MEMQ_MAX_QUEUED_S" in job.error.message
    assert sent == []


def test_lease_keeper_retakes_a_lapsed_lease_unless_someone_else_has_it(store: JobStore) -> None:
    keeper = LeaseKeeper(store, "w1")
    keeper.hold("acme", "j8")
    keeper.hold("acme", "j9")
    store.r.delete(store.keys.lease("acme", "j8"))  # e.g. Redis restarted without it
    store.r.delete(store.keys.lease("acme", "j9"))
    assert store.leases.take("acme", "j9", "w2")  # another worker got j9 meanwhile
    keeper.beat()
    assert store.r.get(store.keys.lease("acme", "j8")) == b"w1"
    assert store.r.get(store.keys.lease("acme", "j9")) == b"w2"
    assert store.leases.live_workers(within_s=30) == ["w1"]
