"""The SDK against scripted gateways (httpx.MockTransport): errors become typed exceptions
with the server's message, requests carry what they should, event streams are decoded and
resumed, `wait` falls back to polling. The same calls against the real stack are in
tests/e2e/test_sdk_e2e.py."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

import memq
from memq.contracts import JobPublic, JobStatus
from memq.errors import (
    APIError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableError,
    WaitTimeout,
)
from memq.ops.process import free_port
from memq.sdk import APIConnectionError, AsyncClient, Client, ResultEvent, TokenEvent
from memq.sdk._core import SSEDecoder, TextAccumulator

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, api_key: str | None = "mq_test_key") -> Client:
    return Client("http://gw", api_key, transport=httpx.MockTransport(handler))


def _job(status: str = "succeeded", text: str = " Paris.", job_id: str = "j1") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    job: dict[str, Any] = {
        "id": job_id,
        "type": "generate",
        "status": status,
        "tenant": "default",
        "created_at": now,
        "request": {"type": "generate", "prompt": "Where does Alice live?"},
    }
    if status in ("succeeded", "cancelled"):
        job["result"] = {
            "text": text,
            "model": "tiny",
            "finish_reason": "length",
            "memories": [{"id": "m1", "score": 0.7, "text": "Alice lives in Paris.", "used": True}],
            "usage": {
                "prompt_tokens": 5,
                "context_tokens": 6,
                "input_tokens": 11,
                "completion_tokens": 2,
                "total_tokens": 13,
            },
            "timings": {"total_s": 0.1},
            "prompt": "- Alice lives in Paris.\nWhere does Alice live?",
        }
    return job


def _sse(*events: tuple[str, str, Any]) -> bytes:
    out = [": ping\r\n\r\n"]
    for event_id, kind, data in events:
        out.append(f"id: {event_id}\r\nevent: {kind}\r\ndata: {json.dumps(data)}\r\n\r\n")
    return "".join(out).encode()


def _error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message}, headers=headers)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "job_not_found", NotFoundError),
        (409, "job_finished", ConflictError),
        (422, "prompt_too_long", UnprocessableError),
        (503, "queue_full", ServiceUnavailableError),
        (418, "teapot", APIError),
    ],
)
def test_an_error_answer_raises_the_subclass_for_its_status_with_the_server_message(
    status: int, code: str, cls: type[APIError]
) -> None:
    message = "what went wrong and what to change"
    with (
        _client(lambda r: _error(status, code, message)) as client,
        pytest.raises(cls) as caught,
    ):
        client.get("j1")
    assert type(caught.value) is cls
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert caught.value.server_message == message
    assert caught.value.body == {"error": code, "message": message}


def test_rate_limited_carries_retry_after() -> None:
    answer = _error(429, "rate_limited", "600/minute per key", **{"Retry-After": "7"})
    with _client(lambda r: answer) as client, pytest.raises(RateLimitError) as caught:
        client.submit({"type": "generate", "prompt": "hi"})
    assert caught.value.retry_after == 7.0
    assert "600/minute per key" in str(caught.value)


def test_openai_shaped_and_non_json_errors_are_read_too() -> None:
    openai_shape = {"error": {"message": "no such model", "type": "invalid", "code": "bad_model"}}
    with (
        _client(lambda r: httpx.Response(404, json=openai_shape)) as client,
        pytest.raises(NotFoundError) as caught,
    ):
        client.get("j1")
    assert (caught.value.code, caught.value.server_message) == ("bad_model", "no such model")
    with (
        _client(lambda r: httpx.Response(502, text="Bad Gateway from the proxy")) as client,
        pytest.raises(APIError) as raw,
    ):
        client.get("j1")
    assert raw.value.status_code == 502 and raw.value.server_message.startswith("Bad Gateway")


def test_an_unreachable_gateway_raises_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "k") as client, pytest.raises(APIConnectionError) as caught:
        client.get("j1")
    assert url in caught.value.message and "MEMQ_GATEWAY_URL" in caught.value.message
    assert isinstance(caught.value, httpx.TransportError)  # code catching httpx still works
    assert isinstance(caught.value, memq.MemqError)


# ------------------------------------------------------------------------------ requests


def test_requests_carry_the_key_the_idempotency_key_and_only_the_fields_given() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"id": "j1", "status": "queued", "status_url": "u"})

    with _client(handler) as client:
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

    with _client(handler) as client, pytest.raises(ValidationError, match="max_new_tokens"):
        client.generate("hello", max_new_tokens=0)
    with _client(handler) as client, pytest.raises(ValidationError, match="last message"):
        client.chat([{"role": "assistant", "content": "hi"}], session_id="s1")


def test_settings_give_the_url_and_key_when_arguments_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMQ_GATEWAY_URL", "http://from-env:9000")
    monkeypatch.setenv("MEMQ_API_KEY", "mq_env_key")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_job())

    with Client(transport=httpx.MockTransport(handler)) as client:
        client.get("j1")
    assert str(seen[0].url) == "http://from-env:9000/v1/jobs/j1"
    assert seen[0].headers["Authorization"] == "Bearer mq_env_key"
    with Client("http://given", "mq_given", transport=httpx.MockTransport(handler)) as client:
        client.get("j1")
    assert seen[1].url.host == "given" and seen[1].headers["Authorization"] == "Bearer mq_given"


def test_iter_jobs_follows_the_cursor_to_the_last_page() -> None:
    pages = {
        None: {"items": [_summary("a"), _summary("b")], "next_cursor": "c1"},
        "c1": {"items": [_summary("c")], "next_cursor": None},
    }
    params: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params.append(dict(request.url.params.multi_items()))
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with _client(handler) as client:
        ids = [j.id for j in client.iter_jobs(status=["succeeded"], page_size=2)]
    assert ids == ["a", "b", "c"]
    assert params == [
        {"status": "succeeded", "limit": "2"},
        {"status": "succeeded", "limit": "2", "cursor": "c1"},
    ]


def _summary(job_id: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "type": "generate",
        "status": "succeeded",
        "created_at": datetime.now(UTC).isoformat(),
    }


# ------------------------------------------------------------------------------ events


def test_sse_decoder_joins_data_lines_and_skips_comments() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "id: 1-0", "event: token", "data: a", "data: b", "", ""]
    found = [e for line in lines if (e := decoder.feed(line)) is not None]
    assert found == [("token", "a\nb", "1-0")]


def test_text_accumulator_applies_offsets_and_holds_back_half_characters() -> None:
    acc = TextAccumulator()
    deltas = [
        acc.token(TokenEvent("1", 1, 0, " Par")),
        acc.token(TokenEvent("2", 2, 4, "is \ufffd")),  # half of a multi-byte character
        acc.token(TokenEvent("3", 3, 7, "é.")),  # the worker rewrote the half character
    ]
    assert deltas == [" Par", "is ", "é."]
    assert acc.text == " Paris é." and acc.tokens == 3
    assert acc.result(JobPublic.model_validate(_job(text=" Paris é. More"))) == " More"


def _stream_answer(*events: tuple[str, str, Any]) -> httpx.Response:
    return httpx.Response(200, content=_sse(*events), headers={"content-type": "text/event-stream"})


def test_stream_yields_the_text_as_it_grows_then_holds_the_finished_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/jobs/j1/events"
        return _stream_answer(
            ("1-0", "status", {"status": "running"}),
            ("2-0", "token", {"tokens": 1, "offset": 0, "delta": " Par"}),
            ("3-0", "token", {"tokens": 2, "offset": 4, "delta": "is."}),
            ("4-0", "result", _job(text=" Paris.")),
        )

    with _client(handler) as client:
        stream = client.stream("j1")
        assert list(stream) == [" Par", "is."]
    assert stream.job is not None and stream.job.status == JobStatus.succeeded
    assert stream.text == " Paris." and stream.tokens == 2
    assert stream.status == JobStatus.succeeded


def test_a_broken_event_stream_is_resumed_after_its_last_event() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("Last-Event-ID"))
        if len(asked) == 1:  # the connection ends before the result
            return _stream_answer(("1-0", "token", {"tokens": 1, "offset": 0, "delta": " Pa"}))
        return _stream_answer(
            ("2-0", "token", {"tokens": 2, "offset": 3, "delta": "ris."}),
            ("3-0", "result", _job(text=" Paris.")),
        )

    with _client(handler) as client:
        events = list(client.events("j1"))
    assert asked == [None, "1-0"]
    assert [e.id for e in events] == ["1-0", "2-0", "3-0"]
    assert isinstance(events[-1], ResultEvent) and events[-1].job.result is not None


def test_events_of_an_unknown_job_raise_not_found() -> None:
    answer = _error(404, "job_not_found", "no job 'nope' for this tenant")
    with _client(lambda r: answer) as client, pytest.raises(NotFoundError, match="nope"):
        list(client.events("nope"))


def test_wait_falls_back_to_polling_when_the_event_stream_is_unavailable() -> None:
    polls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return _error(503, "queue_unavailable", "Redis is down")
        polls.append(request.url.path)
        return httpx.Response(200, json=_job("running" if len(polls) < 3 else "succeeded"))

    with _client(handler) as client:
        job = client.wait("j1", timeout=60, poll=0.01)
    assert job.status == JobStatus.succeeded
    assert polls == ["/v1/jobs/j1"] * 3


def test_wait_gives_up_at_its_deadline_with_a_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_job("queued"))

    with _client(handler) as client, pytest.raises(WaitTimeout, match="still queued"):
        client.wait("j1", timeout=0.2, poll=0.01, events=False)
    assert issubclass(WaitTimeout, TimeoutError)


# ------------------------------------------------------------------------------ async


def _async_client(handler: Handler) -> AsyncClient:
    return AsyncClient("http://gw", "k", transport=httpx.MockTransport(handler))


def test_async_client_streams_and_raises_like_the_blocking_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/gone":
            return _error(410, "job_expired", "kept 7 days")
        return _stream_answer(
            ("1-0", "token", {"tokens": 1, "offset": 0, "delta": " Paris"}),
            ("2-0", "result", _job(text=" Paris.")),
        )

    async def scenario() -> tuple[list[str], JobPublic, str]:
        async with _async_client(handler) as client:
            stream = client.stream("j1")
            deltas = [d async for d in stream]
            try:
                await client.get("gone")
            except memq.GoneError as exc:
                message = exc.server_message
            assert stream.job is not None
            return deltas, stream.job, message

    deltas, job, message = asyncio.run(scenario())
    assert deltas == [" Paris", "."]
    assert job.result is not None and job.result.memories[0].used
    assert message == "kept 7 days"


def test_async_wait_and_iter_memories() -> None:
    pages = {
        None: {"items": [_memory("m1")], "next_cursor": "n"},
        "n": {"items": [_memory("m2")], "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/memories":
            return httpx.Response(200, json=pages[request.url.params.get("cursor")])
        return _stream_answer(("1-0", "result", _job()))

    async def scenario() -> tuple[JobPublic, list[str]]:
        async with _async_client(handler) as client:
            job = await client.wait("j1")
            ids = [m.id async for m in client.iter_memories("user:42", page_size=1)]
            return job, ids

    job, ids = asyncio.run(scenario())
    assert job.status == JobStatus.succeeded and ids == ["m1", "m2"]


def _memory(memory_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "id": memory_id,
        "tenant": "default",
        "namespace": "user:42",
        "kind": "fact",
        "text": f"memory {memory_id}",
        "created_at": now,
        "updated_at": now,
        "content_hash": "h",
    }


def test_both_clients_offer_the_same_calls_with_the_same_parameters() -> None:
    def calls(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name == "__init__"
        }

    assert calls(Client) == calls(AsyncClient)
    assert memq.Client is Client and memq.AsyncClient is AsyncClient
