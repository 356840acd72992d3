from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.core.config import GatewaySettings
from gateway.core.errors import Unauthorized
from gateway.services.jobs import JobService
from memq.settings import DEFAULT_TENANT


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


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
    for known, tenant in settings.api_keys.items():
        if secrets.compare_digest(known.encode(), key.encode()):
            return tenant
    raise Unauthorized("unknown API key")


Tenant = Annotated[str, Depends(authenticate)]
Jobs = Annotated[JobService, Depends(get_jobs)]
Settings = Annotated[GatewaySettings, Depends(get_settings)]
