"""The operations stack's keys and helpers (webhooks, metrics, JSON logs, schemathesis):
one stack with authentication on, JSON logs and webhooks allowed to 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import httpx

from memq.contracts import JobPublic
from memq.ops.launcher import Stack

OPS_TENANT, OPS_KEY = "ops", "ops-test-key-0123456789"
FUZZ_TENANT, FUZZ_KEY = "fuzz", "fuzz-test-key-0123456789"
"""Schemathesis fuzzes as a tenant of its own, so what it does (rotating the webhook
secret, forgetting namespaces, queueing jobs) never touches the other tests' data."""


def wait_for_job(http: httpx.Client, job_id: str, timeout: float = 120) -> JobPublic:
    deadline = time.monotonic() + timeout
    while True:
        resp = http.get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        job = JobPublic.model_validate(resp.json())
        if job.status.terminal:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout:.0f} s")
        time.sleep(0.05)


def submit(http: httpx.Client, **body: object) -> str:
    resp = http.post("/v1/jobs", json={"type": "generate", "prompt": "The quick brown fox", **body})
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["id"]
    return job_id


@contextlib.contextmanager
def worker_paused(stack: Stack) -> Iterator[None]:
    """SIGSTOP the worker so jobs stay queued (kept well under the lease TTL)."""
    pid = stack.procs["worker"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
