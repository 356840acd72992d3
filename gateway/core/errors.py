"""Gateway exception tree, mapped to HTTP in one place (`register_error_handlers`).

GatewayError (500)
 ├── Unauthorized (401)            missing or unknown API key
 ├── JobNotFound (404)             no such job for this tenant
 ├── PromptTooLong (422)           user text + max_new_tokens exceed the context
 ├── QueueUnavailable (503)        the broker did not take the job
 └── MemoryServiceUnavailable (503)
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from memq.errors import ServiceError, error_response
from memq.errors import register_error_handlers as register_common

log = logging.getLogger("memq.gateway")


class GatewayError(ServiceError):
    pass


class Unauthorized(GatewayError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - read-only class constant


class JobNotFound(GatewayError):
    status_code = 404
    code = "job_not_found"


class PromptTooLong(GatewayError):
    status_code = 422
    code = "prompt_too_long"


class QueueUnavailable(GatewayError):
    status_code = 503
    code = "queue_unavailable"


class MemoryServiceUnavailable(GatewayError):
    status_code = 503
    code = "memory_service_unavailable"


def register_error_handlers(app: FastAPI) -> None:
    register_common(app, log)

    @app.exception_handler(redis.RedisError)
    async def _redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        message = "the job store is unavailable; nothing was accepted, retry shortly"
        return error_response(503, QueueUnavailable.code, message, headers={"Retry-After": "2"})
