"""OpenAI-compatible Batch API: every line of an uploaded JSONL file becomes an ordinary
memq job at low priority; output and error files are written as lines finish.

Errors come in OpenAI's shape, so the official client's `batches.create / retrieve /
list / cancel` work unmodified."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from gateway.api.deps import QueueRoom, Tenant
from gateway.services.batches import BatchService
from memq.contracts import BatchCreate, BatchListResponse, BatchPublic

router = APIRouter(prefix="/v1/batches", tags=["batches"])

BatchId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="The batch's id.")]
_errors: dict[int | str, dict[str, Any]] = {
    code: {"description": "OpenAI-style error: {error: {message, type, param, code}}"}
    for code in (401, 404, 409, 413, 422, 429, 503)
}


def get_batches(request: Request) -> BatchService:
    service: BatchService = request.app.state.batches
    return service


Batches = Annotated[BatchService, Depends(get_batches)]


@router.post("", response_model=BatchPublic, responses=_errors, dependencies=[QueueRoom])
def create_batch(body: BatchCreate, tenant: Tenant, batches: Batches) -> BatchPublic:
    """Create a batch from an uploaded file; it is `validating` until its jobs are queued."""
    return batches.create(tenant, body)


@router.get("", response_model=BatchListResponse, responses=_errors)
def list_batches(
    tenant: Tenant,
    batches: Batches,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchListResponse:
    """The tenant's batches, newest first; pass `last_id` back as `after`."""
    return batches.list_batches(tenant, limit=limit, after=after)


@router.get("/{batch_id}", response_model=BatchPublic, responses=_errors)
def get_batch(batch_id: BatchId, tenant: Tenant, batches: Batches) -> BatchPublic:
    """A batch's status, request counts (live while it runs) and file ids."""
    return batches.get(tenant, batch_id)


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=_errors)
def cancel_batch(batch_id: BatchId, tenant: Tenant, batches: Batches) -> BatchPublic:
    """Cancel a batch: queued lines are cancelled, running ones finish, and the output file
    keeps what completed; it ends `cancelled`."""
    return batches.cancel(tenant, batch_id)
