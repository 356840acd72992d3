"""App factory: the lifespan builds the embedder, the store and the service once; routes
reach them through `memory_service.api.deps`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from memory_service.api.routes import health, memories, namespaces
from memory_service.core.config import MemorySettings
from memory_service.services.embeddings import Embedder, embedder_for
from memory_service.services.memories import MemoryService
from memory_service.store import build_store
from memq.asgi import BodySizeLimit
from memq.http_errors import register_error_handlers
from memq.log_context import JOB_ID_HEADER, BindJobId
from memq.logs import package_version

log = logging.getLogger("memory_service")

IMPORT_PATH = r"/v1/namespaces/[^/]+/import"


def create_app(settings: MemorySettings, *, embedder: Embedder | None = None) -> FastAPI:
    """`embedder`: an already loaded model to use instead of loading one (tests share one
    across many apps; the model is read-only, so sharing is safe)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = (
            embedder if embedder is not None else await run_in_threadpool(embedder_for, settings)
        )
        store = await run_in_threadpool(build_store, settings, model.dim)
        service = MemoryService(
            store=store,
            embedder=model,
            dedup_threshold=settings.dedup_threshold,
            hnsw_ef=settings.search_hnsw_ef,
            keyword_weight=settings.search_keyword_weight,
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
        version=package_version(),
        description="Long-term memory for memq: tenant-scoped embeddings in Qdrant.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(health.router)
    app.include_router(memories.router)
    app.include_router(namespaces.router)
    register_error_handlers(app, log)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.memory_max_body_bytes,
        route_limits=[(IMPORT_PATH, settings.memory_max_import_bytes)],
    )
    # Outermost, so the job id is bound for everything below (a 413 included).
    app.add_middleware(BindJobId, header=JOB_ID_HEADER, log_requests=True)
    return app


async def _housekeeping(service: MemoryService, interval_s: float) -> None:
    """Delete expired memories and let the store build indexes, every `interval_s`. A
    failure is logged and retried next round; the store reopens a shard a failed write
    wedged, so a sweep can never leave writes refused."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            swept = await run_in_threadpool(service.sweep_expired)
            if swept:
                log.info("deleted %d expired memories", swept)
            await run_in_threadpool(service.store.maintain)
        except Exception:
            log.exception("housekeeping failed; retrying in %.0fs", interval_s)
