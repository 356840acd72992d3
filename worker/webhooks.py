"""Webhook delivery: one attempt per run of the `memq.deliver_webhook` task (worker.tasks),
which runs again after the backoff this module asks for.

    2xx                                  delivered
    408, 429, 5xx, timeout, network      retried, waiting backoff_s · 2^(attempt-1) (at most
                                         backoff_max_s; longer when Retry-After asks), until
                                         webhook_max_attempts, then given up
    other 3xx / 4xx                      given up at once: the receiver refused it (redirects
                                         are not followed)
    a private / loopback address         given up at once (unless webhook_allow_private)

Every attempt is recorded on the job (`webhook.attempts`). The address is checked when
each attempt is made, not when the job was submitted (DNS can change in between), and the
connection goes to the very address that was checked (the host name is kept for the
Host header and TLS), so a name that resolves elsewhere on a second lookup gains nothing.

At least once: a worker killed after the receiver answered but before the attempt was
recorded delivers again later, with the same Memq-Webhook-Id.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from memq import metrics
from memq.contracts import JobStatus, WebhookAttempt
from memq.errors import WorkerError
from memq.logs import package_version
from memq.store.jobs import JobRecord, JobStore
from memq.webhooks import delivery_headers, status_url
from worker.config import WorkerSettings

log = logging.getLogger("memq.worker.webhooks")

PARTIAL_WAIT_S = 5.0
"""A job cancelled while running gets its partial text from its worker within a decode step;
its webhook waits this long at most for it, so the receiver sees what was generated."""
PARTIAL_POLL_S = 0.25
ERROR_CHARS = 300

Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class WebhookAddressRefused(WorkerError):
    code = "webhook_address_refused"


@dataclass(frozen=True)
class WebhookPolicy:
    max_attempts: int
    timeout_s: float
    backoff_s: float
    backoff_max_s: float
    allow_private: bool
    gateway_url: str

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> WebhookPolicy:
        return cls(
            max_attempts=settings.webhook_max_attempts,
            timeout_s=settings.webhook_timeout_s,
            backoff_s=settings.webhook_backoff_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            allow_private=settings.webhook_allow_private,
            gateway_url=settings.gateway_url,
        )

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        wait = min(self.backoff_s * 2.0 ** (attempt - 1), self.backoff_max_s)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max_s))
        return wait


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: `url` names the checked address itself."""

    url: str
    host: str
    sni_hostname: str | None


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_target(
    url: str, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> Target:
    """Resolve `url`'s host once and pin the connection to that address. Raises
    WebhookAddressRefused when an address is not public (and private ones are not allowed),
    OSError when the name does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = list(
        dict.fromkeys(str(info[4][0]) for info in resolve(host, port, type=socket.SOCK_STREAM))
    )
    if not addresses:
        raise OSError(f"{host!r} has no address")
    if not allow_private:
        refused = [a for a in addresses if not _is_public(a)]
        if refused:
            raise WebhookAddressRefused(
                f"callback_url host {host!r} resolves to {', '.join(refused)}, a loopback, "
                "private, link-local or otherwise non-public address; webhooks are delivered to "
                "public addresses only (MEMQ_WEBHOOK_ALLOW_PRIVATE=true on the workers allows "
                "them)"
            )
    address = addresses[0]
    netloc = f"[{address}]" if ":" in address else address
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    named = host not in addresses
    sni = host if parts.scheme == "https" and named else None
    return Target(url=pinned, host=parts.netloc, sni_hostname=sni)


def payload(record: JobRecord, gateway_url: str) -> bytes:
    """The job as `GET /v1/jobs/{id}` shows it, less its own delivery state."""
    public = record.public(status_url=status_url(gateway_url, record.id))
    return public.model_dump_json(exclude={"webhook"}).encode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


@dataclass(frozen=True)
class _Answer:
    attempt: WebhookAttempt
    delivered: bool = False
    retryable: bool = False
    retry_after: float | None = None


class WebhookSender:
    """Makes one delivery attempt of a job's webhook and records it on the job."""

    def __init__(
        self,
        store: JobStore,
        policy: WebhookPolicy,
        http: httpx.Client,
        *,
        resolve: Resolver = socket.getaddrinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.http = http
        self.resolve = resolve
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> WebhookSender:
        policy = WebhookPolicy.from_settings(settings)
        http = httpx.Client(
            timeout=policy.timeout_s,
            follow_redirects=False,
            # Proxies from the environment would connect elsewhere than the checked address.
            trust_env=False,
            headers={"User-Agent": f"memq-webhooks/{package_version()}"},
        )
        return cls(JobStore.from_settings(settings), policy, http)

    def close(self) -> None:
        self.http.close()
        self.store.r.close()

    def deliver(self, tenant: str, job_id: str, delivery_id: str) -> float | None:
        """One attempt; returns how long to wait before the next one, or None when the
        delivery is over (delivered, given up, or nothing left to deliver)."""
        record = self.store.get(tenant, job_id)
        webhook = record.webhook if record is not None else None
        if record is None or webhook is None:
            log.info("webhook of job %s: the job's record is gone; nothing to deliver", job_id)
            return None
        if webhook.delivered_at is not None or webhook.gave_up:
            return None  # a redelivered message of a finished delivery
        if self._partial_pending(record):
            return PARTIAL_POLL_S
        number = len(webhook.attempts) + 1
        answer = self._attempt(record, webhook.url, delivery_id)
        gave_up = not answer.delivered and (
            not answer.retryable or number >= self.policy.max_attempts
        )
        self.store.webhooks.record_attempt(
            tenant, job_id, answer.attempt, delivered=answer.delivered, gave_up=gave_up
        )
        outcome = "delivered" if answer.delivered else "gave_up" if gave_up else None
        self.store.metrics.add(
            metrics.webhook_attempt(failed=not answer.delivered, outcome=outcome)
        )
        if answer.delivered:
            log.info("webhook of job %s delivered (attempt %d)", job_id, number)
            return None
        error = answer.attempt.error or f"answered {answer.attempt.status_code}"
        if gave_up:
            log.warning("webhook of job %s: gave up after attempt %d: %s", job_id, number, error)
            return None
        wait = self.policy.backoff(number, answer.retry_after)
        log.info(
            "webhook of job %s: attempt %d failed (%s); next in %.1f s", job_id, number, error, wait
        )
        return wait

    def _partial_pending(self, record: JobRecord) -> bool:
        cancelled_at = record.timestamps.get(JobStatus.cancelled)
        return (
            record.status == JobStatus.cancelled
            and JobStatus.running in record.timestamps
            and record.result is None
            and cancelled_at is not None
            and self.clock() - cancelled_at.timestamp() < PARTIAL_WAIT_S
        )

    def _attempt(self, record: JobRecord, url: str, delivery_id: str) -> _Answer:
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        try:
            target = resolve_target(
                url, allow_private=self.policy.allow_private, resolve=self.resolve
            )
        except WebhookAddressRefused as exc:
            return _Answer(WebhookAttempt(at=at, error=exc.message))
        except OSError as exc:
            return _Answer(WebhookAttempt(at=at, error=f"cannot resolve: {exc}"), retryable=True)
        body = payload(record, self.policy.gateway_url)
        secrets = self.store.webhooks.signing_secrets(record.tenant)
        headers = delivery_headers(delivery_id, secrets, body, int(now))
        headers["Host"] = target.host
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        try:
            response = self.http.post(
                target.url, content=body, headers=headers, extensions=extensions
            )
        except httpx.TimeoutException:
            error = f"no answer within {self.policy.timeout_s:g} s (MEMQ_WEBHOOK_TIMEOUT_S)"
            return _Answer(WebhookAttempt(at=at, error=error), retryable=True)
        except httpx.HTTPError as exc:
            return _Answer(WebhookAttempt(at=at, error=repr(exc)[:ERROR_CHARS]), retryable=True)
        code = response.status_code
        if 200 <= code < 300:
            return _Answer(WebhookAttempt(at=at, status_code=code), delivered=True)
        if code in (408, 429) or code >= 500:
            return _Answer(
                WebhookAttempt(at=at, status_code=code),
                retryable=True,
                retry_after=_retry_after(response),
            )
        reason = "redirects are not followed" if 300 <= code < 400 else "the receiver refused it"
        return _Answer(WebhookAttempt(at=at, status_code=code, error=f"{code}: {reason}"))
