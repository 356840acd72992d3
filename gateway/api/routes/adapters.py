"""Adapter endpoints: the tenant's LoRA adapters (made by `consolidate` jobs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from gateway.api.deps import Tenant
from gateway.services.adapters import AdapterService
from memq.contracts import (
    ADAPTER_NAME_PATTERN,
    MAX_ADAPTER_VERSION,
    AdapterDeleted,
    AdapterListResponse,
    AdapterPublic,
    ErrorResponse,
)

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 503)
}
router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=_errors)

AdapterPathName = Annotated[
    str, Path(pattern=ADAPTER_NAME_PATTERN, description="The adapter's name.")
]


def get_adapters(request: Request) -> AdapterService:
    service: AdapterService = request.app.state.jobs.adapters
    return service


Adapters = Annotated[AdapterService, Depends(get_adapters)]


@router.get("", response_model=AdapterListResponse)
def list_adapters(tenant: Tenant, adapters: Adapters) -> AdapterListResponse:
    """The tenant's adapters, each with its versions (newest first) and staleness."""
    return adapters.list(tenant)


@router.get("/{name}", response_model=AdapterPublic)
def get_adapter(name: AdapterPathName, tenant: Tenant, adapters: Adapters) -> AdapterPublic:
    """One adapter: its versions, what each learned from, its loss curve, and whether it
    is stale (its namespace was forgotten since)."""
    return adapters.get(tenant, name)


@router.delete("/{name}", response_model=AdapterDeleted)
def delete_adapter(
    name: AdapterPathName,
    tenant: Tenant,
    adapters: Adapters,
    version: Annotated[
        int | None,
        Query(ge=1, le=MAX_ADAPTER_VERSION, description="Only this version (default: all)."),
    ] = None,
) -> AdapterDeleted:
    """Delete an adapter (every version, or one) and its stored weights."""
    return adapters.delete(tenant, name, version)
