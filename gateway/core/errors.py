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
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memq.contracts import ErrorResponse

log = logging.getLogger("memq.gateway")


class GatewayError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(GatewayError):
    status_code = 401
    code = "unauthorized"


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


def _json(status: int, body: ErrorResponse, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _field_message(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
    return f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid"))


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return _json(exc.status_code, ErrorResponse(error=exc.code, message=exc.message), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        message = "; ".join(_field_message(e) for e in errors[:5])
        return _json(422, ErrorResponse(error="validation_error", message=message, details=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _json(exc.status_code, ErrorResponse(error=code, message=str(exc.detail)))

    @app.exception_handler(redis.RedisError)
    async def _redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        body = ErrorResponse(
            error=QueueUnavailable.code,
            message="the job store is unavailable; nothing was accepted, retry shortly",
        )
        return _json(503, body, {"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _json(500, ErrorResponse(error="internal_error", message="internal error"))
