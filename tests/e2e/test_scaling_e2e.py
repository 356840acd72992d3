"""Horizontal scaling: two worker processes on one Redis share a burst of jobs.

Each worker takes at most one job at a time (`MEMQ_MAX_BATCH_SIZE=1`: one Celery thread,
prefetch 1, late acknowledgement). The burst is submitted while the memory service is paused
(SIGSTOP), so every job that starts blocks in retrieval and holds its worker: the second job
to start can only start on the other worker. That is the synchronisation, not timing. The
memory service then resumes and the whole burst runs.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import redis

from memq.ops.launcher import Stack
from memq.store.jobs import JobStore
from tests.utils.stack import StackFactory, paused

pytestmark = pytest.mark.e2e

BURST = 12
DEADLINE_S = 300.0
FINISHED = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


@pytest.fixture(scope="module")
def two_workers(stack_factory: StackFactory) -> Iterator[Stack]:
    env = {
        "MEMQ_MAX_BATCH_SIZE": "1",
        # A job blocked on the paused memory service must not time out and be retried.
        "MEMQ_MEMORY_TIMEOUT_S": "120",
    }
    with stack_factory("memq-scaling", env=env, workers=2) as running:
        yield running


def _until(what: str, check: Callable[[], T | None], timeout_s: float = DEADLINE_S) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s:.0f} s")
        time.sleep(0.1)


def _worker_pid(worker_id: str) -> int:
    """Worker ids are `host:pid:nonce` (worker/runtime.py)."""
    return int(worker_id.split(":")[1])


def test_two_workers_share_a_burst_and_each_result_names_its_worker(two_workers: Stack) -> None:
    stack = two_workers
    pids = {w.pid for w in stack.workers}
    assert len(pids) == 2
    store = JobStore(redis.Redis.from_url(stack.redis_url), prefix=stack.key_prefix)
    # Both have loaded their model and heartbeat (start_stack waits for one of them).
    _until(
        "a heartbeat from both workers",
        lambda: {_worker_pid(w) for w in store.leases.live_workers(within_s=60)} >= pids or None,
    )
    namespace = f"user:{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as http:
        added = http.post(
            "/v1/memories", json={"namespace": namespace, "text": "Alice lives in Paris."}
        )
        assert added.status_code == 201, added.text

        def jobs(ids: list[str]) -> list[dict[str, Any]]:
            return [http.get(f"/v1/jobs/{i}").json() for i in ids]

        with paused(stack, "memory"):
            ids = []
            for n in range(BURST):
                resp = http.post(
                    "/v1/jobs",
                    json={
                        "type": "generate",
                        "prompt": f"Question {n}: where does Alice live?",
                        "params": {"max_new_tokens": 16},
                        "memory": {"namespace": namespace},
                    },
                )
                assert resp.status_code == 202, resp.text
                ids.append(resp.json()["id"])

            def two_running() -> list[dict[str, Any]] | None:
                running = [j for j in jobs(ids) if j["status"] == "running"]
                return running if len(running) >= 2 else None

            running = _until("two jobs running while retrieval is paused", two_running)
            # Each worker holds one job at most: exactly two run, one on each worker.
            assert len(running) == 2
            assert len({j["worker"] for j in running}) == 2

        def all_finished() -> list[dict[str, Any]] | None:
            now = jobs(ids)
            return now if all(j["status"] in FINISHED for j in now) else None

        done = _until("the whole burst finished", all_finished)
    store.r.close()

    assert [j["status"] for j in done] == ["succeeded"] * BURST, [j.get("error") for j in done]
    ran_by = Counter(j["worker"] for j in done)
    print(f"jobs per worker: {dict(ran_by)}")
    assert {_worker_pid(w) for w in ran_by} == pids, "each result names one of the two workers"
    assert len(ran_by) == 2 and all(n >= 1 for n in ran_by.values())
    for job in done:
        assert job["result"]["memories"], "every job retrieved its memory after the pause"
