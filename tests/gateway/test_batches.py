"""Files and batches through the gateway on a real Redis, with the job side played by the
job store itself (start + succeed, exactly what a worker's task does, with the same
terminal hook a worker registers): upload, validation of every line up front, bulk
enqueueing at low priority, lines written as jobs finish, progress, finalization, cancel,
expiry, the sweeper writing lines a dead process left unwritten, a re-run creation that
makes nothing twice, pagination, isolation, and the official `openai` client."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import redis
from fastapi.testclient import TestClient
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.batch_format import line_job_id
from memq.contracts import (
    BatchPublic,
    FilePublic,
    JobResult,
    JobStatus,
    JobTimings,
    ModelInfo,
    TokenUsage,
)
from memq.contracts.openai import completion_body
from memq.store.batches import BatchLines, BatchStore
from memq.store.jobs import JobStore

ACME = {"Authorization": "Bearer k-acme"}
BETA = {"X-API-Key": "k-beta"}
GATEWAY_URL = "https://memq.example"
PREFIX = "memq"
T = TypeVar("T")


@pytest.fixture
def settings(redis_server: str, tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_server,
        api_keys={"k-acme": "acme", "k-beta": "beta"},
        queue="memq.test",
        service_token="t",  # type: ignore[arg-type]
        gateway_url=GATEWAY_URL,
        files_dir=tmp_path / "files",
        max_file_bytes=1024 * 1024,
        batch_sweep_interval_s=0.05,
        batch_reconcile_s=0.2,
    )


@pytest.fixture
def api(settings: GatewaySettings, redis_client: redis.Redis) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def worker_store(redis_client: redis.Redis) -> JobStore:
    """The job store as a worker holds it: with the batch-line hook."""
    lines = BatchLines(BatchStore(redis_client, PREFIX), GATEWAY_URL)
    return JobStore(redis_client, prefix=PREFIX, hooks=[lines])


def until(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def line(custom_id: str, body: dict[str, Any], url: str = "/v1/completions") -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def completion(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "memq", "prompt": prompt, "max_tokens": 8, **extra}


def upload(api: TestClient, content: str | bytes, headers: dict[str, str] = ACME) -> str:
    data = content.encode() if isinstance(content, str) else content
    resp = api.post(
        "/v1/files",
        files={"file": ("input.jsonl", data, "application/jsonl")},
        data={"purpose": "batch"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def create_batch(
    api: TestClient,
    content: str | bytes,
    endpoint: str = "/v1/completions",
    headers: dict[str, str] = ACME,
    **extra: Any,
) -> BatchPublic:
    file_id = upload(api, content, headers)
    resp = api.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": endpoint, **extra},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    return BatchPublic.model_validate(resp.json())


def batch(api: TestClient, batch_id: str, headers: dict[str, str] = ACME) -> BatchPublic:
    resp = api.get(f"/v1/batches/{batch_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return BatchPublic.model_validate(resp.json())


def wait_status(api: TestClient, batch_id: str, *statuses: str) -> BatchPublic:
    return until(
        lambda: (b := batch(api, batch_id)).status in statuses and b,
        f"batch {batch_id} to be {statuses}",
    )


def lines_of(api: TestClient, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    resp = api.get(f"/v1/files/{file_id}/content", headers=ACME)
    assert resp.status_code == 200, resp.text
    return [json.loads(raw) for raw in resp.text.splitlines()]


def result(text: str = " done") -> JobResult:
    return JobResult(
        text=text,
        model="tiny-gpt2",
        finish_reason="length",
        usage=TokenUsage(
            prompt_tokens=3, context_tokens=2, input_tokens=5, completion_tokens=4, total_tokens=9
        ),
        timings=JobTimings(),
        prompt="the prompt",
    )


def run_job(store: JobStore, tenant: str, job_id: str, text: str = " done") -> None:
    """What a worker does with a job: start it, then commit its result."""
    started = store.start(tenant, job_id, worker="test-worker", engine="test")
    assert started.record is not None, started.reason
    assert store.succeed(started.record, result(text))


def start_job(store: JobStore, tenant: str, job_id: str) -> None:
    assert store.start(tenant, job_id, worker="test-worker", engine="test").record is not None


def word_tokenizer_model(context_window: int) -> ModelInfo:
    """A served model whose tokenizer counts one token per word."""
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    return ModelInfo(
        name="tiny-gpt2", context_window=context_window, tokenizer_json=tokenizer.to_str()
    )


# ------------------------------------------------------------------------------ files


def test_upload_read_download_delete_a_file(api: TestClient) -> None:
    content = line("a", completion("hi")) + "\n"
    file_id = upload(api, content)
    found = FilePublic.model_validate(api.get(f"/v1/files/{file_id}", headers=ACME).json())
    assert found.bytes == len(content.encode()) and found.purpose == "batch"
    assert found.filename == "input.jsonl" and found.object == "file"
    assert api.get(f"/v1/files/{file_id}/content", headers=ACME).content == content.encode()
    listed = api.get("/v1/files", headers=ACME).json()
    assert [f["id"] for f in listed["data"]] == [file_id] and listed["has_more"] is False
    deleted = api.delete(f"/v1/files/{file_id}", headers=ACME)
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}
    gone = api.get(f"/v1/files/{file_id}", headers=ACME)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "file_not_found"  # OpenAI's error shape


def test_files_are_the_tenants_own(api: TestClient) -> None:
    file_id = upload(api, line("a", completion("hi")))
    for method, path in (
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
    ):
        assert api.request(method, path, headers=BETA).status_code == 404, path
    assert api.get("/v1/files", headers=BETA).json()["data"] == []
    created = api.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": "/v1/completions"},
        headers=BETA,
    )
    assert created.status_code == 404, created.text
    assert api.get(f"/v1/files/{file_id}", headers=ACME).status_code == 200


def test_upload_with_another_purpose_is_refused(api: TestClient) -> None:
    resp = api.post(
        "/v1/files",
        files={"file": ("x.jsonl", b"{}", "application/jsonl")},
        data={"purpose": "fine-tune"},
        headers=ACME,
    )
    assert resp.status_code == 422
    assert "purpose `batch`" in resp.json()["error"]["message"]


def test_a_file_name_longer_than_255_characters_is_refused_not_cut(api: TestClient) -> None:
    resp = api.post(
        "/v1/files",
        files={"file": ("n" * 256 + ".jsonl", b"{}", "application/jsonl")},
        data={"purpose": "batch"},
        headers=ACME,
    )
    assert resp.status_code == 422 and "at most 255" in resp.json()["error"]["message"]


def test_a_file_over_the_size_limit_is_413_and_not_stored(
    api: TestClient, settings: GatewaySettings
) -> None:
    big = b"x" * (settings.max_file_bytes + 1)
    resp = api.post(
        "/v1/files",
        files={"file": ("big.jsonl", big, "application/jsonl")},
        data={"purpose": "batch"},
        headers=ACME,
    )
    assert resp.status_code == 413, resp.text
    assert f"{settings.max_file_bytes:,}" in resp.text
    assert api.get("/v1/files", headers=ACME).json()["data"] == []
    assert not [p for p in settings.files_path.rglob("*") if p.is_file()]


def test_the_body_limit_lets_a_file_up_to_its_own_limit_through(
    redis_server: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        redis_url=redis_server,
        service_token="t",  # type: ignore[arg-type]
        files_dir=tmp_path,
        max_body_bytes=64 * 1024,
        max_file_bytes=256 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        data = b'{"custom_id": "x"}\n' * (200 * 1024 // 19)
        resp = client.post(
            "/v1/files",
            files={"file": ("f.jsonl", data, "application/jsonl")},
            data={"purpose": "batch"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["bytes"] == len(data) > settings.max_body_bytes
        too_big = client.post("/v1/jobs", content=b"x" * (65 * 1024))
        assert too_big.status_code == 413  # every other route keeps the general limit


# ---------------------------------------------------------------------- batch lifecycle


def test_a_batch_runs_every_line_as_a_low_priority_job_and_writes_openai_lines(
    api: TestClient, redis_client: redis.Redis, worker_store: JobStore
) -> None:
    content = "\n".join(
        line(f"req-{i}", completion(f"Prompt {i}", metadata={"team": "eval"})) for i in range(3)
    )
    created = create_batch(api, content, metadata={"run": "nightly"})
    assert created.status == "validating" and created.metadata == {"run": "nightly"}
    assert created.expires_at == created.created_at + 24 * 3600
    running = wait_status(api, created.id, "in_progress")
    assert running.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 0}
    # every line is a job on the low-priority queue, carrying its custom_id
    assert redis_client.llen("memq.test.low") == 3 and redis_client.llen("memq.test") == 0
    jobs = [line_job_id(created.id, n) for n in (1, 2, 3)]
    messages = [json.loads(m) for m in redis_client.lrange("memq.test.low", 0, -1)]
    assert sorted(m["headers"]["id"] for m in messages) == sorted(jobs)  # task id = job id
    assert {m["headers"]["task"] for m in messages} == {"memq.run_job"}
    body = json.loads(base64.b64decode(messages[0]["body"]))
    assert body[0] == [messages[0]["headers"]["id"], "acme"]  # args: (job id, tenant)
    record = worker_store.get("acme", jobs[0])
    assert record is not None and record.request.priority == "low"
    assert record.request.metadata == {"team": "eval", "batch_id": created.id, "custom_id": "req-0"}

    run_job(worker_store, "acme", jobs[1], " second")
    progress = batch(api, created.id)
    assert progress.status == "in_progress"
    assert progress.request_counts.completed == 1
    partial = lines_of(api, progress.output_file_id)  # written as lines finish
    assert [p["custom_id"] for p in partial] == ["req-1"]

    run_job(worker_store, "acme", jobs[2], " third")
    run_job(worker_store, "acme", jobs[0], " first")
    done = wait_status(api, created.id, "completed")
    assert done.request_counts.model_dump() == {"total": 3, "completed": 3, "failed": 0}
    assert done.finalizing_at is not None and done.completed_at is not None
    assert done.usage is not None and done.usage.output_tokens == 12
    output = lines_of(api, done.output_file_id)
    assert [o["custom_id"] for o in output] == ["req-0", "req-1", "req-2"]  # input order
    first = output[0]
    assert first["id"] == "batch_req_" + jobs[0].replace("-", "")
    assert first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"] == jobs[0]
    job = worker_store.get("acme", jobs[0])
    assert job is not None
    url = f"{GATEWAY_URL}/v1/jobs/{jobs[0]}"
    expected = completion_body(job.public(status_url=url), "tiny-gpt2", url)
    assert first["response"]["body"] == json.loads(json.dumps(expected, default=str))
    assert first["response"]["body"]["choices"][0]["text"] == " first"
    assert first["response"]["body"]["memq"]["memories"] == []  # the retrieval manifest
    assert lines_of(api, done.error_file_id) == []
    stored = api.get(f"/v1/files/{done.output_file_id}", headers=ACME).json()
    assert stored["purpose"] == "batch_output" and stored["bytes"] > 0
    assert not redis_client.exists(f"{PREFIX}:acme:batch:{created.id}:lines")


def test_jobs_and_chat_endpoints_answer_with_their_own_bodies(
    api: TestClient, worker_store: JobStore
) -> None:
    chat = create_batch(
        api,
        line(
            "c",
            {"model": "memq", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            "/v1/chat/completions",
        ),
        "/v1/chat/completions",
    )
    jobs = create_batch(
        api,
        line("j", {"type": "summarize", "text": "A long text to shorten."}, "/v1/jobs"),
        "/v1/jobs",
    )
    for created in (chat, jobs):
        wait_status(api, created.id, "in_progress")
        run_job(worker_store, "acme", line_job_id(created.id, 1))
    chat_line = lines_of(api, wait_status(api, chat.id, "completed").output_file_id)[0]
    assert chat_line["response"]["body"]["object"] == "chat.completion"
    assert chat_line["response"]["body"]["choices"][0]["message"]["content"] == " done"
    job_line = lines_of(api, wait_status(api, jobs.id, "completed").output_file_id)[0]
    body = job_line["response"]["body"]
    assert body["type"] == "summarize" and body["status"] == "succeeded"
    assert body["result"]["usage"]["total_tokens"] == 9


def test_every_malformed_line_is_in_the_error_file_with_its_line_number(
    api: TestClient, redis_client: redis.Redis, worker_store: JobStore
) -> None:
    worker_store.publish_model(word_tokenizer_model(context_window=32))
    rows = [
        line("ok", completion("Fine prompt")),  # 1
        "{not json",  # 2
        json.dumps(["an", "array"]),  # 3
        json.dumps({"method": "POST", "url": "/v1/completions", "body": {}}),  # 4: no custom_id
        line("wrong-url", completion("x"), "/v1/chat/completions"),  # 5
        line("ok", completion("again")),  # 6: duplicate custom_id
        line("too-long", completion(" ".join(["word"] * 40))),  # 7: over the context
        line("bad-param", completion("x", max_tokens=5000)),  # 8
        line("high", completion("x", priority="high")),  # 9
        line("stream", completion("x", stream=True)),  # 10
        line("model", completion("x", model="gpt-4o")),  # 11
        "",  # 12: blank, not a request
        line("reserved", completion("x", metadata={"batch_id": "mine"})),  # 13
    ]
    created = create_batch(api, "\n".join(rows))
    running = wait_status(api, created.id, "in_progress")
    assert running.request_counts.model_dump() == {"total": 12, "completed": 0, "failed": 11}
    assert redis_client.llen("memq.test.low") == 1
    errors = {e["error"]["line"]: e for e in lines_of(api, running.error_file_id)}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    codes = {n: e["error"]["code"] for n, e in errors.items()}
    assert codes == {
        2: "invalid_json",
        3: "invalid_line",
        4: "invalid_request",
        5: "invalid_url",
        6: "duplicate_custom_id",
        7: "prompt_too_long",
        8: "invalid_request",
        9: "invalid_request",
        10: "invalid_request",
        11: "model_not_found",
        13: "invalid_request",
    }
    assert errors[6]["custom_id"] == "ok" and "line 1" in errors[6]["error"]["message"]
    assert "custom_id" in errors[4]["error"]["message"]
    assert "max_tokens" in errors[8]["error"]["message"]
    assert "priority `low`" in errors[9]["error"]["message"]
    assert "context" in errors[7]["error"]["message"] or "tokens" in errors[7]["error"]["message"]
    assert all(e["response"] is None for e in errors.values())
    run_job(worker_store, "acme", line_job_id(created.id, 1))
    done = wait_status(api, created.id, "completed")
    assert done.request_counts.model_dump() == {"total": 12, "completed": 1, "failed": 11}
    assert len(lines_of(api, done.error_file_id)) == 11


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\xff\xfe not text", "invalid_file"),
        (b'[{"custom_id": "a"}]\n', "invalid_file"),
        (b"id,prompt\n1,hello\n", "invalid_file"),
        (b"\n\n", "empty_file"),
        (b'{\n  "custom_id": "pretty"\n}\n', "invalid_file"),
    ],
)
def test_a_file_that_is_not_jsonl_fails_the_batch_in_validation(
    api: TestClient, content: bytes, code: str
) -> None:
    created = create_batch(api, content)
    failed = wait_status(api, created.id, "failed")
    assert failed.failed_at is not None and failed.in_progress_at is None
    assert failed.errors is not None and failed.errors.data[0].code == code
    assert failed.errors.data[0].message
    assert failed.output_file_id is None and failed.error_file_id is None


def test_too_many_lines_fails_the_batch_with_the_limit(
    redis_server: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        redis_url=redis_server,
        service_token="t",  # type: ignore[arg-type]
        files_dir=tmp_path,
        batch_max_lines=2,
        batch_sweep_interval_s=0.05,
    )
    with TestClient(create_app(settings)) as client:
        content = "\n".join(line(str(i), completion("x")) for i in range(3))
        created = create_batch(client, content, headers={})
        failed = until(
            lambda: (b := batch(client, created.id, {})).status == "failed" and b, "failure"
        )
        assert failed.errors is not None
        assert failed.errors.data[0].code == "too_many_lines"
        assert "MEMQ_BATCH_MAX_LINES" in failed.errors.data[0].message


def test_batch_request_is_validated(api: TestClient) -> None:
    file_id = upload(api, line("a", completion("x")))
    for body, where in (
        ({"input_file_id": file_id, "endpoint": "/v1/embeddings"}, "endpoint"),
        ({"input_file_id": file_id, "endpoint": "/v1/jobs", "completion_window": "1y"}, "window"),
        ({"input_file_id": file_id, "endpoint": "/v1/jobs", "completion_window": "30d"}, "window"),
        ({"input_file_id": "file-nope", "endpoint": "/v1/jobs"}, "file"),
    ):
        resp = api.post("/v1/batches", json=body, headers=ACME)
        assert resp.status_code in (404, 422), (where, resp.text)
        assert resp.json()["error"]["message"], where


def test_cancel_cancels_queued_lines_lets_running_ones_finish_and_keeps_output(
    api: TestClient, worker_store: JobStore
) -> None:
    content = "\n".join(line(f"r{i}", completion(f"p{i}")) for i in range(6))
    created = create_batch(api, content)
    wait_status(api, created.id, "in_progress")
    jobs = [line_job_id(created.id, n) for n in range(1, 7)]
    run_job(worker_store, "acme", jobs[0])
    start_job(worker_store, "acme", jobs[1])  # running while the batch is cancelled

    resp = api.post(f"/v1/batches/{created.id}/cancel", headers=ACME)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelling" and resp.json()["cancelling_at"]
    until(
        lambda: batch(api, created.id).request_counts.failed == 4,
        "the queued lines to be cancelled",
    )
    assert worker_store.status("acme", jobs[1]) == JobStatus.running
    assert batch(api, created.id).status == "cancelling"
    running = worker_store.get("acme", jobs[1])
    assert running is not None and worker_store.succeed(running, result(" finished"))

    done = wait_status(api, created.id, "cancelled")
    assert done.cancelled_at is not None and done.completed_at is None
    assert done.request_counts.model_dump() == {"total": 6, "completed": 2, "failed": 4}
    assert [o["custom_id"] for o in lines_of(api, done.output_file_id)] == ["r0", "r1"]
    errors = lines_of(api, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r2", "r3", "r4", "r5"]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(worker_store.status("acme", j) == JobStatus.cancelled for j in jobs[2:])
    again = api.post(f"/v1/batches/{created.id}/cancel", headers=ACME)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


@pytest.mark.parametrize("valid", [True, False])
def test_a_batch_cancelled_while_validating_accounts_for_every_line(
    api: TestClient, redis_client: redis.Redis, valid: bool
) -> None:
    service = api.app.state.batches  # type: ignore[attr-defined]
    service.kick = lambda tenant, batch_id: None  # the test does the work, step by step
    content = "\n".join(line(f"r{i}", completion("x")) for i in range(3))
    created = create_batch(api, content if valid else "not jsonl at all")
    cancelled = api.post(f"/v1/batches/{created.id}/cancel", headers=ACME).json()
    assert cancelled["status"] == "cancelling"
    service.advance("acme", created.id)
    done = batch(api, created.id)
    if valid:
        assert done.status == "cancelled"
        assert done.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 3}
        errors = lines_of(api, done.error_file_id)
        assert [e["error"]["code"] for e in errors] == ["batch_cancelled"] * 3
        assert redis_client.llen("memq.test.low") == 0  # no job was made
    else:
        assert done.status == "failed" and done.errors is not None


def test_a_finished_batch_cannot_be_cancelled(api: TestClient, worker_store: JobStore) -> None:
    created = create_batch(api, line("a", completion("x")))
    wait_status(api, created.id, "in_progress")
    run_job(worker_store, "acme", line_job_id(created.id, 1))
    wait_status(api, created.id, "completed")
    resp = api.post(f"/v1/batches/{created.id}/cancel", headers=ACME)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "batch_finished"


def test_lines_not_finished_within_the_completion_window_expire(
    api: TestClient, worker_store: JobStore
) -> None:
    content = "\n".join(line(f"r{i}", completion(f"p{i}")) for i in range(4))
    created = create_batch(api, content, completion_window="2s")
    assert created.expires_at == created.created_at + 2
    wait_status(api, created.id, "in_progress")
    jobs = [line_job_id(created.id, n) for n in range(1, 5)]
    run_job(worker_store, "acme", jobs[0])
    start_job(worker_store, "acme", jobs[1])
    done = wait_status(api, created.id, "expired")
    assert done.expired_at is not None and done.expired_at >= created.expires_at
    assert done.request_counts.model_dump() == {"total": 4, "completed": 1, "failed": 3}
    assert [o["custom_id"] for o in lines_of(api, done.output_file_id)] == ["r0"]
    errors = lines_of(api, done.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    # the running line was stopped too: its worker's commit is refused
    late = worker_store.get("acme", jobs[1])
    assert late is not None and late.status == JobStatus.cancelled
    assert not worker_store.succeed(late, result())


def test_a_job_that_ended_without_its_line_gets_it_from_the_sweeper(
    api: TestClient, redis_client: redis.Redis, worker_store: JobStore
) -> None:
    created = create_batch(api, "\n".join(line(f"r{i}", completion("x")) for i in range(2)))
    wait_status(api, created.id, "in_progress")
    # A worker killed between its commit and the line write: the job store without the hook.
    bare = JobStore(redis_client, prefix=PREFIX)
    run_job(bare, "acme", line_job_id(created.id, 1), " orphan")
    run_job(worker_store, "acme", line_job_id(created.id, 2))
    done = wait_status(api, created.id, "completed")
    output = lines_of(api, done.output_file_id)
    assert [o["custom_id"] for o in output] == ["r0", "r1"]
    assert output[0]["response"]["body"]["choices"][0]["text"] == " orphan"


def test_a_job_cancelled_on_its_own_is_an_error_line(
    api: TestClient, worker_store: JobStore
) -> None:
    created = create_batch(api, "\n".join(line(f"r{i}", completion("x")) for i in range(2)))
    wait_status(api, created.id, "in_progress")
    job_id = line_job_id(created.id, 1)
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=ACME).status_code == 200
    run_job(worker_store, "acme", line_job_id(created.id, 2))
    done = wait_status(api, created.id, "completed")
    (error,) = lines_of(api, done.error_file_id)
    assert error["custom_id"] == "r0" and error["error"]["code"] == "cancelled"


def test_a_failed_job_is_an_error_line_with_the_endpoints_error_body(
    api: TestClient, worker_store: JobStore
) -> None:
    from memq.contracts import ErrorResponse

    created = create_batch(api, line("r", completion("x")))
    wait_status(api, created.id, "in_progress")
    started = worker_store.start("acme", line_job_id(created.id, 1), worker="w", engine="e")
    assert started.record is not None
    worker_store.fail(started.record, ErrorResponse(error="memory_unavailable", message="down"))
    done = wait_status(api, created.id, "completed")
    assert done.request_counts.model_dump() == {"total": 1, "completed": 0, "failed": 1}
    (error,) = lines_of(api, done.error_file_id)
    assert error["response"]["status_code"] == 500
    assert error["response"]["body"]["error"]["code"] == "memory_unavailable"


def test_creation_run_again_after_a_crash_makes_no_job_twice(
    api: TestClient, redis_client: redis.Redis, worker_store: JobStore
) -> None:
    content = "\n".join(line(f"r{i}", completion("x")) for i in range(1200))
    created = create_batch(api, content)
    wait_status(api, created.id, "in_progress")
    run_job(worker_store, "acme", line_job_id(created.id, 7))
    assert redis_client.llen("memq.test.low") == 1200
    # As if the gateway died before it recorded the end of the creation: the next sweep
    # creates it again.
    key = f"{PREFIX}:acme:batch:{created.id}"
    redis_client.hset(key, mapping={"status": "validating", "enqueued": "0"})
    again = wait_status(api, created.id, "in_progress")
    assert redis_client.llen("memq.test.low") == 1200  # nothing created or sent twice
    assert again.request_counts.model_dump() == {"total": 1200, "completed": 1, "failed": 0}
    assert redis_client.hlen(f"{key}:pending") == 1199


def test_listing_is_newest_first_with_cursor_pagination(api: TestClient) -> None:
    ids = [create_batch(api, line("a", completion("x"))).id for _ in range(3)]
    first = api.get("/v1/batches", params={"limit": 2}, headers=ACME).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [b["id"] for b in first["data"]] == ids[::-1][:2]
    assert first["first_id"] == ids[2] and first["last_id"] == ids[1]
    rest = api.get("/v1/batches", params={"after": first["last_id"]}, headers=ACME).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert api.get("/v1/batches", headers=BETA).json()["data"] == []


def test_batches_are_the_tenants_own(api: TestClient, worker_store: JobStore) -> None:
    created = create_batch(api, line("a", completion("x")))
    running = wait_status(api, created.id, "in_progress")
    for method, path in (
        ("GET", f"/v1/batches/{created.id}"),
        ("POST", f"/v1/batches/{created.id}/cancel"),
        ("GET", f"/v1/files/{running.output_file_id}"),
        ("GET", f"/v1/files/{running.error_file_id}/content"),
    ):
        resp = api.request(method, path, headers=BETA)
        assert resp.status_code == 404, (path, resp.text)
    assert batch(api, created.id).status == "in_progress"


def test_a_running_batchs_output_file_cannot_be_deleted(api: TestClient) -> None:
    created = create_batch(api, line("a", completion("x")))
    running = wait_status(api, created.id, "in_progress")
    resp = api.delete(f"/v1/files/{running.output_file_id}", headers=ACME)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "file_in_use"


def test_the_official_openai_client_parses_files_and_batches(
    api: TestClient, worker_store: JobStore
) -> None:
    client = openai.OpenAI(
        api_key="k-acme", base_url="http://testserver/v1", http_client=api, max_retries=0
    )
    uploaded = client.files.create(
        file=("in.jsonl", line("a", completion("x")).encode()), purpose="batch"
    )
    assert uploaded.purpose == "batch" and uploaded.status == "processed"
    created = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h"
    )
    assert created.status == "validating"
    until(lambda: client.batches.retrieve(created.id).status == "in_progress", "in progress")
    run_job(worker_store, "acme", line_job_id(created.id, 1))
    done = until(
        lambda: (b := client.batches.retrieve(created.id)).status == "completed" and b, "done"
    )
    assert done.request_counts is not None and done.request_counts.completed == 1
    assert done.output_file_id is not None
    text = client.files.content(done.output_file_id).text
    assert json.loads(text)["custom_id"] == "a"
    assert [b.id for b in client.batches.list()] == [created.id]
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_a_line_whose_text_holds_unicode_line_separators_stays_one_line(
    api: TestClient, worker_store: JobStore
) -> None:
    created = create_batch(api, "\n".join(line(f"r{i}", completion("x")) for i in range(2)))
    wait_status(api, created.id, "in_progress")
    odd = " a\u2028b\u2029c\x85d\u00e9"
    run_job(worker_store, "acme", line_job_id(created.id, 1), odd)
    run_job(worker_store, "acme", line_job_id(created.id, 2))
    done = wait_status(api, created.id, "completed")
    raw = api.get(f"/v1/files/{done.output_file_id}/content", headers=ACME).text
    assert len(raw.splitlines()) == 2  # str.splitlines breaks at U+2028, U+2029 and U+0085
    assert json.loads(raw.splitlines()[0])["response"]["body"]["choices"][0]["text"] == odd
