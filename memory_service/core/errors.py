"""Errors the memory service raises on purpose; all are branches of `memq.errors.MemqError`
and are mapped to HTTP once, by `memq.http_errors.register_error_handlers`.

MemoryServiceError (memq.errors)   500 internal_error
 ├── InvalidTenant                  400 invalid_tenant
 ├── InvalidRequest                 422 invalid_request  (bad cursor, bad import line, ...)
 └── MemoryConflict                 409 memory_conflict  (restore a current memory, ...)
Shared branches used here: Unauthorized (401), MemoryNotFound (404), StoreUnavailable (503).
"""

from __future__ import annotations

from memq.errors import MemoryNotFound, MemoryServiceError, StoreUnavailable, Unauthorized

__all__ = [
    "InvalidRequest",
    "InvalidTenant",
    "MemoryConflict",
    "MemoryNotFound",
    "MemoryServiceError",
    "StoreUnavailable",
    "Unauthorized",
]


class InvalidTenant(MemoryServiceError):
    status_code = 400
    code = "invalid_tenant"


class InvalidRequest(MemoryServiceError):
    status_code = 422
    code = "invalid_request"


class MemoryConflict(MemoryServiceError):
    status_code = 409
    code = "memory_conflict"
