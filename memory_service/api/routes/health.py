from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from memory_service.api.deps import Service

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    """The process answers (nothing else is checked; no auth)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "The store cannot be read or written; `reason` says why."}},
)
async def readyz(service: Service) -> JSONResponse:
    """Whether the service can take writes now: the store answers a read and a write probe.
    Also says what this instance serves (no auth)."""
    problem = await run_in_threadpool(service.store.readiness)
    body: dict[str, Any] = {
        "status": "ok" if problem is None else "unavailable",
        "backend": service.store.backend,
        "embedding_model": service.embedder.model_name,
        "dim": service.embedder.dim,
        "embedding_backend": service.embedder.backend,
    }
    if problem is not None:
        body["reason"] = problem
    return JSONResponse(body, status_code=200 if problem is None else 503)


@router.get("/healthz", include_in_schema=False)
async def healthz(service: Service) -> JSONResponse:
    """Old name of /readyz."""
    return await readyz(service)
