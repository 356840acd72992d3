"""The errors the SDK raises, a branch of memq's one root (`memq.errors.MemqError`), so
`except memq.MemqError` catches whatever a memq call raised on purpose.

    MemqError (memq.errors)
     ├── APIError                    a memq service answered an error (status, code, message)
     │    ├── AuthenticationError    401
     │    ├── NotFoundError          404 (also another tenant's id)
     │    ├── ConflictError          409 (e.g. cancelling a finished job)
     │    ├── GoneError              410 (the job's record expired)
     │    ├── UnprocessableError     413 / 422: the request can never succeed as sent
     │    ├── RateLimitError         429, with `retry_after`
     │    └── ServiceUnavailableError 503, with `retry_after`
     ├── APIConnectionError          the gateway could not be reached (also an
     │    └── APITimeoutError        httpx.TransportError)
     └── WaitTimeout                 a job was not finished by the deadline (a TimeoutError)
"""

from __future__ import annotations

from typing import Any

import httpx

from memq.errors import MemqError


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


class APIConnectionError(MemqError, httpx.TransportError):
    """The gateway could not be reached (refused, reset, DNS, TLS). Also an
    `httpx.TransportError`, so code written against httpx keeps catching it."""

    code = "gateway_unreachable"


class APITimeoutError(APIConnectionError):
    """The gateway did not answer within the client's timeout."""

    code = "gateway_timeout"


class WaitTimeout(MemqError, TimeoutError):
    """The SDK waited for a job until its deadline; the job goes on."""

    code = "wait_timeout"
