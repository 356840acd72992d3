from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> dict[str, Any]:
    """Liveness plus what the gateway can see: Redis and the model workers serve."""
    store = request.app.state.jobs.store
    store.r.ping()
    info = store.model_info()
    return {
        "status": "ok",
        "model": info.name if info else None,
        "context_window": info.context_window if info else None,
    }
