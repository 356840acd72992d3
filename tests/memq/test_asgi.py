"""memq.asgi.BodySizeLimit: 413 before the app reads an oversized body, declared or streamed;
at the ASGI level (counting what was read) and through a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from memq.asgi import BodySizeLimit
from memq.contracts import ErrorResponse
from memq.ops.process import free_port


class EchoApp:
    """Reads the whole body like a framework would, then answers its length."""

    def __init__(self) -> None:
        self.calls = 0
        self.saw_disconnect = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.saw_disconnect = True
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = json.dumps({"received": size}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def http_scope(path: str = "/v1/memories", content_length: int | None = None) -> Scope:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


class Stream:
    """A client that keeps sending `chunk`-byte pieces, counting how many were taken."""

    def __init__(self, chunk: int, total: int | None = None) -> None:
        self.chunk = chunk
        self.total = total
        self.taken = 0

    async def __call__(self) -> Message:
        self.taken += 1
        more = self.total is None or self.taken * self.chunk < self.total
        return {"type": "http.request", "body": b"x" * self.chunk, "more_body": more}


def run(app: Any, scope: Scope, receive: Receive) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def status_and_body(sent: list[Message]) -> tuple[int, dict[str, Any]]:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    parsed: dict[str, Any] = json.loads(body)
    return starts[0]["status"], parsed


def test_declared_length_over_the_limit_is_413_before_any_byte_is_read() -> None:
    inner = EchoApp()
    stream = Stream(chunk=1024)
    sent = run(BodySizeLimit(inner, max_bytes=1000), http_scope(content_length=1001), stream)
    status, body = status_and_body(sent)
    assert status == 413
    error = ErrorResponse.model_validate(body)
    assert error.error == "request_too_large"
    assert "1,000 bytes" in error.message and "POST /v1/memories" in error.message
    assert inner.calls == 0 and stream.taken == 0


def test_declared_length_at_the_limit_reaches_the_app() -> None:
    inner = EchoApp()
    sent = run(
        BodySizeLimit(inner, max_bytes=1000),
        http_scope(content_length=1000),
        Stream(chunk=500, total=1000),
    )
    assert status_and_body(sent) == (200, {"received": 1000})


def test_streamed_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    inner = EchoApp()
    endless = Stream(chunk=1024)  # chunked transfer, no Content-Length, never ends
    sent = run(BodySizeLimit(inner, max_bytes=4096), http_scope(), endless)
    status, body = status_and_body(sent)  # the app's own answer was dropped
    assert status == 413 and body["error"] == "request_too_large"
    assert endless.taken == 5  # 4 chunks fill the limit; the 5th passes it
    assert inner.saw_disconnect


def test_streamed_body_at_the_limit_reaches_the_app() -> None:
    sent = run(BodySizeLimit(EchoApp(), max_bytes=4096), http_scope(), Stream(1024, total=4096))
    assert status_and_body(sent) == (200, {"received": 4096})


def test_route_limits_apply_to_fully_matching_paths_first_match_first() -> None:
    limiter = BodySizeLimit(
        EchoApp(),
        max_bytes=10,
        route_limits=[(r"/v1/namespaces/[^/]+/import", 100), (r"/v1/namespaces/.*", 50)],
    )
    assert limiter.limit_for("/v1/namespaces/user:1/import") == 100
    assert limiter.limit_for("/v1/namespaces/user:1/import/x") == 50
    assert limiter.limit_for("/v1/namespaces/user:1") == 50
    assert limiter.limit_for("/v1/memories") == 10
    import_path = http_scope("/v1/namespaces/a/import")
    assert status_and_body(run(limiter, import_path, Stream(100, total=100)))[0] == 200
    assert status_and_body(run(limiter, http_scope(), Stream(11, total=11)))[0] == 413


def test_response_already_started_is_not_replaced_and_the_app_sees_a_disconnect() -> None:
    saw: list[str] = []

    async def streams_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (message := await receive())["type"] == "http.request":
            pass
        saw.append(message["type"])
        await send({"type": "http.response.body", "body": b"done"})

    sent = run(BodySizeLimit(streams_first, max_bytes=10), http_scope(), Stream(8))
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert saw == ["http.disconnect"]


def test_lifespan_and_websocket_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    run(BodySizeLimit(app, max_bytes=0), {"type": "lifespan"}, Stream(1))
    assert seen == ["lifespan"]


def test_malformed_content_length_falls_back_to_counting() -> None:
    scope = http_scope()
    scope["headers"] = [(b"content-length", b"lots")]
    sent = run(BodySizeLimit(EchoApp(), max_bytes=10), scope, Stream(6))
    assert status_and_body(sent)[0] == 413


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        BodySizeLimit(EchoApp(), max_bytes=-1)
    with pytest.raises(ValueError, match=">= 0"):
        BodySizeLimit(EchoApp(), max_bytes=1, route_limits=[("/x", -1)])


# ------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        BodySizeLimit(EchoApp(), max_bytes=64 * 1024), port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client() as client:
            for _ in range(200):
                try:
                    client.post(url, content=b"")
                    break
                except httpx.TransportError:
                    threading.Event().wait(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_real_server_answers_413_to_a_large_declared_body(server_url: str) -> None:
    r = httpx.post(server_url, content=b"x" * (8 * 1024 * 1024), timeout=30)
    assert r.status_code == 413
    assert r.json()["error"] == "request_too_large"


def test_real_server_answers_413_to_a_chunked_body_without_reading_it_all(server_url: str) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1024):  # 64 MiB if the server read everything
            sent += 64 * 1024
            yield b"x" * (64 * 1024)

    r = httpx.post(server_url, content=chunks(), timeout=30)
    assert r.status_code == 413
    assert r.json()["error"] == "request_too_large"
    assert r.headers["connection"] == "close"
    assert sent < 1024 * 64 * 1024  # the server closed the connection: the rest was never sent


def test_real_server_passes_a_body_under_the_limit(server_url: str) -> None:
    r = httpx.post(server_url, content=b"x" * 1000, timeout=30)
    assert r.status_code == 200 and r.json() == {"received": 1000}
