"""Every error memq raises on purpose, in one tree under `MemqError`. Errors used in one
place stay beside their code (the path in brackets) but always on a branch of this tree;
`memq.http_errors` maps the whole tree to HTTP, once.

    MemqError                        root: `code` (machine-readable), `status_code`, message
     ├── ConfigError                 a setting is missing or inconsistent (start-up)
     ├── LaunchError                 `memq up`: a part did not start or kept crashing
     │                               (memq/ops/process.py)
     ├── InvalidWebhook (400)        a delivery that does not verify (memq/webhooks.py)
     ├── Unavailable (503)           a dependency did not answer; retrying later may work
     │    ├── QueueUnavailable       Redis (job store / broker)
     │    ├── MemoryUnavailable      the memory service, seen from its clients
     │    ├── StoreUnavailable       the vector store, seen from the memory service
     │    └── EngineUnavailable      the worker's engine process died (the job is requeued)
     ├── InvalidInput (422)          the request can never succeed as sent
     │    ├── PromptTooLong          the job does not fit the model's context window
     │    ├── MemoryRequestRejected  the memory service refused a request (4xx), seen from a client
     │    ├── IdempotencyConflict    an Idempotency-Key reused with another body (the job store)
     │    ├── InputNotJsonl          a batch input that is no batch at all (the batch fails)
     │    └── AdapterIncompatible, NoMemoriesToConsolidate
     │                               (memq/store/adapters.py, worker/training.py)
     ├── QuotaExceeded (429)         the tenant's unfinished-job quota is full (the job store)
     ├── NotFound (404)
     │    ├── JobNotFound
     │    ├── MemoryNotFound
     │    └── AdapterNotFound, SessionNotFound, ModelNotFound, FileNotFound, BatchNotFound
     │                               (memq/store/adapters.py, gateway/services/*.py)
     ├── Unauthorized (401)
     ├── APIError, APIConnectionError, WaitTimeout
     │                               the SDK's errors, drawn in memq/sdk/errors.py
     ├── GatewayError                gateway-only errors, drawn in gateway/core/errors.py
     ├── MemoryServiceError          memory-service-only errors, drawn in
     │                               memory_service/core/errors.py
     └── WorkerError                 worker-only errors, drawn in worker/errors.py

A job that fails records `ErrorResponse(error=exc.code, message=str(exc))`; an HTTP
service answers `exc.status_code` with the same body, through
`memq.http_errors.register_error_handlers`, so no error anywhere in memq is a bare 500 with
no message.
"""

from __future__ import annotations

from memq.contracts import ErrorResponse


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


class GatewayError(MemqError):
    pass


class MemoryServiceError(MemqError):
    pass


class WorkerError(MemqError):
    code = "worker_error"
