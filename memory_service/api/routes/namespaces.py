from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from memory_service.api.deps import Service, Tenant
from memory_service.core.errors import InvalidRequest
from memq.contracts import ErrorResponse, ForgetResponse, ImportResponse, Namespace

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 422, 503)
}
NDJSON = "application/x-ndjson"

router = APIRouter(prefix="/v1/namespaces", tags=["namespaces"], responses=ERRORS)


@router.delete("/{namespace}", response_model=ForgetResponse)
def forget_namespace(namespace: Namespace, tenant: Tenant, service: Service) -> ForgetResponse:
    """Delete every memory of a namespace; returns how many were deleted."""
    return ForgetResponse(namespace=namespace, deleted=service.forget(tenant, namespace))


@router.get(
    "/{namespace}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "One MemoryRecord per line."}},
)
def export_namespace(namespace: Namespace, tenant: Tenant, service: Service) -> StreamingResponse:
    """Every live memory of a namespace with its history, as JSON lines."""
    return StreamingResponse(service.export_jsonl(tenant, namespace), media_type=NDJSON)


@router.post(
    "/{namespace}/import",
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
    namespace: Namespace, request: Request, tenant: Tenant, service: Service
) -> ImportResponse:
    """Restore an export exactly (ids, versions, history, timestamps) into this tenant."""
    try:
        lines = (await request.body()).decode().splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the import body must be UTF-8 JSON lines") from exc
    imported = await run_in_threadpool(service.import_jsonl, tenant, namespace, lines)
    return ImportResponse(namespace=namespace, imported=imported)
