"""Memory endpoints, forwarded to the memory service with the caller's tenant."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request, Response

from gateway.api.deps import Tenant
from memq.clients import TENANT_HEADER
from memq.errors import MemoryUnavailable

router = APIRouter(tags=["memories"])

_FORWARD_HEADERS = ("content-type", "accept")


async def _forward(request: Request, tenant: str, path: str) -> Response:
    client: httpx.AsyncClient = request.app.state.memory_http
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD_HEADERS}
    headers[TENANT_HEADER] = tenant  # the tenant comes from authentication, never the caller
    try:
        upstream = await client.request(
            request.method,
            path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
    except httpx.TransportError as exc:
        raise MemoryUnavailable(f"memory service unreachable: {exc}") from exc
    keep = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type",)}
    return Response(upstream.content, status_code=upstream.status_code, headers=keep)


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/v1/memories", methods=_METHODS)
async def memories_root(request: Request, tenant: Tenant) -> Response:
    """Add or list memories (see the memory service's API)."""
    return await _forward(request, tenant, "/v1/memories")


@router.api_route("/v1/memories/{path:path}", methods=_METHODS)
async def memories(request: Request, path: str, tenant: Tenant) -> Response:
    """Every `/v1/memories/...` operation of the memory service."""
    return await _forward(request, tenant, f"/v1/memories/{path}")


@router.api_route("/v1/namespaces/{path:path}", methods=_METHODS)
async def namespaces(request: Request, path: str, tenant: Tenant) -> Response:
    """Namespace operations (forget, export, import) of the memory service."""
    return await _forward(request, tenant, f"/v1/namespaces/{path}")
