"""End to end through HTTP: real Redis, memory service, Celery worker, gateway."""

from __future__ import annotations

import uuid

import httpx
import pytest
from transformers import AutoTokenizer

from memq.contracts import JobStatus
from memq.ops.launcher import Stack
from memq.sdk import Client

pytestmark = pytest.mark.e2e


def _ns() -> str:
    return f"user:{uuid.uuid4().hex[:8]}"


def test_generate_job_puts_retrieved_memories_in_model_input(
    client: Client, stack: Stack, tiny_model_dir: object
) -> None:
    ns = _ns()
    alice = client.add_memory(ns, "Alice lives in Paris and works as a marine biologist.")
    bob = client.add_memory(ns, "Bob's favourite colour is green; he owns a cat named Pixel.")

    accepted = client.submit(
        {
            "type": "generate",
            "prompt": "Where does Alice live?",
            "params": {"max_new_tokens": 12},
            "memory": {"namespace": ns, "top_k": 2},
        }
    )
    assert accepted.status == JobStatus.queued
    assert accepted.status_url.endswith(f"/v1/jobs/{accepted.id}")
    job = client.wait(accepted.id, timeout=120)

    assert job.status == JobStatus.succeeded, job.error
    assert set(job.timestamps) == {JobStatus.queued, JobStatus.running, JobStatus.succeeded}
    assert job.timestamps[JobStatus.queued] <= job.timestamps[JobStatus.running]
    result = job.result
    assert result is not None
    assert result.model == str(tiny_model_dir)
    ids = [m.id for m in result.memories]
    assert ids[0] == alice.id  # best match first
    assert set(ids) == {alice.id, bob.id}
    by_id = {m.id: m for m in result.memories}
    # Alice's memory is relevant: used. Bob's is unrelated: below the cosine floor, left out.
    assert by_id[alice.id].used and by_id[alice.id].left_out is None
    assert by_id[alice.id].similarity is not None and by_id[alice.id].similarity >= 0.3
    assert not by_id[bob.id].used and by_id[bob.id].left_out == "below_similarity_floor"
    assert by_id[bob.id].similarity is not None and by_id[bob.id].similarity < 0.3
    # The retrieved text was in the model's input, ahead of the user's prompt.
    assert alice.text in result.prompt and bob.text not in result.prompt
    assert result.prompt.index(alice.text) < result.prompt.index("Where does Alice live?")

    usage = result.usage
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert usage.prompt_tokens == len(tok.encode("Where does Alice live?"))
    assert usage.input_tokens == usage.prompt_tokens + usage.context_tokens
    assert usage.input_tokens == len(tok.encode(result.prompt))
    assert usage.completion_tokens == 12  # random tiny model: no EOS, no stop string
    assert usage.total_tokens == usage.input_tokens + usage.completion_tokens
    t = result.timings
    assert t.queue_wait_s is not None and t.queue_wait_s >= 0
    assert t.retrieval_s is not None and t.retrieval_s > 0
    assert t.generation_s is not None and t.generation_s > 0
    assert t.engine_first_token_s is not None and 0 < t.engine_first_token_s <= t.generation_s


def test_job_without_namespace_retrieves_nothing(client: Client) -> None:
    job = client.wait(client.submit({"type": "generate", "prompt": "Hello there"}).id)
    assert job.status == JobStatus.succeeded
    assert job.result is not None
    assert job.result.memories == []
    assert job.result.usage.context_tokens == 0
    assert job.result.prompt == "Hello there"


def test_summarize_longer_than_context_is_map_reduced(client: Client) -> None:
    sentences = [
        f"Sentence number {i} says that the fox jumped over dog {i} in Paris." for i in range(300)
    ]
    text = " ".join(sentences)
    job = client.wait(
        client.submit({"type": "summarize", "text": text, "params": {"max_new_tokens": 16}}).id,
        timeout=300,
    )
    assert job.status == JobStatus.succeeded, job.error
    result = job.result
    assert result is not None
    assert result.chunks > 1  # longer than the 1,024-token context: several map chunks
    assert result.prompt.endswith("TL;DR:")
    assert result.usage.prompt_tokens >= 1024
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.completion_tokens


def test_summarize_short_text_is_one_call(client: Client) -> None:
    text = "Alice lives in Paris. She works as a marine biologist and loves ramen."
    job = client.wait(client.submit({"type": "summarize", "text": text}).id)
    assert job.status == JobStatus.succeeded
    assert job.result is not None
    assert job.result.chunks == 1
    assert job.result.prompt == text + "\n\nTL;DR:"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"type": "translate", "prompt": "hi"}, "type"),
        ({"type": "generate", "prompt": ""}, "prompt"),
        ({"type": "generate", "prompt": "   "}, "prompt"),
        ({"type": "generate", "prompt": "hi", "params": {"max_new_tokens": 0}}, "max_new_tokens"),
        (
            {"type": "generate", "prompt": "hi", "params": {"max_new_tokens": 5000}},
            "max_new_tokens",
        ),
        ({"type": "generate", "prompt": "hi", "memory": {"namespace": "bad ns!"}}, "namespace"),
        ({"type": "summarize", "text": ""}, "text"),
    ],
)
def test_bad_job_input_is_422_naming_the_field(stack: Stack, body: dict, needle: str) -> None:
    resp = httpx.post(f"{stack.gateway_url}/v1/jobs", json=body)
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["error"] == "validation_error"
    assert needle in err["message"]


def test_prompt_too_long_for_context_is_422_with_token_counts(stack: Stack) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 400
    resp = httpx.post(
        f"{stack.gateway_url}/v1/jobs",
        json={"type": "generate", "prompt": prompt, "params": {"max_new_tokens": 64}},
    )
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["error"] == "prompt_too_long"
    assert "1,024" in err["message"] and "max_new_tokens" in err["message"]


def test_prompt_that_fits_only_without_max_new_tokens_is_rejected(stack: Stack) -> None:
    tok = AutoTokenizer.from_pretrained(stack.env["MEMQ_MODEL"])
    prompt = "Alice lives in Paris. " * 150
    n = len(tok.encode(prompt))
    assert n < 1024
    too_many = 1024 - n + 1
    resp = httpx.post(
        f"{stack.gateway_url}/v1/jobs",
        json={"type": "generate", "prompt": prompt, "params": {"max_new_tokens": too_many}},
    )
    assert resp.status_code == 422
    ok = httpx.post(
        f"{stack.gateway_url}/v1/jobs",
        json={"type": "generate", "prompt": prompt, "params": {"max_new_tokens": too_many - 1}},
    )
    assert ok.status_code == 202


def test_unknown_job_id_is_404(stack: Stack) -> None:
    resp = httpx.get(f"{stack.gateway_url}/v1/jobs/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert resp.json()["error"] == "job_not_found"


def test_memories_are_reachable_through_the_gateway(client: Client, stack: Stack) -> None:
    ns = _ns()
    added = client.add_memory(ns, "The launch code is 4711.")
    resp = httpx.post(
        f"{stack.gateway_url}/v1/memories/search",
        json={"namespace": ns, "query": "launch code", "top_k": 3},
    )
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    assert hits[0]["id"] == added.id
    got = httpx.get(f"{stack.gateway_url}/v1/memories/{added.id}")
    assert got.status_code == 200 and got.json()["text"] == "The launch code is 4711."
    assert httpx.delete(f"{stack.gateway_url}/v1/memories/{added.id}").status_code in (200, 204)
    assert httpx.get(f"{stack.gateway_url}/v1/memories/{added.id}").status_code == 404
