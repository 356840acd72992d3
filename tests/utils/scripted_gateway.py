"""What a gateway answers, for tests that script one with httpx.MockTransport (the SDK's, the
CLI's and `memq eval`'s unit tests): JSON bodies shaped like the real contracts, event
streams and error answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from memq.sdk import AsyncClient, Client

Handler = Callable[[httpx.Request], httpx.Response]


def scripted_client(handler: Handler, api_key: str | None = "mq_test_key") -> Client:
    """The SDK's blocking client on a scripted gateway."""
    return Client("http://gw", api_key, transport=httpx.MockTransport(handler))


def scripted_async_client(handler: Handler) -> AsyncClient:
    """The SDK's asyncio client on a scripted gateway."""
    return AsyncClient("http://gw", "k", transport=httpx.MockTransport(handler))


def job_json(
    status: str = "succeeded", text: str = " Paris.", job_id: str = "j1"
) -> dict[str, Any]:
    """A generate job as `GET /v1/jobs/{id}` shows it; finished ones carry a result."""
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


def summary_json(job_id: str) -> dict[str, Any]:
    """A job as `GET /v1/jobs` lists it."""
    return {
        "id": job_id,
        "type": "generate",
        "status": "succeeded",
        "created_at": datetime.now(UTC).isoformat(),
    }


def memory_json(memory_id: str) -> dict[str, Any]:
    """A stored memory as the memory routes show it."""
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


def sse(*events: tuple[str, str, Any]) -> bytes:
    """An event stream of (id, event, data) with a keep-alive comment first, CRLF framed."""
    out = [": ping\r\n\r\n"]
    for event_id, kind, data in events:
        out.append(f"id: {event_id}\r\nevent: {kind}\r\ndata: {json.dumps(data)}\r\n\r\n")
    return "".join(out).encode()


def stream_answer(*events: tuple[str, str, Any]) -> httpx.Response:
    """`GET /v1/jobs/{id}/events` answering with these events."""
    return httpx.Response(200, content=sse(*events), headers={"content-type": "text/event-stream"})


def error_answer(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    """An `ErrorResponse` with this status."""
    return httpx.Response(status, json={"error": code, "message": message}, headers=headers)
