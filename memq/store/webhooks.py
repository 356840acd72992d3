"""Webhook bookkeeping in Redis: each job's delivery state and each tenant's signing secret.

A job's delivery (`WebhookDelivery`: its URL, every attempt, delivered or given up) is the
`webhook` field of the job's hash, its own field so that delivery bookkeeping never races
a transition; it is recorded once per job (`begin`), so whoever sees a job end queues its
delivery at most once (memq.broker.WebhookQueue). The secrets sign deliveries (the
signing itself is memq.webhooks'); a rotation keeps the replaced secret signing for
`ROTATION_OVERLAP_S`.

Keys (memq.store.keys): `job` (its `webhook` field), `webhook_secret`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from memq.contracts import WebhookAttempt, WebhookDelivery
from memq.store import lua
from memq.store.keys import Keys, as_text
from memq.webhooks import ROTATION_OVERLAP_S, WebhookSecret, new_secret


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookStore:
    """Delivery state per job and signing secrets per tenant."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._begin = client.register_script(lua.WEBHOOK_BEGIN)
        self._update = client.register_script(lua.WEBHOOK_UPDATE)
        self._secret = client.register_script(lua.WEBHOOK_SECRET)

    # deliveries ---------------------------------------------------------------------------
    def begin(self, tenant: str, job_id: str, url: str) -> bool:
        """Record the job's webhook as pending; False when it was already recorded (the
        caller queues the delivery only on True) or the job's record is gone."""
        pending = WebhookDelivery(url=url).model_dump_json()
        return bool(self._begin(keys=[self.keys.job(tenant, job_id)], args=[pending]))

    def get(self, tenant: str, job_id: str) -> WebhookDelivery | None:
        raw: Any = self.r.hget(self.keys.job(tenant, job_id), "webhook")
        return WebhookDelivery.model_validate_json(raw) if raw is not None else None

    def record_attempt(
        self, tenant: str, job_id: str, attempt: WebhookAttempt, *, delivered: bool, gave_up: bool
    ) -> WebhookDelivery | None:
        """Append one delivery attempt (and its outcome) to the job's webhook; rewrites only
        that field, retrying when it changed meanwhile. None when the job's record is gone."""
        key = self.keys.job(tenant, job_id)
        while True:
            raw: Any = self.r.hget(key, "webhook")
            if raw is None:
                return None
            delivery = WebhookDelivery.model_validate_json(raw)
            delivery.attempts.append(attempt)
            if delivered:
                delivery.delivered_at = attempt.at
            delivery.gave_up = gave_up
            written = self._update(keys=[key], args=[raw, delivery.model_dump_json()])
            if written == 1:
                return delivery
            if written == -1:
                return None

    # signing secrets ------------------------------------------------------------------------
    def secret(self, tenant: str, *, rotate: bool = False) -> WebhookSecret:
        """The tenant's webhook signing secret, created on first use. `rotate` replaces it;
        the replaced one keeps signing for `ROTATION_OVERLAP_S` (one previous secret is kept:
        rotating twice in that window retires the older one at once)."""
        now = _utcnow()
        until = datetime.fromtimestamp(now.timestamp() + ROTATION_OVERLAP_S, UTC)
        found: Any = self._secret(
            keys=[self.keys.webhook_secret(tenant)],
            args=["rotate" if rotate else "get", new_secret(), now.isoformat(), until.isoformat()],
        )
        secret, created_at, _, previous_until = (as_text(v) if v else None for v in found)
        valid_until = datetime.fromisoformat(previous_until) if previous_until else None
        assert secret is not None and created_at is not None  # the script set both
        return WebhookSecret(
            secret=secret,
            created_at=datetime.fromisoformat(created_at),
            previous_valid_until=valid_until if valid_until and valid_until > now else None,
        )

    def signing_secrets(self, tenant: str) -> list[str]:
        """The secrets a delivery is signed with: the current one, and the one it replaced
        while the rotation overlap lasts."""
        current = self.secret(tenant)
        secrets = [current.secret]
        if current.previous_valid_until is not None:
            previous: Any = self.r.hget(self.keys.webhook_secret(tenant), "previous")
            if previous:
                secrets.append(as_text(previous))
        return secrets
