"""The asyncio client behaves like the blocking one and offers the same calls."""

from __future__ import annotations

import asyncio
import inspect

import httpx

import memq
from memq.contracts import JobPublic, JobStatus
from memq.sdk import AsyncClient, Client
from tests.utils.scripted_gateway import (
    error_answer,
    job_json,
    memory_json,
    scripted_async_client,
    stream_answer,
)


def test_async_client_streams_and_raises_like_the_blocking_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/gone":
            return error_answer(410, "job_expired", "kept 7 days")
        return stream_answer(
            ("1-0", "token", {"tokens": 1, "offset": 0, "delta": " Paris"}),
            ("2-0", "result", job_json(text=" Paris.")),
        )

    async def scenario() -> tuple[list[str], JobPublic, str]:
        async with scripted_async_client(handler) as client:
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
        None: {"items": [memory_json("m1")], "next_cursor": "n"},
        "n": {"items": [memory_json("m2")], "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/memories":
            return httpx.Response(200, json=pages[request.url.params.get("cursor")])
        return stream_answer(("1-0", "result", job_json()))

    async def scenario() -> tuple[JobPublic, list[str]]:
        async with scripted_async_client(handler) as client:
            job = await client.wait("j1")
            ids = [m.id async for m in client.iter_memories("user:42", page_size=1)]
            return job, ids

    job, ids = asyncio.run(scenario())
    assert job.status == JobStatus.succeeded and ids == ["m1", "m2"]


def test_both_clients_offer_the_same_calls_with_the_same_parameters() -> None:
    def calls(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name == "__init__"
        }

    assert calls(Client) == calls(AsyncClient)
    assert memq.Client is Client and memq.AsyncClient is AsyncClient
