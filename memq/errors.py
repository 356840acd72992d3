"""Every error memq raises on purpose, in one tree, and its one mapping to HTTP.

    MemqError                        root: `code` (machine-readable), `status_code`, message
     ├── ConfigError                 a setting is missing or inconsistent (start-up)
     ├── LaunchError                 `memq up`: a part did not start or kept crashing (memq.ops)
     ├── Unavailable (503)           a dependency did not answer; retrying later may work
     │    ├── QueueUnavailable       Redis (job store / broker)
     │    ├── MemoryUnavailable      the memory service, seen from its clients
     │    ├── StoreUnavailable       the vector store, seen from the memory service
     │    └── EngineUnavailable      the worker's engine process died (the job is requeued)
     ├── InvalidInput (422)          the request can never succeed as sent
     │    ├── PromptTooLong          the job does not fit the model's context window
     │    ├── MemoryRequestRejected  the memory service refused a request (4xx), seen from a client
     │    ├── IdempotencyConflict    an Idempotency-Key reused with another body (the job store)
     │    └── InputNotJsonl          a batch input that is no batch at all (the batch fails)
     ├── QuotaExceeded (429)         the tenant's unfinished-job quota is full (the job store)
     ├── NotFound (404)
     │    ├── JobNotFound
     │    └── MemoryNotFound
     ├── Unauthorized (401)
     ├── APIError                    SDK: a memq service answered an error (status, code, message)
     │    ├── AuthenticationError    401
     │    ├── NotFoundError          404 (also another tenant's id)
     │    ├── ConflictError          409 (e.g. cancelling a finished job)
     │    ├── GoneError              410 (the job's record expired)
     │    ├── UnprocessableError     413 / 422: the request can never succeed as sent
     │    ├── RateLimitError         429, with `retry_after`
     │    └── ServiceUnavailableError 503, with `retry_after`
     ├── APIConnectionError          SDK: the gateway could not be reached (memq/sdk.py;
     │    └── APITimeoutError        also an httpx.TransportError)
     ├── WaitTimeout                 SDK: a job was not finished by the deadline (a TimeoutError)
     ├── GatewayError                gateway-only errors         (gateway/core/errors.py)
     ├── MemoryServiceError          memory-service-only errors  (memory_service/core/errors.py)
     └── WorkerError                 worker-only errors          (worker/errors.py)

A job that fails records `ErrorResponse(error=exc.code, message=str(exc))`; an HTTP
service answers `exc.status_code` with the same body, through `register_error_handlers`,
so no error anywhere in memq is a bare 500 with no message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from memq.contracts import ErrorResponse

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse


class MemqError(Exception):
    status_code = 500
    code = "internal_error"
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_response(self) -> ErrorResponse:
        return ErrorResponse(error=self.code, message=self.message)


class ConfigError(MemqError):
    code = "config_error"


class Unavailable(MemqError):
    status_code = 503
    code = "unavailable"
    headers = {"Retry-After": "2"}  # noqa: RUF012 - read-only class constant


class QueueUnavailable(Unavailable):
    code = "queue_unavailable"


class MemoryUnavailable(Unavailable):
    code = "memory_unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class EngineUnavailable(Unavailable):
    code = "engine_unavailable"


class InvalidInput(MemqError):
    status_code = 422
    code = "invalid_request"


class PromptTooLong(InvalidInput):
    code = "prompt_too_long"


class MemoryRequestRejected(InvalidInput):
    code = "memory_request_rejected"


class IdempotencyConflict(InvalidInput):
    """The Idempotency-Key was used before, with a different request body (422, as the
    IETF Idempotency-Key draft answers)."""

    code = "idempotency_key_reused"

    def __init__(self, original_id: str) -> None:
        super().__init__(
            f"the Idempotency-Key was used for job {original_id} with a different request body"
        )
        self.original_id = original_id


class InputNotJsonl(InvalidInput):
    """The input file as a whole cannot be a batch: the batch fails in `validating` with
    `code` (`invalid_file`, `empty_file`, `too_many_lines`)."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.line = line


class QuotaExceeded(MemqError):
    """The tenant already has as many unfinished jobs as its quota allows."""

    status_code = 429
    code = "too_many_jobs"
    headers = {"Retry-After": "5"}  # noqa: RUF012 - read-only class constant


class NotFound(MemqError):
    status_code = 404
    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class MemoryNotFound(NotFound):
    code = "memory_not_found"

    def __init__(self, memory_id: str) -> None:
        super().__init__(
            f"no memory with id {memory_id!r} for this tenant; list or search the namespace "
            "to find ids"
        )


class Unauthorized(MemqError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - read-only class constant


class APIError(MemqError):
    """An error answer from a memq service, as the SDK raises it."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.server_message = message
        self.body = body
        self.retry_after = retry_after

    @staticmethod
    def of(
        status_code: int,
        code: str,
        message: str,
        body: Any = None,
        retry_after: float | None = None,
    ) -> APIError:
        """The most specific subclass for this status."""
        cls = _API_ERRORS.get(status_code, APIError)
        return cls(status_code, code, message, body, retry_after)


class AuthenticationError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class GoneError(APIError):
    pass


class UnprocessableError(APIError):
    pass


class RateLimitError(APIError):
    pass


class ServiceUnavailableError(APIError):
    pass


_API_ERRORS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: UnprocessableError,
    422: UnprocessableError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


class WaitTimeout(MemqError, TimeoutError):
    """The SDK waited for a job until its deadline; the job goes on."""

    code = "wait_timeout"


class GatewayError(MemqError):
    pass


class MemoryServiceError(MemqError):
    pass


class WorkerError(MemqError):
    code = "worker_error"


# ---------------------------------------------------------------------------- HTTP mapping


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    from fastapi.responses import JSONResponse

    body = ErrorResponse(error=code, message=message, details=details)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _where(loc: Any) -> str:
    return ".".join(str(p) for p in loc if p != "body")


def register_error_handlers(
    app: FastAPI, log: logging.Logger, openai_paths: tuple[str, ...] = ()
) -> None:
    """The one place where errors become HTTP answers, for every memq service. Paths under
    `openai_paths` answer in OpenAI's error shape (`{"error": {"message", "type", "code"}}`)
    so the official client reads them."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def answer(
        request: Request,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        if openai_paths and request.url.path.startswith(openai_paths):
            from memq.contracts.openai import openai_error

            param = _where(details[0]["loc"]) if details else None
            body = openai_error(status, code, message, param or None)
            return JSONResponse(body, status_code=status, headers=headers)
        return error_response(status, code, message, details, headers)

    @app.exception_handler(MemqError)
    async def _memq_error(request: Request, exc: MemqError) -> JSONResponse:
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return answer(request, exc.status_code, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        summary = "; ".join(
            f"{_where(d['loc'])}: {d['msg']}" if _where(d["loc"]) else str(d["msg"])
            for d in details[:5]
        )
        return answer(request, 422, "validation_error", f"fix the request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode at all (not UTF-8, broken multipart);
            # malformed JSON is already a 422: one documented answer for both.
            message = (
                f"fix the request: the body could not be read ({exc.detail}); send UTF-8 JSON, "
                "or multipart/form-data where a route takes a file"
            )
            return answer(request, 422, "validation_error", message)
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers) if exc.headers else None
        return answer(request, exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return answer(request, 500, "internal_error", f"{app.title} failed; see its log")
