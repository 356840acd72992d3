"""A batch is a promise about every line: kill parts of the stack while one runs, and count
(issue 11). Each input line is an operation keyed by its `custom_id` in a `History`; it is
acknowledged (ok) once the batch has accepted it (the batch is `in_progress` with the line
counted). After the faults the batch's output and error files are read back and each
`custom_id` is observed as many times as it appears in them: lost = 0 (a line in neither
file), duplicated = 0 (a line twice, or in both), unexpected = 0. Each line's job is also
checked to have committed one terminal state.

1. A worker SIGKILLed while it runs lines, then the gateway SIGKILLed and restarted, while a
   batch runs: the killed worker's lines run again elsewhere, their lines are written once,
   and the batch finalizes without the gateway that created it.
2. The gateway SIGKILLed while it is creating a batch's jobs: the restarted gateway's
   sweeper takes the half-created batch up again and creates only what is missing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from memq.batch_format import line_job_id
from memq.contracts import BatchPublic, JobStatus
from memq.ops.launcher import Stack
from memq.store.jobs import JobStore
from tests.chaos.checker import History
from tests.utils.stack import StackFactory

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

T = TypeVar("T")
LEASE_TTL_S = 3.0
FINISH_BOUND_S = 300.0
TENANT = "default"


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> Iterator[Stack]:
    env = {
        "MEMQ_LEASE_TTL_S": str(LEASE_TTL_S),
        "MEMQ_MAX_BATCH_SIZE": "12",
        "MEMQ_TORCH_THREADS": "1",
        "MEMQ_BATCH_RECONCILE_S": "2",
    }
    with stack_factory("memq-batch-chaos", env=env, workers=2, kills=True) as running:
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as c:
        yield c


def until(probe: Callable[[], T | None], what: str, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except httpx.TransportError:  # the gateway is restarting
            found = None
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


class BatchRun:
    """One batch's lines as operations of a History."""

    def __init__(self, lines: int, max_tokens: int) -> None:
        self.history = History()
        self.custom_ids = [f"line-{i}-{uuid.uuid4().hex[:6]}" for i in range(lines)]
        self.max_tokens = max_tokens
        self.batch_id = ""

    def content(self) -> bytes:
        rows = []
        for n, custom_id in enumerate(self.custom_ids):
            self.history.invoke(custom_id, kind="line")
            body = {"model": "memq", "prompt": f"Chaos line {n}:", "max_tokens": self.max_tokens}
            rows.append(
                json.dumps(
                    {
                        "custom_id": custom_id,
                        "method": "POST",
                        "url": "/v1/completions",
                        "body": body,
                    }
                )
            )
        return ("\n".join(rows) + "\n").encode()

    def submit(self, http: httpx.Client) -> str:
        uploaded = http.post(
            "/v1/files",
            files={"file": ("chaos.jsonl", self.content(), "application/jsonl")},
            data={"purpose": "batch"},
        )
        assert uploaded.status_code == 200, uploaded.text
        created = http.post(
            "/v1/batches",
            json={"input_file_id": uploaded.json()["id"], "endpoint": "/v1/completions"},
        )
        assert created.status_code == 200, created.text
        self.batch_id = created.json()["id"]
        return self.batch_id

    def accepted(self, batch: BatchPublic) -> None:
        """The batch validated every line and queued its job: each line is acknowledged."""
        assert batch.request_counts.total == len(self.custom_ids)
        for custom_id in self.custom_ids:
            self.history.ok(custom_id, self.batch_id)

    def observe(self, http: httpx.Client, batch: BatchPublic) -> tuple[list[Any], list[Any]]:
        files = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            resp = http.get(f"/v1/files/{file_id}/content")
            assert resp.status_code == 200, resp.text
            files.append([json.loads(raw) for raw in resp.text.splitlines()])
        counts: dict[str, int] = {}
        for line in files[0] + files[1]:
            counts[line["custom_id"]] = counts.get(line["custom_id"], 0) + 1
        self.history.observe_all(counts)
        return files[0], files[1]


def get_batch(http: httpx.Client, batch_id: str) -> BatchPublic:
    resp = http.get(f"/v1/batches/{batch_id}")
    assert resp.status_code == 200, resp.text
    return BatchPublic.model_validate(resp.json())


