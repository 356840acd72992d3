from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from memory_service.api.deps import Service

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(service: Service) -> dict[str, Any]:
    """Liveness plus what this instance serves (no auth)."""
    return {
        "status": "ok",
        "backend": service.store.backend,
        "embedding_model": service.embedder.model_name,
        "dim": service.embedder.dim,
        "embedding_backend": service.embedder.backend,
    }
