"""Memory endpoints: validated here with the shared contracts, then forwarded to the
memory service with the caller's tenant (from authentication, never from the request) by
`gateway.services.memories.MemoryProxy`; its answers are relayed as they are.

Each route is explicit, so only the memory service's public operations are reachable
through the gateway (no path is forwarded as given) and they appear in the gateway's
OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from gateway.api.deps import Memories, Tenant
from gateway.services.memories import NDJSON
from memq.contracts import (
    DeleteResponse,
    DocumentIngest,
    DocumentIngestResponse,
    ErrorResponse,
    ImportResponse,
    MemoryBatchCreate,
    MemoryBatchResponse,
    MemoryCreate,
    MemoryHistoryResponse,
    MemoryId,
    MemoryKind,
    MemoryListResponse,
    MemoryPublic,
    MemorySearchRequest,
    MemorySearchResponse,
    MemoryUpdate,
    Namespace,
    NamespaceForgotten,
)

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)
}
router = APIRouter(tags=["memories"], responses=_errors)


def _relay(upstream: httpx.Response) -> Response:
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
    )


def _json(model: Any) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


@router.post(
    "/v1/memories",
    status_code=201,
    response_model=MemoryPublic,
    responses={200: {"model": MemoryPublic, "description": "Duplicate of an existing memory."}},
)
async def add_memory(body: MemoryCreate, tenant: Tenant, memories: Memories) -> Response:
    """Store one memory (201), or return the existing duplicate (200, `deduplicated: true`)."""
    return _relay(await memories.forward(tenant, "POST", "/v1/memories", body=_json(body)))


@router.post("/v1/memories/batch", response_model=MemoryBatchResponse)
async def add_memories(body: MemoryBatchCreate, tenant: Tenant, memories: Memories) -> Response:
    """Store up to 1,000 memories embedded as one batch; results keep the input order."""
    return _relay(await memories.forward(tenant, "POST", "/v1/memories/batch", body=_json(body)))


@router.post("/v1/memories/documents", status_code=201, response_model=DocumentIngestResponse)
async def ingest_document(body: DocumentIngest, tenant: Tenant, memories: Memories) -> Response:
    """Split a document into overlapping chunks stored as `document_chunk` memories."""
    return _relay(
        await memories.forward(tenant, "POST", "/v1/memories/documents", body=_json(body))
    )


@router.post("/v1/memories/search", response_model=MemorySearchResponse)
async def search_memories(
    body: MemorySearchRequest, tenant: Tenant, memories: Memories
) -> Response:
    """Dense, keyword (BM25) or hybrid search in one namespace, with filters."""
    return _relay(await memories.forward(tenant, "POST", "/v1/memories/search", body=_json(body)))


@router.get("/v1/memories", response_model=MemoryListResponse)
async def list_memories(
    tenant: Tenant,
    memories: Memories,
    namespace: Annotated[Namespace, Query()],
    kind: Annotated[list[MemoryKind] | None, Query(description="Only these kinds.")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    metadata: Annotated[
        str | None, Query(max_length=8192, description="A JSON `MemoryFilter`.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """Page through a namespace (stable order); pass `next_cursor` back as `cursor`."""
    params = {
        "namespace": namespace,
        "kind": [k.value for k in kind] if kind else None,
        "created_after": created_after.isoformat() if created_after else None,
        "created_before": created_before.isoformat() if created_before else None,
        "metadata": metadata,
        "limit": limit,
        "cursor": cursor,
    }
    return _relay(await memories.forward(tenant, "GET", "/v1/memories", params=params))


@router.get("/v1/memories/{memory_id}", response_model=MemoryPublic)
async def get_memory(memory_id: MemoryId, tenant: Tenant, memories: Memories) -> Response:
    """One memory by id."""
    return _relay(await memories.forward(tenant, "GET", f"/v1/memories/{memory_id}"))


@router.get("/v1/memories/{memory_id}/history", response_model=MemoryHistoryResponse)
async def memory_history(memory_id: MemoryId, tenant: Tenant, memories: Memories) -> Response:
    """Every version of a memory, oldest first."""
    return _relay(await memories.forward(tenant, "GET", f"/v1/memories/{memory_id}/history"))


@router.post("/v1/memories/{memory_id}/restore", response_model=MemoryPublic)
async def restore_memory(memory_id: MemoryId, tenant: Tenant, memories: Memories) -> Response:
    """Make a superseded memory current again (409 when it is current)."""
    return _relay(await memories.forward(tenant, "POST", f"/v1/memories/{memory_id}/restore"))


@router.patch("/v1/memories/{memory_id}", response_model=MemoryPublic)
async def update_memory(
    memory_id: MemoryId, body: MemoryUpdate, tenant: Tenant, memories: Memories
) -> Response:
    """Write a new version; the previous one stays readable in the history."""
    return _relay(
        await memories.forward(tenant, "PATCH", f"/v1/memories/{memory_id}", body=_json(body))
    )


@router.delete("/v1/memories/{memory_id}", response_model=DeleteResponse)
async def delete_memory(memory_id: MemoryId, tenant: Tenant, memories: Memories) -> Response:
    """Delete one memory and its history."""
    return _relay(await memories.forward(tenant, "DELETE", f"/v1/memories/{memory_id}"))


@router.delete("/v1/namespaces/{namespace}", response_model=NamespaceForgotten)
async def forget_namespace(namespace: Namespace, tenant: Tenant, memories: Memories) -> Response:
    """Delete every memory of a namespace, cancel the tenant's queued jobs that would read
    it, and mark the adapters trained on it stale; says how many of each."""
    return _relay(await memories.forget_namespace(tenant, namespace))


@router.get(
    "/v1/namespaces/{namespace}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "One MemoryRecord per line."}},
)
async def export_namespace(namespace: Namespace, tenant: Tenant, memories: Memories) -> Response:
    """Every live memory of a namespace with its history, as JSON lines."""
    upstream = await memories.export_namespace(tenant, namespace)
    if upstream.status_code != 200:
        return _relay(upstream)

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return StreamingResponse(lines(), media_type=NDJSON)


@router.post(
    "/v1/namespaces/{namespace}/import",
    response_model=ImportResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {NDJSON: {"schema": {"type": "string"}}},
            "description": "Lines produced by the export endpoint.",
        }
    },
)
async def import_namespace(
    namespace: Namespace, request: Request, tenant: Tenant, memories: Memories
) -> Response:
    """Restore an export exactly (ids, versions, history, timestamps) into this tenant."""
    return _relay(await memories.import_namespace(tenant, namespace, request.stream()))
