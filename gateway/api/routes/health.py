from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import Memory, Settings, Store

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict[str, str]:
    """The gateway process answers (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz", responses={503: {"description": "A dependency is down; `checks` says which."}}
)
async def readyz(store: Store, memory: Memory, settings: Settings) -> JSONResponse:
    """Whether the gateway can take jobs: Redis answers, the memory service answers, and at
    least one worker sent a heartbeat recently. Each check is reported by name."""
    checks: dict[str, Any] = {}
    model = None
    try:
        await run_in_threadpool(store.ping)
        info = await run_in_threadpool(store.model_info)
        workers = await run_in_threadpool(store.leases.live_workers, settings.lease_ttl_s)
        checks["redis"] = "ok"
        checks["workers"] = "ok" if workers else "no worker sent a heartbeat recently"
        model = info.name if info else None
    except Exception as exc:
        checks["redis"] = f"unreachable: {exc}"
        checks["workers"] = "unknown (redis is down)"
        workers = []
    try:
        status = await memory.live(timeout=2.0)
        checks["memory"] = "ok" if status == 200 else f"answered {status}"
    except httpx.HTTPError as exc:
        checks["memory"] = f"unreachable: {exc!r}"
    ready = all(v == "ok" for v in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": checks,
        "model": model,
        "workers": len(workers) if checks["redis"] == "ok" else None,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/healthz", include_in_schema=False)
async def healthz(store: Store, memory: Memory, settings: Settings) -> JSONResponse:
    """Old name of /readyz."""
    return await readyz(store, memory, settings)
