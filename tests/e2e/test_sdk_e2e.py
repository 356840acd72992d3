"""The Python SDK (`memq.Client`, `memq.AsyncClient`) against the real stack: jobs submitted,
streamed, waited for, listed, cancelled and replayed; memories added, searched, listed and
forgotten; a chat session; typed errors carrying the server's message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import memq
from memq.contracts import (
    GenerateJobRequest,
    GenerationParams,
    JobStatus,
    MemoryOptions,
    Priority,
)
from memq.ops.launcher import Stack
from memq.sdk import ResultEvent, StatusEvent, TokenEvent
from tests.e2e.ops import OPS_KEY

pytestmark = pytest.mark.e2e


@pytest.fixture
def sdk(stack: Stack) -> Iterator[memq.Client]:
    with memq.Client(stack.gateway_url) as client:
        yield client


def _ns() -> str:
    return f"user:sdk-{uuid.uuid4().hex[:8]}"


def test_a_streamed_generate_job_ends_with_the_memory_it_used(sdk: memq.Client) -> None:
    ns = _ns()
    fact = sdk.add_memory(ns, "Alice lives in Paris and works as a marine biologist.")
    accepted = sdk.generate("Question: Where does Alice live?\nAnswer:", namespace=ns, top_k=3)
    assert accepted.status == JobStatus.queued

    stream = sdk.stream(accepted.id, timeout=120)
    deltas = list(stream)
    job = stream.job
    assert job is not None and job.status == JobStatus.succeeded and job.result is not None
    assert "".join(deltas) == stream.text == job.result.text
    assert stream.tokens == job.result.usage.completion_tokens  # every token event came first
    [memory] = job.result.memories
    assert (memory.id, memory.used) == (fact.id, True)
    assert fact.text in job.result.prompt


def test_events_come_in_order_and_wait_gets_the_same_job_by_sse_or_polling(
    sdk: memq.Client,
) -> None:
    accepted = sdk.generate("The quick brown fox", max_new_tokens=8)
    events = list(sdk.events(accepted.id, timeout=120))
    assert isinstance(events[-1], ResultEvent)
    assert any(isinstance(e, TokenEvent) for e in events)
    statuses = [e.status for e in events if isinstance(e, StatusEvent)]
    # The terminal status event comes before the result, never after it.
    assert statuses[-1] == JobStatus.succeeded and JobStatus.running in statuses
    # Resuming after an event replays only what came after it.
    later = list(sdk.events(accepted.id, last_event_id=events[1].id, timeout=120))
    assert later == events[2:]
    over_sse = sdk.wait(accepted.id, timeout=120)
    by_polling = sdk.wait(accepted.id, timeout=120, events=False)
    assert over_sse.result is not None and by_polling.result is not None
    assert over_sse.result.text == by_polling.result.text == events[-1].job.result.text  # type: ignore[union-attr]


def test_contract_models_idempotency_metadata_and_listing(sdk: memq.Client) -> None:
    run = uuid.uuid4().hex[:12]
    since = datetime.now(UTC) - timedelta(seconds=1)
    job = GenerateJobRequest(
        prompt="Once upon a time",
        params=GenerationParams(max_new_tokens=4),
        memory=MemoryOptions(top_k=0),
        metadata={"run": run},
        priority=Priority.high,
    )
    first = sdk.submit(job, idempotency_key=f"key-{run}")
    again = sdk.submit(job, idempotency_key=f"key-{run}")
    assert again.id == first.id  # the same key and body: the original job
    second = sdk.generate("Once upon a time", max_new_tokens=4, metadata={"run": run})
    for accepted in (first, second):
        assert sdk.wait(accepted.id, timeout=120).status == JobStatus.succeeded

    listed = sdk.iter_jobs(status=["succeeded"], created_after=since, page_size=1)
    mine = [j for j in listed if j.metadata == {"run": run}]
    assert [j.id for j in mine] == [second.id, first.id]  # newest first, across pages
    assert mine[1].priority == Priority.high
    page = sdk.list_jobs(limit=1)
    assert len(page.items) == 1 and page.next_cursor is not None


def test_cancel_replay_and_typed_errors_with_the_server_message(sdk: memq.Client) -> None:
    accepted = sdk.generate("Alice lives in", max_new_tokens=6, temperature=0.0)
    done = sdk.wait(accepted.id, timeout=120)
    with pytest.raises(memq.ConflictError) as finished:
        sdk.cancel(accepted.id)
    assert finished.value.status_code == 409 and finished.value.code == "job_finished"
    assert finished.value.server_message  # the gateway's words, not a generic one

    replay = sdk.replay(accepted.id)
    replayed = sdk.wait(replay.id, timeout=120)
    assert replayed.replay_of == accepted.id
    assert replayed.result is not None and done.result is not None
    assert replayed.result.text == done.result.text  # greedy: token for token

    with pytest.raises(memq.NotFoundError) as missing:
        sdk.get("no-such-job")
    assert missing.value.code == "job_not_found" and "no-such-job" in missing.value.server_message
    with pytest.raises(memq.UnprocessableError) as refused:  # strict: "8" is not a number
        sdk.submit({"type": "generate", "prompt": "hi", "params": {"max_new_tokens": "8"}})
    assert refused.value.code == "validation_error"
    assert "max_new_tokens" in refused.value.server_message


def test_memories_batch_search_list_ingest_delete_and_forget(sdk: memq.Client) -> None:
    ns = _ns()
    added = sdk.add_memories(
        ["Bob's favourite colour is green.", "Carol keeps three goats on a farm."], namespace=ns
    )
    assert [m.namespace for m in added] == [ns, ns]
    hits = sdk.search(ns, "what animals does Carol have", top_k=2)
    assert hits[0].id == added[1].id and hits[0].similarity is not None
    document = sdk.ingest_document(ns, "A long note about farming. " * 40, chunk_chars=500)
    assert len(document.chunks) > 1
    listed = list(sdk.iter_memories(ns, page_size=2))
    assert {m.id for m in listed} == {m.id for m in added} | {c.id for c in document.chunks}

    assert sdk.delete_memory(added[0].id).deleted
    with pytest.raises(memq.NotFoundError):
        sdk.get_memory(added[0].id)
    forgotten = sdk.forget(ns)
    assert forgotten.deleted == len(listed) - 1
    assert sdk.list_memories(ns).items == []


def test_a_chat_session_remembers_and_is_forgotten(sdk: memq.Client) -> None:
    session = f"sdk-{uuid.uuid4().hex[:8]}"
    first = sdk.wait(sdk.chat("Hello, I am Dana.", session_id=session, max_new_tokens=8).id, 120)
    assert first.status == JobStatus.succeeded and first.result is not None
    transcript = sdk.get_session(session)
    assert [t.role.value for t in transcript.turns] == ["user", "assistant"]
    assert transcript.turns[0].content == "Hello, I am Dana."
    assert transcript.turns[1].content == first.result.text
    gone = sdk.forget_session(session)
    assert gone.deleted_memories == 2
    with pytest.raises(memq.NotFoundError):
        sdk.get_session(session)


def test_the_async_client_does_the_same_over_asyncio(stack: Stack) -> None:
    ns = _ns()

    async def scenario() -> tuple[str, str, list[str]]:
        async with memq.AsyncClient(stack.gateway_url) as client:
            await client.add_memory(ns, "Dana's cat is called Pixel.")
            accepted = await client.generate("What is Dana's cat called?", namespace=ns)
            stream = client.stream(accepted.id, timeout=120)
            deltas = [d async for d in stream]
            job = await client.wait(accepted.id, timeout=120)
            names = [m.text async for m in client.iter_memories(ns)]
            assert job.result is not None
            return "".join(deltas), job.result.text, names

    streamed, final, names = asyncio.run(scenario())
    assert streamed == final and names == ["Dana's cat is called Pixel."]


def test_an_api_key_is_sent_and_a_wrong_one_is_an_authentication_error(
    ops_stack: Stack,
) -> None:
    with memq.Client(ops_stack.gateway_url, OPS_KEY) as client:
        job = client.wait(client.generate("Hi", max_new_tokens=2).id, timeout=120)
        assert job.tenant == "ops"
    with (
        memq.Client(ops_stack.gateway_url, "not-a-key") as client,
        pytest.raises(memq.AuthenticationError) as refused,
    ):
        client.list_jobs()
    assert refused.value.status_code == 401 and refused.value.code == "unauthorized"
