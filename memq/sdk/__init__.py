"""The memq Python SDK: `Client` (blocking) and `AsyncClient` (asyncio) for the gateway.

    import memq

    with memq.Client() as client:            # MEMQ_GATEWAY_URL / MEMQ_API_KEY, or .env
        client.add_memory("user:42", "Alice lives in Paris.")
        accepted = client.generate("Where does Alice live?", namespace="user:42")
        stream = client.stream(accepted.id)
        for delta in stream:                 # the text as it is generated
            print(delta, end="", flush=True)
        for m in stream.job.result.memories: # what was retrieved, and whether it was used
            print(m.similarity, m.used, m.text)

Both clients send the same calls, described once in `_core` (method, path, body, how to
read the answer); only the I/O differs. What they raise is drawn in `memq.sdk.errors`.
"""

from memq.sdk._async import AsyncClient, AsyncTextStream
from memq.sdk._core import (
    JobEvent,
    ResultEvent,
    StatusEvent,
    TextAccumulator,
    TokenEvent,
)
from memq.sdk._sync import Client, TextStream
from memq.sdk.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    GoneError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
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
    "NotFoundError",
    "RateLimitError",
    "ResultEvent",
    "ServiceUnavailableError",
    "StatusEvent",
    "TextAccumulator",
    "TextStream",
    "TokenEvent",
    "UnprocessableError",
    "WaitTimeout",
]
