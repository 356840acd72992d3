"""While a job runs, its record shows progress and every token is an event on its stream."""

from __future__ import annotations

import time

import pytest
import redis

from memq.contracts import JobStatus
from memq.ops.launcher import Stack
from memq.sdk import Client
from memq.store.jobs import JobStore

pytestmark = pytest.mark.e2e


def test_running_job_shows_partial_text_and_streams_each_token(
    client: Client, stack: Stack
) -> None:
    store = JobStore(redis.Redis.from_url(stack.redis_url))
    accepted = client.submit(
        {"type": "generate", "prompt": "Alice lives in", "params": {"max_new_tokens": 900}}
    )

    seen_progress = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(accepted.id)
        if job.status == JobStatus.running and job.progress and job.progress.tokens > 0:
            seen_progress = job.progress
            break
        if job.status.terminal:
            break
        time.sleep(0.01)
    job = client.wait(accepted.id)
    events = [e for _, e in store.read_events("default", accepted.id)]
    store.r.close()

    assert job.status == JobStatus.succeeded
    assert job.result is not None
    assert seen_progress is not None, "never saw progress while the job was running"
    assert 0 < seen_progress.tokens < 900
    tokens = [e for e in events if e["event"] == "token"]
    assert len(tokens) > 10
    counts = [e["tokens"] for e in tokens]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[-1] == 900
    text = ""
    for e in tokens:
        text = text[: e["offset"]] + e["delta"]
    assert text == job.result.text
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses == ["running", "succeeded"]
    # the last token event comes before the terminal status event
    assert events.index(tokens[-1]) < events.index({"event": "status", "status": "succeeded"})
