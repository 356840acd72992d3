"""The session book's bookkeeping around a job's commit, without Celery or a model: turns
written back before the commit and undone when it fails, a long session's rolling summary
scheduled once, a finished summary kept, the user's facts remembered, and bookkeeping that
fails never failing the committed job. Real Redis; the memory service is a stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import redis

from memq.contracts import (
    ChatJobRequest,
    ChatRole,
    JobResult,
    JobTimings,
    MemoryCreate,
    MemoryFilter,
    MemoryKind,
    SessionSummaryTarget,
    SummarizeJobRequest,
    TokenUsage,
    session_namespace,
    user_namespace,
)
from memq.errors import MemoryUnavailable
from memq.store.jobs import JobStore
from memq.store.sessions import message_id, summary_id
from worker.sessions import SessionBook


@dataclass
class Stored:
    id: str
    namespace: str
    kind: MemoryKind
    text: str
    metadata: dict[str, Any]


class Memory:
    """Just enough of the memory service: memories by id, listed by namespace, kind and
    `gt` conditions on numeric metadata."""

    def __init__(self) -> None:
        self.stored: dict[str, Stored] = {}
        self.added = 0

    def _keep(self, memory_id: str, body: MemoryCreate) -> Stored:
        kept = Stored(memory_id, body.namespace, body.kind, body.text, dict(body.metadata))
        self.stored[memory_id] = kept
        return kept

    def put(self, tenant: str, memory_id: str, body: MemoryCreate) -> Stored:
        return self._keep(memory_id, body)

    def add(self, tenant: str, body: dict[str, Any]) -> Stored:
        self.added += 1
        return self._keep(f"added-{self.added}", MemoryCreate.model_validate(body))

    def get(self, tenant: str, memory_id: str) -> Stored | None:
        return self.stored.get(memory_id)

    def delete(self, tenant: str, memory_id: str) -> bool:
        return self.stored.pop(memory_id, None) is not None

    def list_all(
        self,
        tenant: str,
        namespace: str,
        *,
        kinds: list[MemoryKind] | None = None,
        where: MemoryFilter | None = None,
        limit: int = 1000,
    ) -> list[Stored]:
        found = []
        for m in self.stored.values():
            if m.namespace != namespace or (kinds and m.kind not in kinds):
                continue
            conditions = where.all_of if where and where.all_of else []
            if all(c.gt is None or m.metadata.get(c.key, 0) > c.gt for c in conditions):
                found.append(m)
        return found[:limit]


def result(text: str) -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text=text, model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt=""
    )


def chat(text: str, **fields: Any) -> ChatJobRequest:
    return ChatJobRequest.model_validate(
        {"messages": [{"role": "user", "content": text}], "session_id": "s1", **fields}
    )


class Book:
    def __init__(self, client: redis.Redis, *, budget: int = 1000, recent: int = 2) -> None:
        self.memory = Memory()
        self.scheduled: list[SummarizeJobRequest] = []
        self.book = SessionBook(
            self.memory,  # type: ignore[arg-type]
            JobStore(client),
            count_tokens=lambda text: len(text.split()),
            summary_budget=budget,
            recent_turns=recent,
            schedule=lambda tenant, request: self.scheduled.append(request),
        )

    def turn(self, job_id: str, said: str, reply: str, committed: bool = True) -> bool:
        return self.book.commit("acme", job_id, chat(said), result(reply), lambda: committed)


def test_a_committed_chat_turn_becomes_the_sessions_next_two_turns(
    redis_client: redis.Redis,
) -> None:
    b = Book(redis_client)
    assert b.turn("j1", "hello there", "hi")
    assert b.turn("j2", "how are you", "fine")
    context = b.book.context("acme", "s1")
    assert [(t.role, t.content) for t in context.turns] == [
        (ChatRole.user, "hello there"),
        (ChatRole.assistant, "hi"),
        (ChatRole.user, "how are you"),
        (ChatRole.assistant, "fine"),
    ]
    assert context.summary is None


def test_a_turn_whose_job_was_cancelled_before_its_commit_is_undone(
    redis_client: redis.Redis,
) -> None:
    b = Book(redis_client)
    b.book.store.create("acme", "j1", chat("hello there"))
    b.book.store.cancel("acme", "j1")
    assert not b.turn("j1", "hello there", "hi", committed=False)
    assert b.memory.stored == {}
    assert b.scheduled == []


def test_a_long_session_schedules_one_summary_of_all_but_the_recent_turns(
    redis_client: redis.Redis,
) -> None:
    b = Book(redis_client, budget=6, recent=2)
    b.turn("j1", "one two three", "four five")
    assert b.scheduled == []  # 5 tokens: within the budget
    b.turn("j2", "six seven", "eight")
    assert len(b.scheduled) == 1
    due = b.scheduled[0]
    assert due.text == "User: one two three\nAssistant: four five"
    assert due.session_summary == SessionSummaryTarget(session_id="s1", through_turn=2)
    b.turn("j3", "nine ten", "eleven")
    assert len(b.scheduled) == 1  # the first summary's claim still holds


def test_a_finished_summary_is_kept_and_hides_the_turns_it_covers(
    redis_client: redis.Redis,
) -> None:
    b = Book(redis_client)
    b.turn("j1", "one two three", "four five")
    b.turn("j2", "six seven", "eight")
    target = SessionSummaryTarget(session_id="s1", through_turn=2)
    summarize = SummarizeJobRequest(text="x", session_summary=target)
    assert b.book.commit("acme", "sum", summarize, result("they counted"), lambda: True)
    kept = b.memory.stored[summary_id("s1")]
    assert kept.namespace == session_namespace("s1") and kept.kind == MemoryKind.summary
    context = b.book.context("acme", "s1")
    assert context.summary == "they counted"
    assert [t.content for t in context.turns] == ["six seven", "eight"]


def test_the_users_statements_are_remembered_as_facts(redis_client: redis.Redis) -> None:
    b = Book(redis_client)
    request = chat("I live in Lisbon. What is the weather?", user_id="u1", remember_facts=True)
    assert b.book.commit("acme", "j1", request, result("sunny"), lambda: True)
    facts = [m for m in b.memory.stored.values() if m.kind == MemoryKind.fact]
    assert [(m.namespace, m.text) for m in facts] == [
        (user_namespace("u1"), "The user said: I live in Lisbon.")
    ]


def test_failed_bookkeeping_never_fails_the_committed_job(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    b = Book(redis_client, budget=0, recent=0)

    def down(tenant: str, request: SummarizeJobRequest) -> None:
        raise MemoryUnavailable("memory service unreachable")

    b.book.schedule = down
    assert b.turn("j1", "hello there", "hi")
    assert message_id("j1", ChatRole.assistant) in b.memory.stored
    assert "session bookkeeping after job failed" in caplog.text
