"""Typed dependencies: settings, services and the caller's tenant. Routes reach the
application's long-lived objects only through these."""

from __future__ import annotations

import secrets
from typing import Annotated

import httpx
import redis.asyncio
from fastapi import Depends, Header, Request

from gateway.core.config import GatewaySettings
from gateway.services.jobs import JobService
from memq.errors import Unauthorized
from memq.jobstore import JobStore
from memq.settings import DEFAULT_TENANT


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.jobs.store
    return store


def get_async_redis(request: Request) -> redis.asyncio.Redis:
    client: redis.asyncio.Redis = request.app.state.aredis
    return client


def get_memory_http(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.memory_http
    return client


def authenticate(
    settings: Annotated[GatewaySettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """Resolve the caller's tenant from its API key (`Authorization: Bearer` or `X-API-Key`)."""
    if not settings.api_keys:
        return DEFAULT_TENANT
    key = x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    found = None
    # Compare against every key, so the time taken does not tell which one nearly matched.
    for known, tenant in settings.api_keys.items():
        if secrets.compare_digest(known.encode(), key.encode()):
            found = tenant
    if found is None:
        raise Unauthorized("unknown API key")
    return found


Tenant = Annotated[str, Depends(authenticate)]
Jobs = Annotated[JobService, Depends(get_jobs)]
Store = Annotated[JobStore, Depends(get_store)]
MemoryHttp = Annotated[httpx.AsyncClient, Depends(get_memory_http)]
AsyncRedis = Annotated[redis.asyncio.Redis, Depends(get_async_redis)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
