"""Typed dependencies: settings, services and the caller's tenant. Routes reach the
application's long-lived objects only through these.

Every route that takes `Tenant` is authenticated and rate limited; the open ones (`/livez`,
`/readyz`, `/docs`, `/openapi.json`, `/metrics`) simply do not take it."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.core.config import GatewaySettings
from gateway.core.limits import Limits
from gateway.services.auth import Authenticator, Caller
from gateway.services.jobs import JobService
from gateway.services.memories import MemoryProxy
from memq.errors import Unauthorized
from memq.memory_client import AsyncMemoryClient
from memq.store.jobs import JobStore

# The getters below only read `app.state`: async, so FastAPI calls them on the event loop
# instead of handing each to the thread pool (a hand-off costs more than the getter).


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


async def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.jobs.store
    return store


async def get_async_redis(request: Request) -> redis.asyncio.Redis:
    client: redis.asyncio.Redis = request.app.state.aredis
    return client


async def get_memory_client(request: Request) -> AsyncMemoryClient:
    client: AsyncMemoryClient = request.app.state.memory
    return client


async def get_memories(
    memory: Annotated[AsyncMemoryClient, Depends(get_memory_client)],
    jobs: Annotated[JobService, Depends(get_jobs)],
) -> MemoryProxy:
    """Built per request from the two long-lived objects it holds (nothing else to build), so
    tests that swap the memory client with `dependency_overrides` swap it here too."""
    return MemoryProxy(memory, jobs)


async def get_authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


async def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


# Declared as security schemes so the OpenAPI document (and /docs' Authorize button) shows
# how to authenticate; the headers are read below to give precise 401 messages.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The API key, as an alternative header."
)


def authenticate(
    request: Request,
    auth: Annotated[Authenticator, Depends(get_authenticator)],
    _bearer_scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Caller:
    """The caller behind the request's API key (`Authorization: Bearer` or `X-API-Key`)."""
    key = x_api_key.strip() if x_api_key else None
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized(
                f"the Authorization header uses {scheme[:20]!r}; send `Authorization: Bearer <key>`"
            )
        key = credentials.strip()
    return auth.authenticate(key or None)


def caller_tenant(
    caller: Annotated[Caller, Depends(authenticate)],
    limits: Annotated[Limits, Depends(get_limits)],
) -> str:
    """The caller's tenant, once its request is counted against the rate limit."""
    limits.hit(caller.limit_key)
    return caller.tenant


def require_queue_room(
    _: Annotated[str, Depends(caller_tenant)],
    limits: Annotated[Limits, Depends(get_limits)],
) -> None:
    """503 `queue_full` (after authentication) while the job queues are past their bound."""
    limits.queue.check()


Tenant = Annotated[str, Depends(caller_tenant)]
QueueRoom = Depends(require_queue_room)
Jobs = Annotated[JobService, Depends(get_jobs)]
Store = Annotated[JobStore, Depends(get_store)]
Memory = Annotated[AsyncMemoryClient, Depends(get_memory_client)]
Memories = Annotated[MemoryProxy, Depends(get_memories)]
AsyncRedis = Annotated[redis.asyncio.Redis, Depends(get_async_redis)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
