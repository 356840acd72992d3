"""The small interface every vector store backend implements.

Filters are a backend-neutral tree (`Match`, `MatchAny`, `Range`, `HasId`, `Where`) that each
backend translates to its own client types. Every method that reads or writes memories takes
the tenant and adds the tenant condition itself, so no caller can forget it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from memory_service.core.errors import InvalidRequest

TENANT_KEY = "tenant"
DENSE = "dense"
SPARSE = "bm25"
PROBE_TENANT = "\x00memq-probe"
"""Tenant of the readiness probe's point: no caller's tenant header can name it."""

MAX_PAYLOAD_DEPTH = 32
"""Qdrant stores payloads it cannot read back once they nest about 128 levels deep (its
JSON decoder's recursion limit): the write succeeds, then every read, delete and WAL replay
of the point fails. The API bounds metadata far lower; this is the store's own backstop."""

Payload = dict[str, Any]


def check_payload(payload: Payload) -> None:
    """Refuse a payload the engine could not read back: too deep, or a non-finite number."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_PAYLOAD_DEPTH:
                raise InvalidRequest(
                    f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels; the store could not "
                    "read it back"
                )
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise InvalidRequest("payload holds a non-finite number (NaN or infinity)")


@dataclass(frozen=True)
class Match:
    key: str
    value: str | int | bool


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: list[str] | list[int]


@dataclass(frozen=True)
class Range:
    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class HasId:
    point_ids: list[str]


@dataclass(frozen=True)
class Where:
    must: list[Condition] = field(default_factory=list)
    should: list[Condition] = field(default_factory=list)
    must_not: list[Condition] = field(default_factory=list)


Condition = Match | MatchAny | Range | HasId | Where


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class StoredPoint:
    point_id: str
    dense: list[float]
    sparse: SparseVec
    payload: Payload


@dataclass(frozen=True)
class Found:
    point_id: str
    payload: Payload
    score: float = 0.0
    dense: list[float] | None = None


@dataclass(frozen=True)
class MmrSpec:
    vector: list[float]
    lambda_: float


@dataclass(frozen=True)
class SearchSpec:
    """One search: which legs run (dense and/or sparse), how they combine, what is kept."""

    limit: int
    dense: list[float] | None = None
    sparse: SparseVec | None = None
    where: Where | None = None
    candidates: int = 100
    mmr: MmrSpec | None = None
    recency_half_life_s: float | None = None
    recency_key: str = "created_ts"
    now: float = 0.0
    with_dense: bool = False
    hnsw_ef: int | None = None


class VectorStore(ABC):
    """Points with a dense vector, a BM25 sparse vector and a JSON payload, scoped by tenant."""

    backend: str

    @abstractmethod
    def upsert(self, tenant: str, points: list[StoredPoint]) -> None:
        """Insert or replace points; visible to reads on return (see `wait_durable`)."""

    @abstractmethod
    def scroll(
        self,
        tenant: str,
        where: Where | None,
        limit: int,
        cursor: str | None = None,
        with_dense: bool = False,
    ) -> tuple[list[Found], str | None]:
        """Points matching `where` in id order, from `cursor`; returns the next cursor."""

    @abstractmethod
    def count(self, tenant: str, where: Where | None) -> int: ...

    @abstractmethod
    def delete(self, tenant: str, where: Where) -> int:
        """Delete matching points; returns how many were deleted (see `wait_durable`)."""

    @abstractmethod
    def wait_durable(self) -> None:
        """Return once every write applied before the call is on disk. Callers invoke it
        before acknowledging, outside their own locks, so concurrent writers share one flush."""

    @abstractmethod
    def search(self, tenant: str, spec: SearchSpec) -> list[Found]: ...

    @abstractmethod
    def search_many(self, tenant: str, specs: list[SearchSpec]) -> list[list[Found]]:
        """Several searches in one call (one planned batch where the backend supports it)."""

    @abstractmethod
    def delete_expired(self, now: float) -> int:
        """Delete every tenant's points whose `expires_ts` is at or before `now`."""

    @abstractmethod
    def maintain(self) -> None:
        """Periodic housekeeping such as index building (a no-op where the backend does it)."""

    @abstractmethod
    def readiness(self) -> str | None:
        """None when the store can be read and written now, else why not (for `/readyz`)."""

    @abstractmethod
    def close(self) -> None: ...

    @staticmethod
    def scoped(tenant: str, where: Where | None) -> Where:
        """`where` narrowed to one tenant; the user's conditions nest under a must."""
        must: list[Condition] = [Match(TENANT_KEY, tenant)]
        if where is not None:
            must.append(where)
        return Where(must=must)
