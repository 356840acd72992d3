"""Every error the memory service raises on purpose, mapped to HTTP once in `main.py`.

MemoryServiceError            500 internal_error
 ├── Unauthorized             401 unauthorized
 ├── InvalidTenant            400 invalid_tenant
 ├── MemoryNotFound           404 memory_not_found
 ├── InvalidRequest           422 invalid_request   (bad cursor, bad import line, ...)
 └── StoreUnavailable         503 store_unavailable (backend down or refusing writes)
"""

from __future__ import annotations

from memq.errors import ServiceError


class MemoryServiceError(ServiceError):
    pass


class Unauthorized(MemoryServiceError):
    status_code = 401
    code = "unauthorized"


class InvalidTenant(MemoryServiceError):
    status_code = 400
    code = "invalid_tenant"


class MemoryNotFound(MemoryServiceError):
    status_code = 404
    code = "memory_not_found"

    def __init__(self, memory_id: str) -> None:
        super().__init__(
            f"no memory with id {memory_id!r} for this tenant; list or search the namespace "
            "to find ids"
        )


class InvalidRequest(MemoryServiceError):
    status_code = 422
    code = "invalid_request"


class StoreUnavailable(MemoryServiceError):
    status_code = 503
    code = "store_unavailable"
