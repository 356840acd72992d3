"""A 202 is a promise: kill parts of a running stack and count, Jepsen style, that every
accepted job reached one terminal state with one committed result (issue 8, chaos 1-4).

Each submission carries a client-made key in its `metadata` and is recorded in a
`History` (invoked → ok on 202 / fail on a 4xx / info when the fault left it ambiguous).
After the fault every job of the tenant is read back (listing + event stream) and each
key is observed as many times as a terminal state was committed for it. The checker's
summary must show lost = 0 (accepted, never finished), duplicated = 0 (more than one
terminal state or job for one key) and unexpected = 0 (a refused submission that ran).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from memq.contracts import JobPublic, JobStatus
from memq.ops.launcher import Stack
from memq.sdk import Client
from memq.sdk.errors import APIError
from memq.store.jobs import JobStore
from tests.chaos.checker import History
from tests.chaos.probe import eventually
from tests.utils.stack import StackFactory

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

LEASE_TTL_S = 3.0
FINISH_BOUND_S = 180.0


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> Iterator[Stack]:
    env = {
        "MEMQ_LEASE_TTL_S": str(LEASE_TTL_S),
        # A tiny model and 2 workers: keep each worker's batch small so both get work.
        "MEMQ_MAX_BATCH_SIZE": "12",
        "MEMQ_TORCH_THREADS": "1",
    }
    with stack_factory("memq-delivery", env=env, workers=2, kills=True) as running:
        yield running


def _job(max_new_tokens: int, **extra: Any) -> dict[str, Any]:
    key = uuid.uuid4().hex
    return {
        "type": "generate",
        "prompt": f"Chaos {key[:6]}: the quick brown fox",
        "params": {"max_new_tokens": max_new_tokens},
        "metadata": {"op": key},
        **extra,
    }


class Jobs:
    """The history of one test, plus the job ids the gateway gave the keys it acknowledged.
    Every job it submits carries the test's run id, so the read-back sees only them."""

    def __init__(self) -> None:
        self.history = History()
        self.run = uuid.uuid4().hex
        self.ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def submit(self, client: Client, job: dict[str, Any]) -> str | None:
        job["metadata"]["run"] = self.run
        key = job["metadata"]["op"]
        self.history.invoke(key)
        try:
            accepted = client.submit(job)
        except APIError as exc:
            if exc.status_code >= 500:
                self.history.info(key, f"{exc.status_code} {exc.code}")  # mid-fault: unknown
            else:
                self.history.fail(key, f"{exc.status_code} {exc.code}")
            return None
        except httpx.TransportError as exc:
            self.history.info(key, repr(exc))
            return None
        self.history.ok(key, accepted.id)
        with self._lock:
            self.ids[key] = accepted.id
        return accepted.id

    def accepted(self) -> int:
        with self._lock:
            return len(self.ids)

    def read_back(self, client: Client, store: JobStore, timeout: float) -> None:
        """Wait (bounded) until every acknowledged job is terminal, then observe every job
        of the tenant that carries a key: one per terminal state committed."""
        deadline = time.monotonic() + timeout
        for job_id in list(self.ids.values()):
            _wait_terminal(client, job_id, deadline)
        counts: dict[str, int] = {}
        for job_id, key in _all_keyed_jobs(store, self.run):
            terminal = [
                e
                for _, e in store.read_events("default", job_id)
                if e["event"] == "status" and JobStatus(e["status"]).terminal
            ]
            counts[key] = counts.get(key, 0) + len(terminal)
        self.history.observe_all(counts)


def _all_keyed_jobs(store: JobStore, run: str) -> list[tuple[str, str]]:
    found, cursor = [], None
    while True:
        items, cursor = store.list_jobs("default", limit=200, cursor=cursor)
        found += [(i.id, i.metadata["op"]) for i in items if i.metadata.get("run") == run]
        if cursor is None:
            return found


def _wait_terminal(client: Client, job_id: str, deadline: float) -> JobPublic | None:
    while time.monotonic() < deadline:
        try:
            job = client.get(job_id)
        except (APIError, httpx.TransportError):
            time.sleep(0.5)
            continue
        if job.status.terminal:
            return job
        time.sleep(0.2)
    return None


def _wait_until_running_on(client: Client, ids: list[str], pid: int | None) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for job_id in ids:
            job = client.get(job_id)
            on_victim = job.worker is not None and f":{pid}:" in job.worker
            generating = job.progress is not None and job.progress.tokens > 0
            if job.status == JobStatus.running and on_victim and generating:
                return job_id
        time.sleep(0.02)
    raise TimeoutError("no job started generating on the worker to kill")


