from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import ValidationError

from memory_service.api.deps import Service, Tenant
from memory_service.core.errors import InvalidRequest
from memq.contracts import (
    DeleteResponse,
    DocumentIngest,
    DocumentIngestResponse,
    ErrorResponse,
    MemoryBatchCreate,
    MemoryBatchResponse,
    MemoryCreate,
    MemoryFilter,
    MemoryHistoryResponse,
    MemoryId,
    MemoryKind,
    MemoryListResponse,
    MemoryPublic,
    MemorySearchRequest,
    MemorySearchResponse,
    MemoryUpdate,
    Namespace,
    UtcDatetime,
)

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 422, 503)
}

router = APIRouter(prefix="/v1/memories", tags=["memories"], responses=ERRORS)


@router.post(
    "",
    response_model=MemoryPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": MemoryPublic, "description": "Duplicate of an existing memory."}},
)
def add_memory(
    body: MemoryCreate, tenant: Tenant, service: Service, response: Response
) -> MemoryPublic:
    """Store one memory (201), or return the existing duplicate (200, `deduplicated: true`)."""
    memory = service.add(tenant, body)
    if memory.deduplicated:
        response.status_code = status.HTTP_200_OK
    return memory


@router.post("/batch", response_model=MemoryBatchResponse)
def add_memories(body: MemoryBatchCreate, tenant: Tenant, service: Service) -> MemoryBatchResponse:
    """Store up to 1,000 memories embedded as one batch; results keep the input order."""
    return MemoryBatchResponse(items=service.add_many(tenant, body.items))


@router.post("/documents", response_model=DocumentIngestResponse, status_code=201)
def ingest_document(
    body: DocumentIngest, tenant: Tenant, service: Service
) -> DocumentIngestResponse:
    """Split a document into overlapping chunks stored as `document_chunk` memories."""
    return service.ingest_document(tenant, body)


@router.post("/search", response_model=MemorySearchResponse)
def search_memories(
    body: MemorySearchRequest, tenant: Tenant, service: Service
) -> MemorySearchResponse:
    """Dense, keyword (BM25) or hybrid search in one namespace, with filters."""
    return MemorySearchResponse(hits=service.search(tenant, body))


@router.get("", response_model=MemoryListResponse)
def list_memories(
    tenant: Tenant,
    service: Service,
    namespace: Annotated[Namespace, Query()],
    kind: Annotated[list[MemoryKind] | None, Query(description="Only these kinds.")] = None,
    created_after: Annotated[
        UtcDatetime | None, Query(description="Created at or after (naive = UTC).")
    ] = None,
    created_before: Annotated[
        UtcDatetime | None, Query(description="Created before (naive = UTC).")
    ] = None,
    metadata: Annotated[
        str | None,
        Query(description='A JSON `MemoryFilter`, e.g. `{"all_of":[{"key":"lang","eq":"en"}]}`.'),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> MemoryListResponse:
    """Page through a namespace (stable order); pass `next_cursor` back as `cursor`."""
    return service.list_memories(
        tenant,
        namespace,
        limit=limit,
        cursor=cursor,
        kinds=kind,
        created_after=created_after,
        created_before=created_before,
        metadata=_parse_filter(metadata),
    )


@router.get("/{memory_id}", response_model=MemoryPublic)
def get_memory(memory_id: MemoryId, tenant: Tenant, service: Service) -> MemoryPublic:
    """One memory by id."""
    return service.get(tenant, memory_id)


@router.get("/{memory_id}/history", response_model=MemoryHistoryResponse)
def memory_history(memory_id: MemoryId, tenant: Tenant, service: Service) -> MemoryHistoryResponse:
    """Every version of a memory, oldest first."""
    return service.history(tenant, memory_id)


@router.post("/{memory_id}/restore", response_model=MemoryPublic)
def restore_memory(memory_id: MemoryId, tenant: Tenant, service: Service) -> MemoryPublic:
    """Make a superseded memory current again (409 when it is current)."""
    return service.restore(tenant, memory_id)


@router.put(
    "/{memory_id}",
    response_model=MemoryPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": MemoryPublic, "description": "It existed: now this version."}},
)
def put_memory(
    memory_id: MemoryId, body: MemoryCreate, tenant: Tenant, service: Service, response: Response
) -> MemoryPublic:
    """Create a memory under your own id (201), or make this its current version (200;
    putting the same content again changes nothing)."""
    memory, created = service.put(tenant, memory_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return memory


@router.patch("/{memory_id}", response_model=MemoryPublic)
def update_memory(
    memory_id: MemoryId, body: MemoryUpdate, tenant: Tenant, service: Service
) -> MemoryPublic:
    """Write a new version; the previous one stays readable in the history."""
    return service.update(tenant, memory_id, body)


@router.delete("/{memory_id}", response_model=DeleteResponse)
def delete_memory(memory_id: MemoryId, tenant: Tenant, service: Service) -> DeleteResponse:
    """Delete one memory and its history."""
    service.delete(tenant, memory_id)
    return DeleteResponse(id=memory_id)


def _parse_filter(raw: str | None) -> MemoryFilter | None:
    if raw is None:
        return None
    try:
        return MemoryFilter.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(f"`metadata` must be a JSON MemoryFilter: {problems}") from exc
