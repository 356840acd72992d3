"""The SDK turns every error answer into a typed exception that carries the server's message
(scripted gateways, httpx.MockTransport)."""

from __future__ import annotations

import httpx
import pytest

import memq
from memq.ops.process import free_port
from memq.sdk import APIConnectionError, Client
from memq.sdk.errors import (
    APIError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableError,
)
from tests.utils.scripted_gateway import error_answer, scripted_client


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
        scripted_client(lambda r: error_answer(status, code, message)) as client,
        pytest.raises(cls) as caught,
    ):
        client.get("j1")
    assert type(caught.value) is cls
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert caught.value.server_message == message
    assert caught.value.body == {"error": code, "message": message}


def test_rate_limited_carries_retry_after() -> None:
    answer = error_answer(429, "rate_limited", "600/minute per key", **{"Retry-After": "7"})
    with scripted_client(lambda r: answer) as client, pytest.raises(RateLimitError) as caught:
        client.submit({"type": "generate", "prompt": "hi"})
    assert caught.value.retry_after == 7.0
    assert "600/minute per key" in str(caught.value)


def test_openai_shaped_and_non_json_errors_are_read_too() -> None:
    openai_shape = {"error": {"message": "no such model", "type": "invalid", "code": "bad_model"}}
    with (
        scripted_client(lambda r: httpx.Response(404, json=openai_shape)) as client,
        pytest.raises(NotFoundError) as caught,
    ):
        client.get("j1")
    assert (caught.value.code, caught.value.server_message) == ("bad_model", "no such model")
    with (
        scripted_client(lambda r: httpx.Response(502, text="Bad Gateway from the proxy")) as client,
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
