"""Pure-ASGI middleware that binds the job a request is about to every log line emitted
while it is handled (`memq.logs.bind_job_id`): the gateway reads the id from the path
(`/v1/jobs/{id}...`), the memory service from the `X-Memq-Job-Id` header that workers send
(`memq.memory_client.MemoryClient`). With `MEMQ_LOG_FORMAT=json` one job's lines can then be
followed across gateway, worker and memory service by its id."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memq.logs import bind_job_id

JOB_ID_HEADER = "X-Memq-Job-Id"
_JOB_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")

log = logging.getLogger("memq.requests")


class BindJobId:
    """Wraps `app`. `path`: a regex whose first group is the job id; `header`: a request
    header carrying it. Ids that are not plain job ids are ignored (they end up in logs).
    `log_requests`: one line per request about a job (method, path, status, duration)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str | None = None,
        header: str | None = None,
        log_requests: bool = False,
    ) -> None:
        self.app = app
        self.path = re.compile(path) if path else None
        self.header = header.lower().encode() if header else None
        self.log_requests = log_requests

    def job_id(self, scope: Scope) -> str | None:
        found: str | None = None
        if self.path is not None:
            match = self.path.match(scope.get("path", ""))
            found = match.group(1) if match else None
        if found is None and self.header is not None:
            for name, value in scope.get("headers", ()):
                if name == self.header:
                    found = value.decode("latin-1")
                    break
        return found if found is not None and _JOB_ID.fullmatch(found) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        job_id = self.job_id(scope) if scope["type"] == "http" else None
        if job_id is None:
            await self.app(scope, receive, send)
            return
        status = 0
        started = time.perf_counter()

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with bind_job_id(job_id):
            try:
                await self.app(scope, receive, remember_status)
            finally:
                if self.log_requests:
                    log.info(
                        "%s %s -> %s (%.0f ms)",
                        scope["method"],
                        scope["path"],
                        status or "no answer",
                        (time.perf_counter() - started) * 1000,
                    )