def test_sigkilled_worker_loses_no_job_and_commits_each_result_once(
    stack: Stack, client: Client, store: JobStore
) -> None:
    jobs = Jobs()
    ids = [i for i in (jobs.submit(client, _job(1000)) for _ in range(20)) if i]
    victim = stack.procs["worker1"]
    victim_pid = victim.pid  # a supervisor restart gives worker1 a new pid
    running_there = _wait_until_running_on(client, ids, victim_pid)
    killed_at = time.monotonic()
    victim.kill()

    jobs.read_back(client, store, FINISH_BOUND_S)
    recovered_s = time.monotonic() - killed_at
    print(f"\nworker SIGKILL, 20 jobs in flight: all terminal {recovered_s:.1f} s after the kill")
    summary = jobs.history.check()
    assert summary.valid and summary.ok == 20
    done = [client.get(i) for i in ids]
    assert all(j.status == JobStatus.succeeded for j in done), [j.error for j in done]
    assert all(j.result is not None and j.result.usage.completion_tokens == 1000 for j in done)
    redelivered = client.get(running_there)
    assert redelivered.attempts >= 2, "the job running on the killed worker was not rerun"
    assert redelivered.worker is not None and f":{victim_pid}:" not in redelivered.worker


def test_redis_kill_9_during_a_submit_loop_loses_no_accepted_job(
    stack: Stack, client: Client, store: JobStore
) -> None:
    jobs = Jobs()
    stop = threading.Event()

    def submit_loop() -> None:
        with Client(stack.gateway_url) as own:
            while not stop.is_set():
                jobs.submit(own, _job(40))
                time.sleep(0.02)

    submitter = threading.Thread(target=submit_loop, daemon=True)
    submitter.start()
    _until(lambda: jobs.accepted() >= 15, 60, "15 accepted submissions")
    redis_child = stack.procs["redis"]
    starts = redis_child.starts
    redis_child.kill()
    redis_child.wait_started(starts + 1, timeout=60)
    before = jobs.accepted()
    _until(lambda: jobs.accepted() >= before + 10, 60, "submissions after the restart")
    stop.set()
    submitter.join(30)

    jobs.read_back(client, store, FINISH_BOUND_S)
    print("\nredis kill -9 during a submit loop:")
    summary = jobs.history.check()
    assert summary.valid and summary.ok >= 25  # accepted before and after the restart
    finished = [client.get(i) for i in jobs.ids.values()]
    assert all(j.status == JobStatus.succeeded for j in finished), {
        j.id: j.error for j in finished if j.status != JobStatus.succeeded
    }


def test_memory_service_killed_during_a_burst_every_job_still_ends(
    stack: Stack, client: Client, store: JobStore
) -> None:
    namespace = f"user:{uuid.uuid4().hex[:8]}"
    eventually(lambda: client.add_memory(namespace, "Alice lives in Paris."), 120)
    jobs = Jobs()
    burst = {"memory": {"namespace": namespace, "top_k": 2}}
    ids = [i for i in (jobs.submit(client, _job(16, **burst)) for _ in range(12)) if i]
    memory = stack.procs["memory"]
    starts = memory.starts
    memory.kill()
    more = [i for i in (jobs.submit(client, _job(16, **burst)) for _ in range(8)) if i]
    memory.wait_started(starts + 1, timeout=180)

    jobs.read_back(client, store, FINISH_BOUND_S + 120)
    print("\nmemory service killed during a burst:")
    summary = jobs.history.check()
    assert summary.valid and summary.ok == 20
    for job_id in ids + more:
        done = client.get(job_id)
        if done.status == JobStatus.failed:
            assert done.error is not None and done.error.error == "memory_unavailable"
        else:
            assert done.status == JobStatus.succeeded
            assert done.result is not None and done.result.memories  # never ran without them
    # after the restart, writes and reads work again
    added = eventually(lambda: client.add_memory(namespace, "Bob lives in Rome."), 120)
    after = client.wait(client.submit(_job(16, **burst)).id, timeout=120)
    assert after.status == JobStatus.succeeded and after.result is not None
    assert added.id in {m.id for m in after.result.memories}


def test_gateway_restart_while_jobs_run_keeps_statuses_and_results(
    stack: Stack, client: Client, store: JobStore
) -> None:
    jobs = Jobs()
    ids = [i for i in (jobs.submit(client, _job(600)) for _ in range(10)) if i]
    gateway = stack.procs["gateway"]
    starts = gateway.starts
    gateway.kill()
    gateway.wait_started(starts + 1, timeout=60)
    stack.wait_http(stack.gateway_url, ("/livez",), timeout=60)

    jobs.read_back(client, store, FINISH_BOUND_S)
    print("\ngateway restart while jobs run:")
    summary = jobs.history.check()
    assert summary.valid and summary.ok == 10
    for job_id in ids:
        job = client.get(job_id)
        assert job.status == JobStatus.succeeded
        assert job.result is not None and job.result.usage.completion_tokens == 600


def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
