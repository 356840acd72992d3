"""The job API over real HTTP on the real stack: cancel, list, idempotency, SSE, priorities,
reproducible results, replay, retention and forgetting a namespace (issue 9)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
import redis

from memq.contracts import JobPublic, JobStatus
from memq.ops.launcher import Stack
from memq.sdk import Client
from memq.store.jobs import JobStore
from tests.utils.stack import paused

pytestmark = pytest.mark.e2e


def _submit(http: httpx.Client, **body: Any) -> str:
    payload = {"type": "generate", "prompt": "The quick brown fox", **body}
    resp = http.post("/v1/jobs", json=payload)
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["id"]
    return job_id


def _job(http: httpx.Client, job_id: str) -> JobPublic:
    resp = http.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    return JobPublic.model_validate(resp.json())


def _wait(http: httpx.Client, job_id: str, timeout: float = 120) -> JobPublic:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(http, job_id)
        if job.status.terminal:
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} still {job.status}")


def _events(http: httpx.Client, job_id: str, last_event_id: str | None = None) -> list[dict]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict] = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in resp.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            current[key] = value
    return events


def test_a_cancelled_queued_job_never_runs(stack: Stack, http: httpx.Client) -> None:
    with paused(stack):
        job_id = _submit(http, params={"max_new_tokens": 8})
        resp = http.post(f"/v1/jobs/{job_id}/cancel")
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "cancelled"
    done = _submit(http, params={"max_new_tokens": 4})  # the worker is back and works
    assert _wait(http, done).status == JobStatus.succeeded
    job = _job(http, job_id)
    assert job.status == JobStatus.cancelled
    assert JobStatus.running not in job.timestamps and job.attempts == 0
    assert job.result is None
    again = http.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "job_finished"


def test_a_cancelled_running_job_stops_and_keeps_its_partial_text(
    stack: Stack, http: httpx.Client
) -> None:
    job_id = _submit(http, prompt="Alice lives in", params={"max_new_tokens": 1000})
    deadline = time.monotonic() + 60
    while (job := _job(http, job_id)).progress is None or job.progress.tokens < 5:
        assert time.monotonic() < deadline and not job.status.terminal
        time.sleep(0.01)
    resp = http.post(f"/v1/jobs/{job_id}/cancel")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    events = _events(http, job_id)
    assert events[-1]["event"] == "result"
    final = JobPublic.model_validate_json(events[-1]["data"])
    assert final.status == JobStatus.cancelled
    assert final.result is not None and final.result.finish_reason == "cancelled"
    assert 5 <= final.result.usage.completion_tokens < 1000
    assert final.result.text
    assert _job(http, job_id).result == final.result
    finished = _submit(http, params={"max_new_tokens": 2})
    _wait(http, finished)
    conflict = http.post(f"/v1/jobs/{finished}/cancel")
    assert conflict.status_code == 409


def test_events_stream_tokens_and_resume_after_last_event_id(
    stack: Stack, http: httpx.Client
) -> None:
    job_id = _submit(http, prompt="Redis, Celery and Qdrant", params={"max_new_tokens": 40})
    events = _events(http, job_id)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "result"
    assert [json.loads(e["data"])["status"] for e in events if e["event"] == "status"] == [
        "running",
        "succeeded",
    ]
    text = ""
    for e in events:
        if e["event"] == "token":
            data = json.loads(e["data"])
            text = text[: data["offset"]] + data["delta"]
    result = JobPublic.model_validate_json(events[-1]["data"]).result
    assert result is not None and text == result.text
    middle = len(events) // 2
    resumed = _events(http, job_id, last_event_id=events[middle]["id"])
    assert [e["id"] for e in resumed] == [e["id"] for e in events[middle + 1 :]]


def test_idempotency_key_returns_the_original_job_or_rejects_a_different_body(
    http: httpx.Client,
) -> None:
    key = f"key-{uuid.uuid4()}"
    body = {"type": "generate", "prompt": "once", "params": {"max_new_tokens": 2}}
    first = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    second = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    other = http.post(
        "/v1/jobs", json={**body, "prompt": "twice"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert first.json()["id"] in other.json()["message"]


def test_listing_pages_and_filters_the_tenants_jobs(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [_submit(http, params={"max_new_tokens": 2}, metadata={"batch": tag}) for _ in range(5)]
    for job_id in ids:
        _wait(http, job_id)
    seen: list[str] = []
    cursor = None
    while len(seen) < 5:
        params: dict[str, Any] = {"limit": 2, "status": "succeeded"}
        if cursor:
            params["cursor"] = cursor
        page = http.get("/v1/jobs", params=params).json()
        seen += [i["id"] for i in page["items"] if i["metadata"].get("batch") == tag]
        cursor = page["next_cursor"]
        assert cursor is not None or len(seen) == 5
    assert seen == list(reversed(ids))  # newest first
    bad = http.get("/v1/jobs", params={"cursor": "nope"})
    assert bad.status_code == 422
    summarize = http.get("/v1/jobs", params={"type": "summarize", "limit": 200}).json()
    assert all(i["type"] == "summarize" for i in summarize["items"])


def test_high_priority_runs_before_a_low_priority_backlog(stack: Stack, http: httpx.Client) -> None:
    with paused(stack):
        low = [_submit(http, priority="low", params={"max_new_tokens": 200}) for _ in range(40)]
        high = _submit(http, priority="high", params={"max_new_tokens": 2})
    high_job = _wait(http, high)
    started = [_wait(http, job_id).timestamps[JobStatus.running] for job_id in low]
    later = [t for t in started if t > high_job.timestamps[JobStatus.running]]
    assert len(later) >= 8, "the high-priority job waited behind the low-priority backlog"


def test_a_sampled_job_names_its_seed_and_a_replay_reproduces_it(
    client: Client, http: httpx.Client
) -> None:
    ns = f"user:{uuid.uuid4().hex[:8]}"
    memory = client.add_memory(ns, "Alice lives in Paris and works as a marine biologist.")
    sampled = _wait(
        http,
        _submit(
            http,
            prompt="Where does Alice live?",
            params={"max_new_tokens": 24, "temperature": 0.9, "top_p": 0.95},
            memory={"namespace": ns, "top_k": 2},
        ),
    )
    greedy = _wait(
        http,
        _submit(
            http,
            prompt="Where does Alice live?",
            params={"max_new_tokens": 24},
            memory={"namespace": ns, "top_k": 2},
        ),
    )
    for original in (sampled, greedy):
        assert original.result is not None and original.result.params is not None
    assert sampled.result is not None and sampled.result.params is not None
    assert sampled.result.params.seed is not None  # drawn, and reported
    assert sampled.result.memories[0].version == 1
    # the memory changes, then disappears: replays still see what the originals saw
    http.patch(f"/v1/memories/{memory.id}", json={"text": "Alice moved to Rome."})
    for original in (sampled, greedy):
        resp = http.post(f"/v1/jobs/{original.id}/replay")
        assert resp.status_code == 202, resp.text
        replay = _wait(http, resp.json()["id"])
        assert replay.replay_of == original.id
        assert replay.result is not None and original.result is not None
        assert replay.result.text == original.result.text
        assert replay.result.prompt_token_ids == original.result.prompt_token_ids
        assert replay.result.memories[0].text == original.result.memories[0].text
    http.delete(f"/v1/memories/{memory.id}")
    again = _wait(http, http.post(f"/v1/jobs/{greedy.id}/replay").json()["id"])
    assert again.result is not None and greedy.result is not None
    assert again.result.text == greedy.result.text
    queued_only = _submit(http, params={"max_new_tokens": 2})
    http.post(f"/v1/jobs/{queued_only}/cancel")
    not_replayable = http.post(f"/v1/jobs/{queued_only}/replay")
    assert not_replayable.status_code in (202, 409)  # 202 only if it had already finished


def test_an_expired_job_answers_410_and_an_unknown_one_404(
    stack: Stack, http: httpx.Client
) -> None:
    job_id = _submit(http, params={"max_new_tokens": 2})
    _wait(http, job_id)
    store = JobStore(redis.Redis.from_url(stack.redis_url))
    store.r.delete(store.keys.job("default", job_id))  # what the TTL does
    store.r.close()
    gone = http.get(f"/v1/jobs/{job_id}")
    assert gone.status_code == 410
    assert gone.json()["error"] == "job_expired"
    assert "MEMQ_JOB_TTL_SECONDS" in gone.json()["message"]
    assert http.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404


def test_forgetting_a_namespace_cancels_queued_jobs_that_would_read_it(
    stack: Stack, client: Client, http: httpx.Client
) -> None:
    ns = f"user:{uuid.uuid4().hex[:8]}"
    client.add_memory(ns, "Bob's favourite colour is green.")
    with paused(stack):
        reading = [
            _submit(http, params={"max_new_tokens": 2}, memory={"namespace": ns}) for _ in range(2)
        ]
        other = _submit(http, params={"max_new_tokens": 2})
        resp = http.delete(f"/v1/namespaces/{ns}")
        assert resp.status_code == 200, resp.text
        assert resp.json() == {
            "namespace": ns,
            "deleted": 1,
            "cancelled_jobs": 2,
            "stale_adapters": 0,
        }
    assert _wait(http, other).status == JobStatus.succeeded
    for job_id in reading:
        job = _job(http, job_id)
        assert job.status == JobStatus.cancelled and job.attempts == 0
