"""The engine process (MEMQ_ENGINE_PROCESS=1) SIGKILLed under running jobs (issue 12): the
worker stays up, requeues the jobs its engine was decoding and reruns them on a fresh
engine process; every accepted job ends `succeeded`, with one terminal state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
import redis

from memq.contracts import JobStatus
from memq.ops.launcher import Stack
from memq.sdk import Client
from memq.store.jobs import JobStore
from tests.chaos.checker import History
from tests.utils.stack import StackFactory

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

JOBS = 12
NEW_TOKENS = 600
FINISH_BOUND_S = 180.0


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> Iterator[Stack]:
    env = {"MEMQ_TORCH_THREADS": "1"}
    with stack_factory("memq-engine-process", env=env, engine_process=True, kills=True) as running:
        yield running


def _engine_process(worker_pid: int) -> psutil.Process:
    """The worker's engine child (its other child, if any, is multiprocessing's resource
    tracker)."""
    found = [
        p
        for p in psutil.Process(worker_pid).children()
        if any("spawn_main" in arg for arg in p.cmdline())
    ]
    assert len(found) == 1, found
    return found[0]


def _wait_generating(client: Client, ids: list[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for job_id in ids:
            job = client.get(job_id)
            if job.status == JobStatus.running and job.progress and job.progress.tokens > 0:
                return job_id
        time.sleep(0.02)
    raise TimeoutError("no job started generating")


def _terminal_states(store: JobStore, job_id: str) -> int:
    return sum(
        1
        for _, e in store.read_events("default", job_id)
        if e["event"] == "status" and JobStatus(e["status"]).terminal
    )


def test_killed_engine_process_loses_no_job_and_its_jobs_rerun(stack: Stack) -> None:
    worker = stack.procs["worker"]
    assert worker.pid is not None
    worker_pid, worker_starts = worker.pid, worker.starts
    engine = _engine_process(worker_pid)
    history = History()
    ids: dict[str, str] = {}
    with Client(stack.gateway_url) as client:
        for _ in range(JOBS):
            key = uuid.uuid4().hex
            history.invoke(key)
            accepted = client.submit(
                {
                    "type": "generate",
                    "prompt": f"Engine chaos {key[:6]}: the quick brown fox",
                    "params": {"max_new_tokens": NEW_TOKENS},
                    "metadata": {"op": key},
                }
            )
            history.ok(key, accepted.id)
            ids[key] = accepted.id
        running = _wait_generating(client, list(ids.values()))

        engine.kill()

        done = {key: client.wait(job_id, timeout=FINISH_BOUND_S) for key, job_id in ids.items()}
        rerun = client.get(running)
    store = JobStore(redis.Redis.from_url(stack.redis_url), prefix=stack.key_prefix)
    try:
        history.observe_all({key: _terminal_states(store, job_id) for key, job_id in ids.items()})
        record = store.get("default", running)
    finally:
        store.r.close()

    summary = history.check()
    assert summary.valid and summary.ok == JOBS
    assert all(j.status == JobStatus.succeeded for j in done.values()), [
        j.error for j in done.values()
    ]
    assert all(
        j.result is not None and j.result.usage.completion_tokens == NEW_TOKENS
        for j in done.values()
    )
    assert rerun.attempts >= 2, "the job the engine was decoding was not rerun"
    assert record is not None and record.engine == "batched-process"
    # The worker itself never died: it started a new engine process beside it.
    assert worker.pid == worker_pid and worker.starts == worker_starts
    assert _engine_process(worker_pid).pid != engine.pid
