"""The Celery task's branches without a model: start → run → commit, the planned retry
when the memory service or the engine process is down, failures recorded with their
reason, and a job that must not run (finished, cancelled, held elsewhere). Real Redis, real
Celery app, the real session book; the runtime's model-bound parts and the memory service
are stand-ins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import Retry

from memq.contracts import (
    ChatJobRequest,
    GenerateJobRequest,
    JobResult,
    JobStatus,
    JobTimings,
    MemoryCreate,
    TokenUsage,
)
from memq.errors import EngineUnavailable, MemoryUnavailable, MemqError, PromptTooLong
from memq.store.jobs import JobRecord, JobStore
from tests.worker.helpers import worker_settings
from worker.celery_app import create_celery_app
from worker.reconciler import LeaseKeeper
from worker.sessions import SessionBook
from worker.tasks import RunJob

QUEUE = "memq.test-tasks"


def _result() -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text="out", model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt="p"
    )


class StubRunner:
    def __init__(self) -> None:
        self.behaviour: Callable[[JobRecord], JobResult] = lambda _: _result()
        self.ran: list[str] = []

    def run(self, record: JobRecord) -> JobResult:
        self.ran.append(record.id)
        return self.behaviour(record)


@dataclass
class StubEngine:
    name: str = "stub"


class FakeMemory:
    """The memory service as the session book uses it: turns kept by id, nothing found."""

    def __init__(self) -> None:
        self.stored: dict[str, MemoryCreate] = {}

    def put(self, tenant: str, memory_id: str, body: MemoryCreate) -> SimpleNamespace:
        self.stored[memory_id] = body
        return SimpleNamespace(id=memory_id)

    def delete(self, tenant: str, memory_id: str) -> bool:
        return self.stored.pop(memory_id, None) is not None

    def get(self, tenant: str, memory_id: str) -> None:
        return None

    def list_all(self, *_: object, **__: object) -> list[Any]:
        return []

    def replies(self) -> dict[str, str]:
        """The assistant turns written back, by job id."""
        return {
            str(m.metadata["job_id"]): m.text
            for m in self.stored.values()
            if m.metadata.get("role") == "assistant"
        }


@dataclass
class StubRuntime:
    store: JobStore
    runner: StubRunner
    leases: LeaseKeeper
    engine: StubEngine
    memory: FakeMemory
    sessions: SessionBook
    worker_id: str = "w-test"


@pytest.fixture
def task(redis_server: str, redis_client: redis.Redis) -> Iterator[tuple[RunJob, StubRuntime]]:
    settings = worker_settings(
        redis_url=redis_server, queue=QUEUE, memory_retries=2, engine_retries=2, commit_retry_s=1
    )
    app = create_celery_app(settings)
    run_job: Any = app.tasks[RunJob.name]
    store = JobStore(redis_client)
    memory = FakeMemory()
    sessions = SessionBook(
        memory,  # type: ignore[arg-type]
        store,
        count_tokens=lambda text: len(text.split()),
        summary_budget=1024,
        recent_turns=4,
        schedule=lambda tenant, request: None,
    )
    runtime = StubRuntime(
        store, StubRunner(), LeaseKeeper(store, "w-test"), StubEngine(), memory, sessions
    )
    run_job._runtime = runtime
    yield run_job, runtime
    run_job._runtime = None
    app.close()


def _call(run_job: Any, job_id: str, retries: int = 0) -> None:
    run_job.push_request(id=job_id, retries=retries, called_directly=False, hostname="w")
    try:
        run_job.run(job_id, "acme")
    finally:
        run_job.pop_request()


def _job(store: JobStore, job_id: str) -> None:
    store.create("acme", job_id, GenerateJobRequest(prompt="hi"))


def test_a_job_runs_and_its_result_is_committed_and_its_lease_released(
    task: tuple[Any, StubRuntime],
) -> None:
    run_job, rt = task
    _job(rt.store, "t1")
    _call(run_job, "t1")
    job = rt.store.get("acme", "t1")
    assert job is not None and job.status == JobStatus.succeeded
    assert job.result is not None and job.result.text == "out"
    assert job.worker == "w-test" and job.attempts == 1
    assert rt.leases.held() == [] and rt.store.leases.leased([("acme", "t1")]) == [False]


@pytest.mark.parametrize(
    "outage",
    [
        MemoryUnavailable("memory service unreachable"),
        EngineUnavailable("the engine process (pid 7) died (killed by SIGKILL)"),
    ],
    ids=["memory", "engine-process"],
)
def test_outage_requeues_and_retries_then_fails_with_the_reason(
    task: tuple[Any, StubRuntime], redis_client: redis.Redis, outage: MemqError
) -> None:
    run_job, rt = task

    def down(_: JobRecord) -> JobResult:
        raise outage

    rt.runner.behaviour = down
    _job(rt.store, "t2")
    with pytest.raises(Retry):
        _call(run_job, "t2", retries=0)
    assert rt.store.status("acme", "t2") == JobStatus.queued  # waiting for its retry
    assert redis_client.llen(QUEUE) == 1  # the retry's message, same job id
    assert b"t2" in redis_client.lindex(QUEUE, 0)
    with pytest.raises(Retry):
        _call(run_job, "t2", retries=1)
    _call(run_job, "t2", retries=2)  # memory_retries / engine_retries = 2: out of retries
    job = rt.store.get("acme", "t2")
    assert job is not None and job.status == JobStatus.failed
    assert job.error is not None and job.error.error == outage.code
    assert (
        job.error.message.startswith(str(outage)) and "gave up after 2 retries" in job.error.message
    )
    assert job.attempts == 3 and job.lost_workers == 0  # planned retries are not losses


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (PromptTooLong("prompt is 2,000 tokens"), "prompt_too_long"),
        (RuntimeError("boom"), "internal_error"),
    ],
)
def test_a_failing_job_records_its_error_code_and_message(
    task: tuple[Any, StubRuntime], exc: Exception, code: str
) -> None:
    run_job, rt = task

    def fails(_: JobRecord) -> JobResult:
        raise exc

    rt.runner.behaviour = fails
    _job(rt.store, "t3")
    _call(run_job, "t3")
    job = rt.store.get("acme", "t3")
    assert job is not None and job.status == JobStatus.failed
    assert job.error is not None and job.error.error == code
    assert ("2,000 tokens" if code == "prompt_too_long" else "boom") in job.error.message
    assert rt.leases.held() == []


@pytest.mark.parametrize("state", ["succeeded", "cancelled", "unknown", "leased elsewhere"])
def test_a_job_that_must_not_run_is_skipped(
    task: tuple[Any, StubRuntime], redis_client: redis.Redis, state: str
) -> None:
    run_job, rt = task
    if state != "unknown":
        _job(rt.store, "t4")
    if state == "succeeded":
        running = rt.store.start("acme", "t4", worker="other", engine="e").record
        assert running is not None and rt.store.succeed(running, _result())
    elif state == "cancelled":
        rt.store.cancel("acme", "t4")
    elif state == "leased elsewhere":
        assert rt.store.leases.take("acme", "t4", "another-live-worker")
    _call(run_job, "t4")
    assert rt.runner.ran == []
    if state == "leased elsewhere":
        assert redis_client.get(rt.store.keys.lease("acme", "t4")) == b"another-live-worker"


def test_a_result_is_not_committed_over_a_cancellation(task: tuple[Any, StubRuntime]) -> None:
    run_job, rt = task

    def cancelled_meanwhile(record: JobRecord) -> JobResult:
        rt.store.cancel(record.tenant, record.id)
        return _result()

    rt.runner.behaviour = cancelled_meanwhile
    _job(rt.store, "t5")
    _call(run_job, "t5")
    job = rt.store.get("acme", "t5")
    assert job is not None and job.status == JobStatus.cancelled and job.result is None


def _chat(store: JobStore, job_id: str) -> None:
    request = ChatJobRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], "session_id": "s1"}
    )
    store.create("acme", job_id, request)


def test_a_chat_turn_is_written_back_once_before_its_result_is_committed(
    task: tuple[Any, StubRuntime],
) -> None:
    run_job, rt = task
    seen_when_written: list[JobStatus | None] = []

    def answer(record: JobRecord) -> JobResult:
        return _result()

    original = rt.sessions.write_back

    def spy(tenant: str, job_id: str, request: ChatJobRequest, result: JobResult) -> list[str]:
        seen_when_written.append(rt.store.status(tenant, job_id))
        return original(tenant, job_id, request, result)

    rt.sessions.write_back = spy  # type: ignore[method-assign]
    rt.runner.behaviour = answer
    _chat(rt.store, "c1")
    _call(run_job, "c1")
    assert rt.memory.replies() == {"c1": "out"}
    assert seen_when_written == [JobStatus.running]  # written before the commit
    assert rt.store.status("acme", "c1") == JobStatus.succeeded


def test_a_chat_turn_cancelled_before_its_commit_is_undone(task: tuple[Any, StubRuntime]) -> None:
    run_job, rt = task

    def cancelled_meanwhile(record: JobRecord) -> JobResult:
        rt.store.cancel(record.tenant, record.id)
        return _result()

    rt.runner.behaviour = cancelled_meanwhile
    _chat(rt.store, "c2")
    _call(run_job, "c2")
    assert rt.store.status("acme", "c2") == JobStatus.cancelled
    assert rt.memory.replies() == {}


def test_a_chat_turn_takes_the_reply_another_attempt_committed(
    task: tuple[Any, StubRuntime],
) -> None:
    run_job, rt = task

    def beaten(record: JobRecord) -> JobResult:
        other = rt.store.get(record.tenant, record.id)
        assert other is not None
        first = _result()
        first.text = "the other attempt's reply"
        assert rt.store.succeed(other, first)
        return _result()

    rt.runner.behaviour = beaten
    _chat(rt.store, "c3")
    _call(run_job, "c3")
    assert rt.memory.replies() == {"c3": "the other attempt's reply"}
