"""Webhooks: how a finished job's POST is signed and how a receiver verifies it (pure: no
Redis, no Celery).

A delivery is `POST callback_url` with the job's JSON (as `GET /v1/jobs/{id}` shows it, less
its own `webhook` delivery state) and three headers:

    Memq-Webhook-Id         the delivery's id: the same on every retry (deduplicate on it)
    Memq-Webhook-Timestamp  unix seconds when this attempt was signed
    Memq-Signature          `v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`; right after
                            a rotation one `v1=` per valid secret, separated by spaces

The secret is the tenant's (`GET /v1/webhooks/secret`). A receiver recomputes the HMAC over
the raw body bytes, compares in constant time, and refuses timestamps more than
`TOLERANCE_S` away from its clock (a captured request cannot be replayed later):
`verify(secret, request.headers, raw_body)` does all three.

Deliveries are queued by `memq.broker.WebhookQueue`, one of the terminal hooks
(`memq.broker.terminal_hooks`) that `JobStore` calls on every terminal transition (whoever
made it: a worker, the reconciler, the gateway's cancel), and run by the workers'
`memq.deliver_webhook` task (worker/webhooks.py).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from memq.errors import MemqError

ID_HEADER = "Memq-Webhook-Id"
TIMESTAMP_HEADER = "Memq-Webhook-Timestamp"
SIGNATURE_HEADER = "Memq-Signature"
SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300
"""How far a delivery's timestamp may be from the receiver's clock (the replay window)."""
SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP_S = 24 * 3600
"""After a rotation the previous secret still signs (alongside the new one) this long, so
receivers can switch without refusing a delivery."""


class WebhookSecret(BaseModel):
    """The tenant's webhook signing secret."""

    secret: str = Field(description="HMAC-SHA256 key of `Memq-Signature` (the whole string).")
    created_at: datetime
    previous_valid_until: datetime | None = Field(
        default=None,
        description="Until then deliveries are also signed with the secret this one replaced.",
    )


class InvalidWebhook(MemqError):
    """A delivery that does not verify: unsigned, signed with another secret, or too old."""

    status_code = 400
    code = "invalid_webhook"


def new_secret() -> str:
    return SECRET_PREFIX + uuid.uuid4().hex + uuid.uuid4().hex


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}.{body}"` under `secret`."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    return " ".join(f"{SIGNATURE_VERSION}={sign(s, timestamp, body)}" for s in secrets)


def delivery_headers(
    delivery_id: str, secrets: Sequence[str], body: bytes, timestamp: int
) -> dict[str, str]:
    """The headers of one delivery attempt (signed with every secret in `secrets`)."""
    return {
        "Content-Type": "application/json",
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(secrets, timestamp, body),
    }


def verify(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a delivery as a receiver: `body` is the raw request body (bytes, before any
    JSON parsing), `headers` the request's headers (any case). `secret` may be several (a
    receiver that rotates accepts the old and the new one for a while).

    Returns the delivery id (`Memq-Webhook-Id`, to deduplicate retries); raises
    InvalidWebhook when a header is missing, the timestamp is outside `tolerance_s`, or no
    signature matches."""
    lowered = {k.lower(): v for k, v in headers.items()}
    delivery_id = lowered.get(ID_HEADER.lower())
    raw_timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signatures = lowered.get(SIGNATURE_HEADER.lower())
    if not delivery_id or not raw_timestamp or not signatures:
        raise InvalidWebhook(
            f"a memq webhook carries {ID_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}; "
            "this request lacks at least one"
        )
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise InvalidWebhook(
            f"{TIMESTAMP_HEADER} {raw_timestamp[:20]!r} is not unix seconds"
        ) from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance_s:
        raise InvalidWebhook(
            f"{TIMESTAMP_HEADER} is {abs(skew):,.0f} s {'old' if skew > 0 else 'ahead'}; "
            f"deliveries are accepted within {tolerance_s:,.0f} s (check the receiver's clock)"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [sign(s, timestamp, body) for s in secrets]
    for item in signatures.replace(",", " ").split():
        version, _, value = item.partition("=")
        if version != SIGNATURE_VERSION:
            continue
        # Every candidate is compared (no early exit) so timing says nothing about which.
        if any([hmac.compare_digest(value, e) for e in expected]):
            return delivery_id
    raise InvalidWebhook(
        f"no {SIGNATURE_VERSION} signature in {SIGNATURE_HEADER} matches: sign the raw body with "
        "the tenant's current secret (GET /v1/webhooks/secret)"
    )


def status_url(gateway_url: str, job_id: str) -> str:
    """Where a job's status is read (`GET /v1/jobs/{id}`): the one builder of the URL that
    job answers, webhooks, OpenAI-shaped answers and batch output lines give."""
    return f"{gateway_url.rstrip('/')}/v1/jobs/{job_id}"
