"""The tenant's webhook signing secret: read it (created on first use) and rotate it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import Store, Tenant
from memq.contracts import ErrorResponse
from memq.webhooks import WebhookSecret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 429, 503)
}


@router.get("/secret", response_model=WebhookSecret, responses=_errors)
def get_webhook_secret(tenant: Tenant, store: Store) -> WebhookSecret:
    """The secret that signs this tenant's webhooks (`Memq-Signature`); made on first use."""
    return store.webhooks.secret(tenant)


@router.post("/secret/rotate", response_model=WebhookSecret, responses=_errors)
def rotate_webhook_secret(tenant: Tenant, store: Store) -> WebhookSecret:
    """Replace the secret; deliveries carry a signature by the old one too for 24 h."""
    return store.webhooks.secret(tenant, rotate=True)
