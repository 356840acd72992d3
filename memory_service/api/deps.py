"""Typed dependencies: the caller's identity (service token + tenant header), the settings and
the service the lifespan built. The only module that reads `app.state`."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from memory_service.core.config import MemorySettings
from memory_service.core.errors import InvalidTenant, Unauthorized
from memory_service.services.memories import MemoryService

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


def get_settings(request: Request) -> MemorySettings:
    settings: MemorySettings = request.app.state.settings
    return settings


def get_memory_service(request: Request) -> MemoryService:
    service: MemoryService = request.app.state.memory_service
    return service


def authenticate(
    settings: Annotated[MemorySettings, Depends(get_settings)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.token
    # compare_digest: the token check must not leak how many leading characters matched.
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized(
            "send `Authorization: Bearer <MEMQ_SERVICE_TOKEN>`; the memory service only "
            "answers the gateway and the workers"
        )


def caller_tenant(
    _: Annotated[None, Depends(authenticate)],
    x_memq_tenant: Annotated[
        str | None,
        Header(description="Tenant of the end user, set by the gateway after authenticating."),
    ] = None,
) -> str:
    if x_memq_tenant is None:
        raise InvalidTenant("the X-Memq-Tenant header is required (the gateway sets it)")
    if not TENANT_PATTERN.fullmatch(x_memq_tenant):
        raise InvalidTenant(
            "X-Memq-Tenant must be 1-128 characters of letters, digits and `_ . : @ -`"
        )
    return x_memq_tenant


Tenant = Annotated[str, Depends(caller_tenant)]
Service = Annotated[MemoryService, Depends(get_memory_service)]
Settings = Annotated[MemorySettings, Depends(get_settings)]
