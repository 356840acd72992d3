"""memq: async LLM jobs with explicit long-term memory.

Shared contracts, settings, clients and the `memq` CLI. The SDK is here at the top:
`memq.Client`, `memq.AsyncClient` and their errors (`memq.APIError`, `memq.NotFoundError`,
...); they are imported on first use, so the services importing `memq.*` do not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from memq.errors import MemqError
    from memq.sdk import (
        APIConnectionError,
        APIError,
        APITimeoutError,
        AsyncClient,
        AsyncTextStream,
        AuthenticationError,
        Client,
        ConflictError,
        GoneError,
        JobEvent,
        NotFoundError,
        RateLimitError,
        ResultEvent,
        ServiceUnavailableError,
        StatusEvent,
        TextStream,
        TokenEvent,
        UnprocessableError,
        WaitTimeout,
    )

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncTextStream",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "GoneError",
    "JobEvent",
    "MemqError",
    "NotFoundError",
    "RateLimitError",
    "ResultEvent",
    "ServiceUnavailableError",
    "StatusEvent",
    "TextStream",
    "TokenEvent",
    "UnprocessableError",
    "WaitTimeout",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'memq' has no attribute {name!r}")
    module = "memq.errors" if name == "MemqError" else "memq.sdk"
    return getattr(importlib.import_module(module), name)
