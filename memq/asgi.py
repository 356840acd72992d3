"""Pure-ASGI middleware shared by the memq HTTP services.

`BodySizeLimit` refuses request bodies over a limit before the app buffers them: at once
when `Content-Length` declares too many bytes (the body is never read), and, for a body
without a length (chunked transfer), as soon as the bytes streamed so far pass the limit.
The answer is a 413 with memq's `ErrorResponse` body, so clients parse it like any other
error. Starlette's own request parsing has no size limit, hence this layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memq.contracts import ErrorResponse

REQUEST_TOO_LARGE = "request_too_large"


class BodySizeLimit:
    """Wraps `app`; every HTTP request body may hold at most `max_bytes` bytes, except paths
    that fully match one of `route_limits`' regexes (the first match gives the limit)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, route_limits: Sequence[tuple[str, int]] = ()
    ) -> None:
        if max_bytes < 0 or any(limit < 0 for _, limit in route_limits):
            raise ValueError("body size limits must be >= 0 bytes")
        self.app = app
        self.max_bytes = max_bytes
        self.route_limits = [(re.compile(pattern), limit) for pattern, limit in route_limits]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.route_limits:
            if pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await send_too_large(send, limit, scope)
            return

        received = 0
        response_started = False
        answered = False  # this layer sent the 413; whatever the app sends after is dropped

        async def limited_receive() -> Message:
            nonlocal received, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not response_started:
                        await send_too_large(send, limit, scope)
                        answered = True
                    # The app sees the client go away and stops reading.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if answered:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects it; counting still applies
    return None


async def send_too_large(send: Send, limit: int, scope: Scope) -> None:
    message = (
        f"the request body is larger than {limit:,} bytes, the limit for "
        f"{scope.get('method', 'this')} {scope['path']}; send smaller requests (split the "
        "batch, the document or the import file)"
    )
    payload = ErrorResponse(error=REQUEST_TOO_LARGE, message=message).model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
