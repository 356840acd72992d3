"""The operations stack's keys (tests/e2e/conftest.py: `ops_stack`, authentication on) and
the raw-HTTP job helpers its tests (webhooks, metrics, JSON logs, schemathesis) share."""

from __future__ import annotations

import time

import httpx

from memq.contracts import JobPublic

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
