"""The gateway's memory routes: each is forwarded to the memory service with the caller's
tenant through `AsyncMemoryClient` (an unreachable service is a 503 `memory_unavailable`),
and the answer is relayed as the memory service gave it. Forgetting a namespace also cancels
the tenant's queued jobs that would read it and marks the adapters trained on it stale."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from gateway.services.jobs import JobService
from memq.contracts import NamespaceForgotten
from memq.memory_client import AsyncMemoryClient

NDJSON = "application/x-ndjson"


class MemoryProxy:
    def __init__(self, memory: AsyncMemoryClient, jobs: JobService) -> None:
        self.memory = memory
        self.jobs = jobs

    async def forward(
        self,
        tenant: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        return await self.memory.forward(tenant, method, path, body=body, params=params)

    async def forget_namespace(self, tenant: str, namespace: str) -> httpx.Response:
        upstream = await self.memory.forward(tenant, "DELETE", f"/v1/namespaces/{namespace}")
        if upstream.status_code != 200:
            return upstream
        forgotten = NamespaceForgotten.model_validate_json(upstream.content)
        forgotten.cancelled_jobs = await run_in_threadpool(
            self.jobs.cancel_queued_reading, tenant, namespace
        )
        forgotten.stale_adapters = await run_in_threadpool(
            self.jobs.adapters.forget_namespace, tenant, namespace
        )
        return httpx.Response(
            200,
            content=forgotten.model_dump_json().encode(),
            headers={"content-type": "application/json"},
        )

    async def export_namespace(self, tenant: str, namespace: str) -> httpx.Response:
        """The export, streamed: the caller closes a 200 answer once relayed (any other is
        already read and closed)."""
        upstream = await self.memory.forward(
            tenant, "GET", f"/v1/namespaces/{namespace}/export", stream=True
        )
        if upstream.status_code != 200:
            await upstream.aread()
            await upstream.aclose()
        return upstream

    async def import_namespace(
        self, tenant: str, namespace: str, lines: AsyncIterable[bytes]
    ) -> httpx.Response:
        return await self.memory.forward(
            tenant,
            "POST",
            f"/v1/namespaces/{namespace}/import",
            content=lines,
            content_type=NDJSON,
        )
