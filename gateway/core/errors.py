"""Gateway-only errors (branches of `memq.errors.GatewayError`) and the gateway's error
handlers: the shared mapping of `memq.http_errors` plus Redis being down.

GatewayError (memq.errors)
 ├── JobExpired (410)              the job existed but its record expired
 ├── JobNotCancellable (409)       cancel of a finished job
 ├── JobNotReplayable (409)        replay of a job without a result
 ├── IdempotencyKeyReused (422)    same Idempotency-Key, different body
 ├── TooManyJobs (429)             the tenant's unfinished-job quota is full
 ├── RateLimited (429)             too many requests for this API key
 ├── QueueFull (503)               the job queues hold MEMQ_MAX_QUEUE_DEPTH messages
 ├── FileTooLarge (413), FileInUse (409)          (gateway/services/files.py)
 ├── BatchFinished (409), Abandoned (never sent)  (gateway/services/batches.py)
 └── JobEndedWithoutResult (500)                  (gateway/services/openai.py)
Shared branches the gateway raises: Unauthorized (401), JobNotFound (404),
PromptTooLong (422), QueueUnavailable (503), MemoryUnavailable (503); NotFound's
SessionNotFound, ModelNotFound, FileNotFound and BatchNotFound live beside their services.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from starlette.responses import Response

from memq.contracts.openai import OPENAI_PATHS
from memq.errors import GatewayError, MemqError, QueueUnavailable
from memq.http_errors import register_error_handlers as register_common

log = logging.getLogger("memq.gateway")


class JobExpired(GatewayError):
    status_code = 410
    code = "job_expired"


class JobNotCancellable(GatewayError):
    status_code = 409
    code = "job_finished"


class JobNotReplayable(GatewayError):
    status_code = 409
    code = "job_not_replayable"


class IdempotencyKeyReused(GatewayError):
    status_code = 422
    code = "idempotency_key_reused"


class RateLimited(GatewayError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(retry_after_s, 1))}


class QueueFull(GatewayError):
    status_code = 503
    code = "queue_full"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(retry_after_s, 1))}


class TooManyJobs(GatewayError):
    status_code = 429
    code = "too_many_jobs"
    headers = {"Retry-After": "5"}  # noqa: RUF012 - read-only class constant


def register_error_handlers(app: FastAPI) -> None:
    register_common(app, log, openai_paths=OPENAI_PATHS)

    @app.exception_handler(redis.RedisError)
    async def _redis_down(request: Request, exc: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", exc)
        error = QueueUnavailable(
            "the job store is unavailable; nothing was accepted, retry shortly"
        )
        handler: Any = app.exception_handlers[MemqError]
        answer: Response = await handler(request, error)
        return answer
