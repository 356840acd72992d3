"""Memory is on by default wherever the scope is known (issue 20, point 1)."""

from __future__ import annotations

from memq.contracts import (
    ChatJobRequest,
    GenerateJobRequest,
    MemoryOptions,
    MemoryScope,
    ScopeReason,
)
from memq.contracts.openai import ChatCompletionRequest, CompletionRequest

HELLO = [{"role": "user", "content": "Where do I live?"}]


def test_an_openai_chat_with_user_searches_the_users_namespace() -> None:
    job = ChatCompletionRequest.model_validate(
        {"model": "memq", "messages": HELLO, "user": "tomasz"}
    ).to_job()
    assert job.memory.top_k == 5
    assert job.memory_scopes() == [MemoryScope(namespace="user:tomasz", reason=ScopeReason.user)]


def test_a_session_adds_its_namespace_before_the_users() -> None:
    job = ChatCompletionRequest.model_validate(
        {"model": "memq", "messages": HELLO, "user": "tomasz", "session_id": "s1"}
    ).to_job()
    assert [(s.namespace, s.reason) for s in job.memory_scopes()] == [
        ("session:s1", ScopeReason.session),
        ("user:tomasz", ScopeReason.user),
    ]


def test_top_k_zero_opts_out_and_no_scope_means_no_search() -> None:
    off = ChatCompletionRequest.model_validate(
        {"model": "memq", "messages": HELLO, "user": "tomasz", "memory": {"top_k": 0}}
    ).to_job()
    assert off.memory.top_k == 0
    anonymous = ChatCompletionRequest.model_validate({"model": "memq", "messages": HELLO}).to_job()
    assert anonymous.memory.top_k == 0 and anonymous.memory_scopes() == []
    # A `user` that cannot name a namespace (an e-mail address, spaces) scopes nothing.
    email = ChatCompletionRequest.model_validate(
        {"model": "memq", "messages": HELLO, "user": "a b@example.com"}
    ).to_job()
    assert email.memory.top_k == 0


def test_a_completion_with_user_searches_the_users_namespace() -> None:
    job = CompletionRequest.model_validate(
        {"model": "memq", "prompt": "Tomasz lives in", "user": "tomasz"}
    ).to_job()
    assert isinstance(job, GenerateJobRequest)
    assert job.user_id == "tomasz" and job.memory.top_k == 5
    assert job.memory_scopes() == [MemoryScope(namespace="user:tomasz", reason=ScopeReason.user)]


def test_named_namespaces_win_and_are_reported_as_explicit() -> None:
    job = ChatJobRequest(
        messages=HELLO,  # type: ignore[arg-type]
        user_id="tomasz",
        memory=MemoryOptions(namespaces=["kb", "faq"]),
    )
    assert job.memory_scopes() == [
        MemoryScope(namespace="kb", reason=ScopeReason.explicit),
        MemoryScope(namespace="faq", reason=ScopeReason.explicit),
    ]
    generate = GenerateJobRequest(prompt="x", user_id="u1", memory=MemoryOptions(namespace="kb"))
    assert [s.namespace for s in generate.memory_scopes()] == ["kb"]
