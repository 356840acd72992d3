"""Webhook bookkeeping on a real Redis (memq.store.webhooks): a delivery recorded once per
job, its attempts appended without losing a concurrent one, and the tenant's secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from memq.contracts import GenerateJobRequest, WebhookAttempt, WebhookDelivery
from memq.store import webhooks
from memq.store.jobs import JobStore


def test_a_webhook_is_recorded_once_and_its_attempts_appended(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    assert store.webhooks.begin("acme", "gone", "https://hook.example/x") is False
    store.create("acme", "w1", GenerateJobRequest(prompt="hi"))
    assert store.webhooks.get("acme", "w1") is None
    assert store.webhooks.begin("acme", "w1", "https://hook.example/x") is True
    assert store.webhooks.begin("acme", "w1", "https://hook.example/other") is False
    pending = store.webhooks.get("acme", "w1")
    assert pending == WebhookDelivery(url="https://hook.example/x")
    first = WebhookAttempt(at=datetime(2024, 5, 1, tzinfo=UTC), status_code=500)
    second = WebhookAttempt(at=datetime(2024, 5, 2, tzinfo=UTC), status_code=200)
    failed = store.webhooks.record_attempt("acme", "w1", first, delivered=False, gave_up=False)
    assert failed is not None and failed.attempts == [first] and failed.delivered_at is None
    done = store.webhooks.record_attempt("acme", "w1", second, delivered=True, gave_up=False)
    assert done is not None and done.attempts == [first, second]
    assert done.delivered_at == second.at and done.gave_up is False
    assert store.webhooks.get("acme", "w1") == done
    job = store.get("acme", "w1")
    assert job is not None and job.webhook == done
    gave_up = store.webhooks.record_attempt("acme", "w1", second, delivered=False, gave_up=True)
    assert gave_up is not None and gave_up.gave_up is True and len(gave_up.attempts) == 3
    assert (
        store.webhooks.record_attempt("acme", "nope", first, delivered=False, gave_up=False) is None
    )


def test_an_attempt_recorded_meanwhile_by_another_process_is_kept(
    redis_client: redis.Redis,
) -> None:
    store, other = JobStore(redis_client), JobStore(redis_client)
    store.create("acme", "w2", GenerateJobRequest(prompt="hi"))
    assert store.webhooks.begin("acme", "w2", "https://hook.example/x")
    theirs = WebhookAttempt(at=datetime(2024, 5, 1, tzinfo=UTC), error="timeout")
    ours = WebhookAttempt(at=datetime(2024, 5, 2, tzinfo=UTC), status_code=200)
    update = store.webhooks._update
    calls: list[int] = []

    def racing(*, keys: list[str], args: list[str]) -> Any:
        calls.append(1)
        if len(calls) == 1:
            other.webhooks.record_attempt("acme", "w2", theirs, delivered=False, gave_up=False)
        return update(keys=keys, args=args)

    store.webhooks._update = racing  # type: ignore[assignment]
    done = store.webhooks.record_attempt("acme", "w2", ours, delivered=True, gave_up=False)
    assert len(calls) == 2
    assert done is not None and done.attempts == [theirs, ours] and done.delivered_at == ours.at
    assert store.webhooks.get("acme", "w2") == done


def test_an_attempt_on_a_record_that_expired_meanwhile_is_dropped(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("acme", "w3", GenerateJobRequest(prompt="hi"))
    assert store.webhooks.begin("acme", "w3", "https://hook.example/x")
    update = store.webhooks._update

    def expiring(*, keys: list[str], args: list[str]) -> Any:
        redis_client.delete(keys[0])
        return update(keys=keys, args=args)

    store.webhooks._update = expiring  # type: ignore[assignment]
    attempt = WebhookAttempt(at=datetime(2024, 5, 1, tzinfo=UTC), status_code=200)
    assert (
        store.webhooks.record_attempt("acme", "w3", attempt, delivered=True, gave_up=False) is None
    )
    assert redis_client.exists(store.keys.job("acme", "w3")) == 0


def test_the_webhook_secret_is_made_once_and_a_rotation_keeps_the_old_one_a_day(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(webhooks, "_utcnow", lambda: now)
    store = JobStore(redis_client)
    first = store.webhooks.secret("acme")
    assert first.created_at == now and first.previous_valid_until is None
    assert store.webhooks.secret("acme") == first
    assert store.webhooks.signing_secrets("acme") == [first.secret]
    assert store.webhooks.secret("beta").secret != first.secret

    rotated = store.webhooks.secret("acme", rotate=True)
    assert rotated.secret != first.secret
    assert rotated.previous_valid_until == now + timedelta(hours=24)
    assert store.webhooks.signing_secrets("acme") == [rotated.secret, first.secret]

    monkeypatch.setattr(webhooks, "_utcnow", lambda: now + timedelta(hours=24))
    assert store.webhooks.secret("acme").previous_valid_until is None  # the overlap is over
    assert store.webhooks.signing_secrets("acme") == [rotated.secret]
    monkeypatch.setattr(webhooks, "_utcnow", lambda: now + timedelta(hours=24, microseconds=-1))
    assert store.webhooks.secret("acme").previous_valid_until == now + timedelta(hours=24)


def test_a_new_secret_is_dated_by_the_clock(redis_client: redis.Redis) -> None:
    before = datetime.now(UTC)
    made = JobStore(redis_client).webhooks.secret("acme")
    assert before <= made.created_at <= datetime.now(UTC)
    assert made.secret.startswith("whsec_") and made.previous_valid_until is None
