from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis
from celery import Celery
from fastapi import FastAPI

from gateway.api.routes import health, jobs, memories
from gateway.core.config import GatewaySettings
from gateway.core.errors import register_error_handlers
from gateway.services.jobs import JobService
from memq import __version__
from memq.jobstore import JobStore


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    logging.basicConfig(level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis.Redis.from_url(settings.redis_url)
        store = JobStore(client, prefix=settings.key_prefix, ttl_s=settings.job_ttl_seconds)
        celery = Celery("memq-gateway", broker=settings.redis_url)
        celery.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        app.state.settings = settings
        app.state.jobs = JobService(store, celery, settings.queue)
        app.state.memory_http = httpx.AsyncClient(
            base_url=settings.memory_url,
            timeout=settings.memory_timeout_s,
            headers={"Authorization": f"Bearer {settings.service_token.get_secret_value()}"},
        )
        try:
            yield
        finally:
            await app.state.memory_http.aclose()
            client.close()

    app = FastAPI(
        title="memq gateway",
        version=__version__,
        description="Async LLM jobs with explicit long-term memory.",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(memories.router)
    return app
