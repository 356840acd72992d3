"""SessionService below HTTP, on a real Redis and job store, with the memory service
scripted behind an httpx MockTransport: a transcript is read in turn order across pages,
with its rolling summary; an unknown session is not found; forgetting a session cancels
only its own unfinished chat jobs, deletes its namespace and clears its turn counter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis

from gateway.core.config import GatewaySettings
from gateway.services.jobs import JobService
from gateway.services.sessions import SessionNotFound, SessionService
from memq.broker import producer_app
from memq.contracts import ChatJobRequest, ChatMessage, ChatRole, GenerateJobRequest, JobStatus
from memq.memory_client import TENANT_HEADER, AsyncMemoryClient
from memq.store.jobs import JobStore
from memq.store.sessions import summary_id

PREFIX = "memq"


def memory(memory_id: str, text: str, **metadata: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "id": memory_id,
        "tenant": "acme",
        "namespace": "session:s1",
        "kind": "message",
        "text": text,
        "metadata": {k: str(v) for k, v in metadata.items()},
        "created_at": now,
        "updated_at": now,
        "content_hash": "h",
    }


class MemoryService:
    """The memory service's answers for one session, paged two memories at a time."""

    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None
        self.deleted = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path == "/v1/memories":
            start = int(request.url.params.get("cursor", "0"))
            page = self.turns[start : start + 2]
            more = start + 2 < len(self.turns)
            return httpx.Response(
                200, json={"items": page, "next_cursor": str(start + 2) if more else None}
            )
        if request.method == "GET" and path == f"/v1/memories/{summary_id('s1')}":
            if self.summary is None:
                return httpx.Response(404, json={"error": "not_found", "message": "none"})
            return httpx.Response(200, json=self.summary)
        if request.method == "DELETE" and path == "/v1/namespaces/session:s1":
            return httpx.Response(200, json={"namespace": "session:s1", "deleted": self.deleted})
        return httpx.Response(404, json={"error": "not_found", "message": "unscripted"})


@pytest.fixture
def upstream() -> MemoryService:
    return MemoryService()


@pytest.fixture
def jobs(redis_server: str, redis_client: redis.Redis) -> JobService:
    settings = GatewaySettings(redis_url=redis_server, service_token="t")  # type: ignore[arg-type]
    return JobService(JobStore(redis_client, prefix=PREFIX), producer_app(settings), settings)


@pytest.fixture
def sessions(jobs: JobService, upstream: MemoryService) -> SessionService:
    transport = httpx.MockTransport(upstream)
    client = AsyncMemoryClient("http://memory.invalid", "t", transport=transport)
    return SessionService(jobs, client)


def chat(session_id: str | None) -> ChatJobRequest:
    return ChatJobRequest(
        messages=[ChatMessage(role=ChatRole.user, content="Hi")], session_id=session_id
    )


def test_a_transcript_is_read_in_turn_order_across_pages_with_its_summary(
    sessions: SessionService, upstream: MemoryService
) -> None:
    upstream.turns = [
        memory("m3", "How are you?", turn=3, role="user"),
        memory("m1", "Hi", turn=1, role="user"),
        memory("m2", "Hello!", turn=2, role="assistant"),
    ]
    upstream.summary = memory(summary_id("s1"), "They greeted.", through_turn=2)
    session = asyncio.run(sessions.read("acme", "s1"))
    assert [(t.turn, t.role, t.content) for t in session.turns] == [
        (1, ChatRole.user, "Hi"),
        (2, ChatRole.assistant, "Hello!"),
        (3, ChatRole.user, "How are you?"),
    ]
    assert session.summary is not None
    assert (session.summary.text, session.summary.through_turn) == ("They greeted.", 2)
    assert {r.headers[TENANT_HEADER] for r in upstream.requests} == {"acme"}
    pages = [r for r in upstream.requests if r.url.path == "/v1/memories"]
    assert [r.url.params.get("kind") for r in pages] == ["message", "message"]


def test_a_session_nobody_wrote_to_is_not_found(sessions: SessionService) -> None:
    with pytest.raises(SessionNotFound, match="s1"):
        asyncio.run(sessions.read("acme", "s1"))


def test_a_session_whose_turns_are_reserved_but_not_yet_stored_reads_as_empty(
    sessions: SessionService, jobs: JobService
) -> None:
    jobs.store.sessions.reserve_turns("acme", "s1", "job-1", 2)
    session = asyncio.run(sessions.read("acme", "s1"))
    assert (session.turns, session.summary) == ([], None)


def test_forgetting_a_session_cancels_only_its_own_unfinished_chat_jobs(
    sessions: SessionService, jobs: JobService, upstream: MemoryService
) -> None:
    mine = jobs.submit("acme", chat("s1")).record.id
    running = jobs.submit("acme", chat("s1")).record.id
    assert jobs.store.start("acme", running, worker="w", engine="test").record is not None
    other_session = jobs.submit("acme", chat("s2")).record.id
    no_session = jobs.submit("acme", chat(None)).record.id
    generate = jobs.submit("acme", GenerateJobRequest(prompt="Hi")).record.id
    other_tenant = jobs.submit("beta", chat("s1")).record.id
    jobs.store.sessions.reserve_turns("acme", "s1", mine, 2)
    upstream.deleted = 4

    forgotten = asyncio.run(sessions.forget("acme", "s1"))

    assert (forgotten.deleted_memories, forgotten.cancelled_jobs) == (4, 2)
    status = jobs.store.status
    assert status("acme", mine) == status("acme", running) == JobStatus.cancelled
    for tenant, job_id in [
        ("acme", other_session),
        ("acme", no_session),
        ("acme", generate),
        ("beta", other_tenant),
    ]:
        assert status(tenant, job_id) == JobStatus.queued
    assert jobs.store.sessions.state("acme", "s1") == (0, 0)
    [delete] = [r for r in upstream.requests if r.method == "DELETE"]
    assert delete.headers[TENANT_HEADER] == "acme"
