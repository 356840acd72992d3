"""The Batch API on the real stack, through the official `openai` client, unmodified:
`files.create`, `batches.create / retrieve / list / cancel`, `files.content` (issue 11).

Every line is an ordinary memq job: it retrieves memories (memq's options in the body),
its output line carries the completion with memq's retrieval manifest and usage, and a
malformed line is reported in the error file with its line number."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import openai
import pytest
from openai.types import Batch

from memq.sdk import Client

pytestmark = pytest.mark.e2e

T = TypeVar("T")
FINISH_S = 240.0


def until(probe: Callable[[], T | None], what: str, timeout: float = FINISH_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def request(custom_id: str, url: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def upload(oai: openai.OpenAI, rows: list[str]) -> str:
    data = ("\n".join(rows) + "\n").encode()
    uploaded = oai.files.create(file=("requests.jsonl", data), purpose="batch")
    assert uploaded.bytes == len(data) and uploaded.purpose == "batch"
    return uploaded.id


def finished(oai: openai.OpenAI, batch_id: str, *statuses: str) -> Batch:
    return until(
        lambda: (b := oai.batches.retrieve(batch_id)).status in statuses and b,
        f"batch {batch_id} to be {statuses}",
    )


def lines(oai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(raw) for raw in oai.files.content(file_id).text.splitlines()]


def test_the_openai_client_runs_a_completion_batch_with_memory(
    oai: openai.OpenAI, client: Client, http: httpx.Client
) -> None:
    namespace = f"user:{uuid.uuid4().hex[:8]}"
    fact = client.add_memory(namespace, "Marisol keeps her bicycle in the blue shed.")
    memory = {"namespaces": [namespace], "top_k": 3, "min_similarity": -1}
    rows = [
        request(
            f"q-{i}",
            "/v1/completions",
            {
                "model": "memq",
                "prompt": f"Question {i}: where is the bicycle?",
                "max_tokens": 6,
                "temperature": 0,
                "memory": memory,
            },
        )
        for i in range(5)
    ]
    rows.insert(2, '{"custom_id": "broken", "method": "POST"')  # line 3: not JSON
    file_id = upload(oai, rows)
    created = oai.batches.create(
        input_file_id=file_id,
        endpoint="/v1/completions",
        completion_window="24h",
        metadata={"suite": "e2e"},
    )
    assert created.status == "validating" and created.metadata == {"suite": "e2e"}
    done = finished(oai, created.id, "completed")
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (6, 5)
    assert done.request_counts.failed == 1
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.usage is not None and done.usage.output_tokens == 5 * 6

    output = lines(oai, done.output_file_id)
    assert [o["custom_id"] for o in output] == [f"q-{i}" for i in range(5)]
    for line in output:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert body["object"] == "text_completion"
        assert body["usage"]["completion_tokens"] == 6
        assert fact.id in {m["id"] for m in body["memq"]["memories"]}  # retrieval manifest
        job = http.get(f"/v1/jobs/{line['response']['request_id']}").json()
        assert job["request"]["priority"] == "low"
        assert job["request"]["metadata"]["custom_id"] == line["custom_id"]
        assert job["result"]["text"] == body["choices"][0]["text"]
    (error,) = lines(oai, done.error_file_id)
    assert error["error"]["line"] == 3 and error["error"]["code"] == "invalid_json"
    assert created.id in {b.id for b in oai.batches.list(limit=100)}


def test_chat_and_job_batches_answer_like_their_endpoints(oai: openai.OpenAI) -> None:
    chat_rows = [
        request(
            f"c-{i}",
            "/v1/chat/completions",
            {
                "model": "memq",
                "messages": [{"role": "user", "content": f"Say hello {i}"}],
                "max_tokens": 4,
            },
        )
        for i in range(3)
    ]
    job_rows = [
        request(
            f"j-{i}",
            "/v1/jobs",
            {"type": "generate", "prompt": f"Count {i}:", "params": {"max_new_tokens": 3}},
        )
        for i in range(3)
    ]
    chat = oai.batches.create(
        input_file_id=upload(oai, chat_rows),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    jobs = oai.batches.create(
        input_file_id=upload(oai, job_rows),
        endpoint="/v1/jobs",  # type: ignore[arg-type]  # memq's own endpoint
        completion_window="24h",
    )
    chat_done = finished(oai, chat.id, "completed")
    for line in lines(oai, chat_done.output_file_id):
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["body"]["choices"][0]["message"]["role"] == "assistant"
    jobs_done = finished(oai, jobs.id, "completed")
    for line in lines(oai, jobs_done.output_file_id):
        job = line["response"]["body"]
        assert job["status"] == "succeeded" and job["result"]["usage"]["completion_tokens"] == 3


def test_cancel_mid_batch_keeps_what_completed_and_accounts_for_every_line(
    oai: openai.OpenAI,
) -> None:
    total = 120
    rows = [
        request(
            f"r-{i}",
            "/v1/completions",
            {"model": "memq", "prompt": f"Story {i}:", "max_tokens": 400},
        )
        for i in range(total)
    ]
    created = oai.batches.create(
        input_file_id=upload(oai, rows), endpoint="/v1/completions", completion_window="24h"
    )
    until(
        lambda: (c := oai.batches.retrieve(created.id).request_counts) and c.completed >= 1,
        "a first line to complete",
    )
    cancelling = oai.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = finished(oai, created.id, "cancelled")
    assert done.cancelled_at is not None and done.request_counts is not None
    counts = done.request_counts
    assert counts.total == total and counts.completed + counts.failed == total
    assert 1 <= counts.completed < total
    output, errors = lines(oai, done.output_file_id), lines(oai, done.error_file_id)
    assert (len(output), len(errors)) == (counts.completed, counts.failed)
    seen = [line["custom_id"] for line in output + errors]
    assert sorted(seen) == sorted(f"r-{i}" for i in range(total))  # each line exactly once
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(o["response"]["body"]["usage"]["completion_tokens"] > 0 for o in output)
