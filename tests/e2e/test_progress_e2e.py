"""While a job runs, its record shows progress and every token is published on pub/sub."""

from __future__ import annotations

import json
import time

import pytest
import redis

from memq.clients import MemqClient
from memq.contracts import JobStatus
from memq.launcher import Stack

pytestmark = pytest.mark.e2e


def test_running_job_shows_partial_text_and_publishes_each_token(
    client: MemqClient, stack: Stack
) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    pubsub = r.pubsub()
    accepted = client.submit(
        {"type": "generate", "prompt": "Alice lives in", "params": {"max_new_tokens": 900}}
    )
    pubsub.subscribe(f"memq:default:job:{accepted.id}:events")

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
    events = []
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1.0)
        if msg is None:
            if client.get(accepted.id).status.terminal:
                break
            continue
        if msg["type"] == "message":
            event = json.loads(msg["data"])
            events.append(event)
            if event["event"] == "status" and event["status"] == "succeeded":
                break
    pubsub.close()
    r.close()

    job = client.wait(accepted.id)
    assert job.status == JobStatus.succeeded
    assert job.result is not None
    assert seen_progress is not None, "never saw progress while the job was running"
    assert 0 < seen_progress.tokens < 900
    tokens = [e for e in events if e["event"] == "token"]
    assert len(tokens) > 10
    counts = [e["tokens"] for e in tokens]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[-1] == 900
    assert tokens[-1]["text"] == job.result.text
    assert {"event": "status", "status": "succeeded"} in events
