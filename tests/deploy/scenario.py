"""The end-to-end scenario every deployment must pass: add a memory, submit a job that
retrieves it, poll the job, and find the memory named in the result. Plain HTTP, so it runs
the same against the local process stack and a `docker compose` one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

FACT = "Alice lives in Paris and works as a marine biologist."
QUESTION = "Where does Alice live?"


def add_memory_submit_poll(gateway_url: str, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the scenario against the gateway at `gateway_url`; return the finished job."""
    namespace = f"user:{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=gateway_url, timeout=60.0) as http:
        added = http.post("/v1/memories", json={"namespace": namespace, "text": FACT})
        assert added.status_code == 201, added.text
        memory_id = added.json()["id"]
        submitted = http.post(
            "/v1/jobs",
            json={
                "type": "generate",
                "prompt": QUESTION,
                "params": {"max_new_tokens": 8, "temperature": 0},
                "memory": {"namespace": namespace, "top_k": 3},
            },
        )
        assert submitted.status_code == 202, submitted.text
        job_url = f"/v1/jobs/{submitted.json()['id']}"
        deadline = time.monotonic() + timeout_s
        while True:
            job: dict[str, Any] = http.get(job_url).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, f"job still {job['status']} after {timeout_s}s"
            time.sleep(0.2)
    assert job["status"] == "succeeded", job.get("error")
    result = job["result"]
    memories = result["memories"]
    assert memories and memories[0]["id"] == memory_id, memories
    assert memories[0]["used"] is True
    assert FACT in result["prompt"]
    assert result["prompt"].index(FACT) < result["prompt"].index(QUESTION)
    assert job["worker"], "the job names the worker that ran it"
    return job
