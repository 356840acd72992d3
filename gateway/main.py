"""App factory: the lifespan builds the job store, the Celery producer, the job service and
the memory-service client once; routes reach them through `gateway.api.deps`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI

from gateway.api.routes import (
    adapters,
    batches,
    files,
    health,
    jobs,
    memories,
    metrics,
    openai,
    sessions,
    ui,
    webhooks,
)
from gateway.core.config import GatewaySettings
from gateway.core.errors import register_error_handlers
from gateway.core.limits import Limits
from gateway.services.auth import Authenticator
from gateway.services.batches import BatchService
from gateway.services.files import FileService
from gateway.services.jobs import JobService
from gateway.services.openai import OpenAIService
from gateway.services.sessions import SessionService
from gateway.storage import DirectoryStorage
from memq.asgi import BodySizeLimit
from memq.broker import job_store, producer_app
from memq.log_context import BindJobId
from memq.logs import package_version
from memq.memory_client import AsyncMemoryClient
from memq.store.batches import BatchStore
from memq.store.files import FileRecords
from memq.store.keystore import ApiKeyStore

log = logging.getLogger("memq.gateway")


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        celery = producer_app(settings)
        store = job_store(settings, celery)
        app.state.aredis = redis.asyncio.Redis.from_url(settings.redis_url)
        app.state.settings = settings
        app.state.jobs = JobService(store, celery, settings)
        app.state.openai = OpenAIService(app.state.jobs, app.state.aredis, settings)
        app.state.auth = Authenticator.from_settings(
            settings, ApiKeyStore(store.r, settings.key_prefix)
        )
        app.state.limits = Limits.from_settings(settings, store.r)
        app.state.memory = memory = AsyncMemoryClient(
            settings.memory_url, settings.token, timeout=settings.memory_timeout_s
        )
        app.state.sessions = SessionService(app.state.jobs, memory)
        batch_store = BatchStore(store.r, settings.key_prefix)
        app.state.files = FileService(
            FileRecords(store.r, settings.key_prefix),
            DirectoryStorage(settings.files_path),
            batch_store,
            settings,
        )
        app.state.batches = BatchService(
            store, batch_store, app.state.files, app.state.jobs, celery, settings
        )
        app.state.batches.start()
        try:
            yield
        finally:
            app.state.batches.close()
            await memory.aclose()
            await app.state.aredis.aclose()
            store.r.close()

    app = FastAPI(
        title="memq gateway",
        version=package_version(),
        description="Async LLM jobs with explicit long-term memory.",
        lifespan=lifespan,
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        route_limits=[
            (r"/v1/namespaces/[^/]+/import", settings.max_import_bytes),
            # the multipart envelope around the file: boundaries, headers, the purpose field
            (r"/v1/files", settings.max_file_bytes + 64 * 1024),
        ],
    )
    app.add_middleware(BindJobId, path=r"^/v1/jobs/([^/]+)")
    register_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(memories.router)
    app.include_router(adapters.router)
    app.include_router(openai.router)
    app.include_router(sessions.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    app.include_router(files.router)
    app.include_router(batches.router)
    return app
