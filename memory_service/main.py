"""App factory: the lifespan builds the embedder, the store and the service once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from memory_service.api.routes import health, memories, namespaces
from memory_service.core.config import MemorySettings
from memory_service.core.errors import MemoryServiceError
from memory_service.services.embeddings import embedder_for
from memory_service.services.memories import MemoryService
from memory_service.store import build_store
from memq.contracts import ErrorResponse

log = logging.getLogger("memory_service")


def create_app(settings: MemorySettings | None = None) -> FastAPI:
    settings = settings or MemorySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedder = await run_in_threadpool(embedder_for, settings)
        store = await run_in_threadpool(build_store, settings, embedder.dim)
        service = MemoryService(
            store=store,
            embedder=embedder,
            dedup_threshold=settings.dedup_threshold,
            hnsw_ef=settings.search_hnsw_ef,
        )
        app.state.settings = settings
        app.state.memory_service = service
        housekeeping = asyncio.create_task(_housekeeping(service, settings.ttl_sweep_interval_s))
        try:
            yield
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            store.close()

    app = FastAPI(
        title="memq memory service",
        version="0.1.0",
        description="Long-term memory for memq: tenant-scoped embeddings in Qdrant.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(health.router)
    app.include_router(memories.router)
    app.include_router(namespaces.router)
    _register_error_handlers(app)
    return app


async def _housekeeping(service: MemoryService, interval_s: float) -> None:
    """Delete expired memories and let the store build indexes, every `interval_s`."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            swept = await run_in_threadpool(service.sweep_expired)
            if swept:
                log.info("deleted %d expired memories", swept)
            await run_in_threadpool(service.store.maintain)
        except Exception:
            log.exception("housekeeping failed; retrying in %.0fs", interval_s)


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body = ErrorResponse(error=code, message=message, details=details)
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"))


def _register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MemoryServiceError)
    async def service_error(_: Request, exc: MemoryServiceError) -> JSONResponse:
        return _error(exc.status_code, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:5])
        return _error(422, "validation_error", f"fix the request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal_error", "the memory service failed; see its log")
