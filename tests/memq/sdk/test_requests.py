"""What the SDK sends: the key, the idempotency key and only the fields given; a job that breaks
the contract is refused before any request; settings fill in the URL and key; listings follow
their cursors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from memq.contracts import JobStatus
from memq.sdk import Client
from tests.utils.scripted_gateway import job_json, scripted_client, summary_json


def test_requests_carry_the_key_the_idempotency_key_and_only_the_fields_given() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"id": "j1", "status": "queued", "status_url": "u"})

    with scripted_client(handler) as client:
        accepted = client.generate(
            "Where does Alice live?",
            namespace="user:42",
            max_new_tokens=8,
            priority="high",
            metadata={"run": "r1"},
            idempotency_key="order-17",
        )
    assert accepted.id == "j1" and accepted.status == JobStatus.queued
    request = seen[0]
    assert request.headers["Authorization"] == "Bearer mq_test_key"
    assert request.headers["Idempotency-Key"] == "order-17"
    assert request.headers["User-Agent"].startswith("memq-sdk/")
    assert json.loads(request.content) == {
        "type": "generate",
        "prompt": "Where does Alice live?",
        "params": {"max_new_tokens": 8},
        "memory": {"namespace": "user:42"},
        "priority": "high",
        "metadata": {"run": "r1"},
    }


def test_a_job_that_breaks_the_contract_is_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing may be sent: {request.url}")

    with scripted_client(handler) as client, pytest.raises(ValidationError, match="max_new_tokens"):
        client.generate("hello", max_new_tokens=0)
    with scripted_client(handler) as client, pytest.raises(ValidationError, match="last message"):
        client.chat([{"role": "assistant", "content": "hi"}], session_id="s1")


def test_settings_give_the_url_and_key_when_arguments_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMQ_GATEWAY_URL", "http://from-env:9000")
    monkeypatch.setenv("MEMQ_API_KEY", "mq_env_key")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=job_json())

    with Client(transport=httpx.MockTransport(handler)) as client:
        client.get("j1")
    assert str(seen[0].url) == "http://from-env:9000/v1/jobs/j1"
    assert seen[0].headers["Authorization"] == "Bearer mq_env_key"
    with Client("http://given", "mq_given", transport=httpx.MockTransport(handler)) as client:
        client.get("j1")
    assert seen[1].url.host == "given" and seen[1].headers["Authorization"] == "Bearer mq_given"


def test_iter_jobs_follows_the_cursor_to_the_last_page() -> None:
    pages = {
        None: {"items": [summary_json("a"), summary_json("b")], "next_cursor": "c1"},
        "c1": {"items": [summary_json("c")], "next_cursor": None},
    }
    params: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params.append(dict(request.url.params.multi_items()))
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with scripted_client(handler) as client:
        ids = [j.id for j in client.iter_jobs(status=["succeeded"], page_size=2)]
    assert ids == ["a", "b", "c"]
    assert params == [
        {"status": "succeeded", "limit": "2"},
        {"status": "succeeded", "limit": "2", "cursor": "c1"},
    ]
