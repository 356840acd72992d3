"""memq.memory_client: the one mapping of memory-service failures, the same for the worker's
blocking client and the gateway's async one, and the headers every request carries; the
gateway's `forward` relays any answer and maps only an unreachable service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from memq.errors import MemoryRequestRejected, MemoryUnavailable
from memq.logs import bind_job_id
from memq.memory_client import TENANT_HEADER, AsyncMemoryClient, MemoryClient
from tests.utils.scripted_gateway import memory_json as _memory

Handler = Callable[[httpx.Request], httpx.Response]


def _sync(handler: Handler) -> MemoryClient:
    return MemoryClient("http://memory", "secret", transport=httpx.MockTransport(handler))


def _async(handler: Handler) -> AsyncMemoryClient:
    return AsyncMemoryClient("http://memory", "secret", transport=httpx.MockTransport(handler))


def _answer(status: int, body: Any = None) -> Handler:
    return lambda request: httpx.Response(status, json=body if body is not None else {})


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _run_async(handler: Handler, method: str, path: str) -> Any:
    async def go() -> Any:
        client = _async(handler)
        try:
            return await client.request("acme", method, path)
        finally:
            await client.aclose()

    return asyncio.run(go())


# ------------------------------------------------------------------ the mapping, both clients
def test_a_missing_memory_is_none_for_both_clients() -> None:
    assert _sync(_answer(404)).get("acme", "m1") is None
    assert _run_async(_answer(404), "GET", "/v1/memories/m1") is None


def test_a_found_memory_is_parsed() -> None:
    found = _sync(_answer(200, _memory("m1"))).get("acme", "m1")
    assert found is not None and found.id == "m1"
    assert _run_async(_answer(200, _memory("m1")), "GET", "/v1/memories/m1")["id"] == "m1"


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_memory_unavailable_for_both_clients(status: int) -> None:
    with pytest.raises(MemoryUnavailable, match=f"memory service {status}"):
        _sync(_answer(status)).add("acme", {"namespace": "user:1", "text": "x"})
    with pytest.raises(MemoryUnavailable, match=f"memory service {status}"):
        _run_async(_answer(status), "GET", "/v1/memories")


def test_a_refused_request_is_rejected_not_unavailable() -> None:
    refusal = _answer(422, {"error": "invalid_input", "message": "text is empty"})
    with pytest.raises(MemoryRequestRejected, match=r"memory service 422: .*text is empty"):
        _sync(refusal).add("acme", {"namespace": "user:1", "text": ""})
    with pytest.raises(MemoryRequestRejected, match="memory service 422"):
        _run_async(refusal, "DELETE", "/v1/namespaces/x")


def test_an_unreachable_service_says_so_for_both_clients() -> None:
    with pytest.raises(MemoryUnavailable, match="the memory service is unreachable"):
        _sync(_unreachable).add("acme", {"namespace": "user:1", "text": "x"})
    with pytest.raises(MemoryUnavailable, match="the memory service is unreachable"):
        _run_async(_unreachable, "GET", "/v1/memories")


def test_deleting_a_missing_memory_is_false() -> None:
    assert _sync(_answer(404)).delete("acme", "m1") is False
    assert _sync(_answer(200, {"id": "m1", "deleted": True})).delete("acme", "m1") is True


# ------------------------------------------------------------------ what every request carries
def test_requests_carry_the_token_the_tenant_and_the_job_being_run() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404)

    client = _sync(record)
    client.get("acme", "m1")
    with bind_job_id("job-1"):
        client.get("beta", "m1")
    assert [r.headers[TENANT_HEADER] for r in seen] == ["acme", "beta"]
    assert [r.headers.get("X-Memq-Job-Id") for r in seen] == [None, "job-1"]
    assert {r.headers["Authorization"] for r in seen} == {"Bearer secret"}

    _run_async(record, "GET", "/v1/memories/m2")
    assert seen[-1].headers[TENANT_HEADER] == "acme"
    assert seen[-1].headers["Authorization"] == "Bearer secret"


# ------------------------------------------------------------------ forwarding (the gateway)
def test_forward_relays_any_answer_and_leaves_out_empty_parameters() -> None:
    seen: list[httpx.Request] = []

    def failing(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, content=b"boom", headers={"content-type": "text/plain"})

    async def go() -> httpx.Response:
        client = _async(failing)
        try:
            return await client.forward(
                "acme",
                "POST",
                "/v1/memories/search",
                body={"namespace": "user:1", "query": "q"},
                params={"limit": 5, "cursor": None},
            )
        finally:
            await client.aclose()

    upstream = asyncio.run(go())
    assert (upstream.status_code, upstream.content) == (500, b"boom")
    [request] = seen
    assert str(request.url) == "http://memory/v1/memories/search?limit=5"
    assert json.loads(request.content) == {"namespace": "user:1", "query": "q"}
    assert request.headers[TENANT_HEADER] == "acme"


def test_forward_maps_an_unreachable_service() -> None:
    async def go() -> None:
        client = _async(_unreachable)
        try:
            await client.forward("acme", "GET", "/v1/memories")
        finally:
            await client.aclose()

    with pytest.raises(MemoryUnavailable, match="the memory service is unreachable"):
        asyncio.run(go())