def wait_batch(
    http: httpx.Client, batch_id: str, statuses: tuple[str, ...], timeout: float
) -> BatchPublic:
    return until(
        lambda: (b := get_batch(http, batch_id)).status in statuses and b,
        f"batch {batch_id} to be {statuses}",
        timeout,
    )


def terminal_commits(store: JobStore, job_id: str) -> int:
    return sum(
        1
        for _, e in store.read_events(TENANT, job_id)
        if e["event"] == "status" and JobStatus(e["status"]).terminal
    )


def running_on(store: JobStore, batch_id: str, lines: int, pid: int | None) -> str | None:
    """A line job generating on the worker process `pid`, if any."""
    for n in range(1, lines + 1):
        job = store.get(TENANT, line_job_id(batch_id, n))
        if (
            job is not None
            and job.status == JobStatus.running
            and job.worker is not None
            and f":{pid}:" in job.worker
            and job.progress is not None
            and job.progress.tokens > 0
        ):
            return job.id
    return None


def test_a_batch_survives_a_worker_sigkill_and_a_gateway_restart_with_every_line_once(
    stack: Stack, http: httpx.Client, store: JobStore
) -> None:
    run = BatchRun(lines=150, max_tokens=300)
    batch_id = run.submit(http)
    run.accepted(wait_batch(http, batch_id, ("in_progress",), 60))

    victim = stack.procs["worker1"]
    until(lambda: get_batch(http, batch_id).request_counts.completed >= 5, "5 lines done", 120)
    victim_pid = victim.pid  # the supervisor restarts worker1 under a new pid
    on_victim = until(
        lambda: running_on(store, batch_id, 150, victim_pid), "a line running on worker1", 60
    )
    victim.kill()
    gateway = stack.procs["gateway"]
    starts = gateway.starts
    gateway.kill()
    gateway.wait_started(starts + 1, timeout=60)
    stack.wait_http(stack.gateway_url, ("/livez",), timeout=60)

    done = wait_batch(http, batch_id, ("completed",), FINISH_BOUND_S)
    print(f"\nbatch of 150 lines, worker SIGKILL + gateway restart: {done.request_counts}")
    output, errors = run.observe(http, done)
    summary = run.history.check()
    assert summary.valid and summary.ok == 150
    assert (done.request_counts.completed, done.request_counts.failed) == (150, 0)
    assert len(output) == 150 and errors == []
    assert all(o["response"]["body"]["usage"]["completion_tokens"] > 0 for o in output)
    commits = [terminal_commits(store, line_job_id(batch_id, n)) for n in range(1, 151)]
    assert commits == [1] * 150
    rerun = store.get(TENANT, on_victim)
    assert rerun is not None and rerun.attempts >= 2 and f":{victim_pid}:" not in str(rerun.worker)


def test_a_gateway_killed_while_creating_a_batch_creates_each_line_once(
    stack: Stack, http: httpx.Client, store: JobStore
) -> None:
    lines = 5000
    run = BatchRun(lines=lines, max_tokens=2)
    batch_id = run.submit(http)
    key = store.keys.batch(TENANT, batch_id)
    pending = store.keys.batch_pending(TENANT, batch_id)

    def mid_creation() -> bool:
        status = store.r.hget(key, "status")
        return status == b"validating" and int(store.r.hlen(pending)) >= 500

    until(mid_creation, "the creation to be under way", 60)
    gateway = stack.procs["gateway"]
    starts = gateway.starts
    gateway.kill()
    created_before_kill = int(store.r.hlen(pending)) + int(store.r.hlen(key + ":lines"))
    gateway.wait_started(starts + 1, timeout=60)
    stack.wait_http(stack.gateway_url, ("/livez",), timeout=60)

    run.accepted(wait_batch(http, batch_id, ("in_progress", "finalizing", "completed"), 120))
    done = wait_batch(http, batch_id, ("completed",), FINISH_BOUND_S)
    print(
        f"\nbatch of {lines} lines, gateway SIGKILL mid-creation ({created_before_kill} jobs "
        f"made before): {done.request_counts}"
    )
    assert created_before_kill < lines, "the kill came after the creation had finished"
    output, errors = run.observe(http, done)
    summary = run.history.check()
    assert summary.valid and summary.ok == lines
    assert (len(output), errors) == (lines, [])
    commits = [terminal_commits(store, line_job_id(batch_id, n)) for n in range(1, lines + 1)]
    assert commits == [1] * lines
