"""Qdrant server backend through qdrant-client (`MEMQ_QDRANT_URL`).

Writes pass `wait=True`, so the server has applied them (and written its WAL) before we
acknowledge. One collection holds every tenant; `tenant` is a keyword index with `is_tenant`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from memory_service.core.errors import StoreUnavailable
from memory_service.store.base import (
    DENSE,
    PROBE_TENANT,
    SPARSE,
    Condition,
    Found,
    HasId,
    Match,
    MatchAny,
    Range,
    SearchSpec,
    StoredPoint,
    VectorStore,
    Where,
    check_payload,
)
from memory_service.store.schema import FLOAT_FIELDS, KEYWORD_FIELDS, TENANT_KEY

RRF_K = 60
PROBE_POINT_ID = "00000000-0000-4000-8000-00000000beef"

log = logging.getLogger(__name__)
T = TypeVar("T")


def _call(what: str, operation: Callable[[], T]) -> T:
    """A server call whose failure (server down, refused request) becomes a 503."""
    try:
        return operation()
    except Exception as exc:
        log.warning("Qdrant server failed to %s: %s", what, exc)
        raise StoreUnavailable(f"the Qdrant server failed to {what}: {exc}") from exc


def to_qdrant_filter(where: Where) -> qm.Filter:
    return qm.Filter(
        must=[_condition(c) for c in where.must] or None,
        should=[_condition(c) for c in where.should] or None,
        must_not=[_condition(c) for c in where.must_not] or None,
    )


def _condition(c: Condition) -> Any:
    if isinstance(c, Where):
        return to_qdrant_filter(c)
    if isinstance(c, Match):
        return qm.FieldCondition(key=c.key, match=qm.MatchValue(value=c.value))
    if isinstance(c, MatchAny):
        return qm.FieldCondition(key=c.key, match=qm.MatchAny(any=c.values))
    if isinstance(c, Range):
        return qm.FieldCondition(key=c.key, range=qm.Range(gt=c.gt, gte=c.gte, lt=c.lt, lte=c.lte))
    if isinstance(c, HasId):
        return qm.HasIdCondition(has_id=list(c.point_ids))
    raise TypeError(f"unknown condition {c!r}")


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict) and isinstance(vector.get(DENSE), list):
        return [float(x) for x in vector[DENSE]]
    return None


class ServerStore(VectorStore):
    backend = "server"

    def __init__(self, client: QdrantClient, collection: str, dim: int) -> None:
        self._client = client
        self._collection = collection
        self._dim = dim
        self._ensure_collection(dim)

    @classmethod
    def connect(cls, url: str, api_key: str | None, collection: str, dim: int) -> ServerStore:
        return cls(QdrantClient(url=url, api_key=api_key, timeout=30), collection, dim)

    def _ensure_collection(self, dim: int) -> None:
        if not self._client.collection_exists(self._collection):
            self._client.create_collection(
                self._collection,
                vectors_config={DENSE: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)},
                sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
        schema = self._client.get_collection(self._collection).payload_schema
        wanted: dict[str, Any] = {
            TENANT_KEY: qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True)
        }
        wanted.update({k: qm.PayloadSchemaType.KEYWORD for k in KEYWORD_FIELDS})
        wanted.update({k: qm.PayloadSchemaType.FLOAT for k in FLOAT_FIELDS})
        for key, field_schema in wanted.items():
            if key not in schema:
                self._client.create_payload_index(
                    self._collection, key, field_schema=field_schema, wait=True
                )

    def upsert(self, tenant: str, points: list[StoredPoint]) -> None:
        structs = []
        for p in points:
            if p.payload.get(TENANT_KEY) != tenant:
                raise ValueError("point payload tenant differs from the caller's tenant")
            check_payload(p.payload)
            vector: dict[str, Any] = {
                DENSE: p.dense,
                SPARSE: qm.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
            }
            structs.append(qm.PointStruct(id=p.point_id, vector=vector, payload=p.payload))
        _call(
            "store points",
            lambda: self._client.upsert(self._collection, points=structs, wait=True),
        )

    def scroll(
        self,
        tenant: str,
        where: Where | None,
        limit: int,
        cursor: str | None = None,
        with_dense: bool = False,
    ) -> tuple[list[Found], str | None]:
        records, next_offset = _call(
            "read points",
            lambda: self._client.scroll(
                self._collection,
                scroll_filter=to_qdrant_filter(self.scoped(tenant, where)),
                limit=limit,
                offset=cursor,
                with_payload=True,
                with_vectors=[DENSE] if with_dense else False,
            ),
        )
        found = [
            Found(point_id=str(r.id), payload=r.payload or {}, dense=_dense_of(r.vector))
            for r in records
        ]
        return found, None if next_offset is None else str(next_offset)

    def count(self, tenant: str, where: Where | None) -> int:
        flt = to_qdrant_filter(self.scoped(tenant, where))
        result = _call(
            "count points",
            lambda: self._client.count(self._collection, count_filter=flt, exact=True),
        )
        return result.count

    def delete(self, tenant: str, where: Where) -> int:
        return self._delete(to_qdrant_filter(self.scoped(tenant, where)))

    def delete_expired(self, now: float) -> int:
        return self._delete(
            qm.Filter(must=[qm.FieldCondition(key="expires_ts", range=qm.Range(lte=now))])
        )

    def _delete(self, selector: qm.Filter) -> int:
        def run() -> int:
            n = self._client.count(self._collection, count_filter=selector, exact=True).count
            if n:
                self._client.delete(
                    self._collection, points_selector=qm.FilterSelector(filter=selector), wait=True
                )
            return n

        return _call("delete points", run)

    def search(self, tenant: str, spec: SearchSpec) -> list[Found]:
        return self.search_many(tenant, [spec])[0]

    def search_many(self, tenant: str, specs: list[SearchSpec]) -> list[list[Found]]:
        if not specs:
            return []
        requests = [self._request(tenant, s) for s in specs]
        responses = _call(
            "search",
            lambda: self._client.query_batch_points(self._collection, requests=requests),
        )
        return [
            [
                Found(
                    point_id=str(p.id),
                    payload=p.payload or {},
                    score=p.score,
                    dense=_dense_of(p.vector),
                )
                for p in response.points
            ]
            for response in responses
        ]

    def wait_durable(self) -> None:
        """Every write already passed `wait=True`."""

    def maintain(self) -> None:
        """The server runs its own optimizers."""

    def readiness(self) -> str | None:
        probe = qm.PointStruct(
            id=PROBE_POINT_ID,
            vector={DENSE: [1.0] + [0.0] * (self._dim - 1)},
            payload={TENANT_KEY: PROBE_TENANT},
        )
        try:
            _call(
                "take a write",
                lambda: self._client.upsert(self._collection, points=[probe], wait=True),
            )
        except StoreUnavailable as exc:
            return exc.message
        return None

    def close(self) -> None:
        self._client.close()

    def _request(self, tenant: str, spec: SearchSpec) -> qm.QueryRequest:
        flt = to_qdrant_filter(self.scoped(tenant, spec.where))
        params = qm.SearchParams(hnsw_ef=spec.hnsw_ef) if spec.hnsw_ef else None

        def prefetch(
            stage: tuple[Any, str | None], prefetches: list[qm.Prefetch] | None = None
        ) -> qm.Prefetch:
            query, using = stage
            return qm.Prefetch(
                prefetch=prefetches,
                query=query,
                using=using,
                filter=flt,
                params=params,
                limit=spec.candidates,
            )

        # A stage is (query, named vector it scores with); None for fusion and formulas.
        legs: list[tuple[Any, str | None]] = []
        if spec.dense is not None:
            legs.append((qm.NearestQuery(nearest=spec.dense), DENSE))
        if spec.sparse is not None:
            sparse = qm.SparseVector(indices=spec.sparse.indices, values=spec.sparse.values)
            legs.append((qm.NearestQuery(nearest=sparse), SPARSE))
        if not legs:
            raise ValueError("a search needs a dense or a sparse query vector")

        stage = legs[0]
        prefetches: list[qm.Prefetch] | None = None
        if len(legs) == 2:
            stage, prefetches = (
                (qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)), None),
                [prefetch(leg) for leg in legs],
            )
        if spec.recency_half_life_s is not None:
            decay = qm.ExpDecayExpression(
                exp_decay=qm.DecayParamsExpression(
                    x=spec.recency_key,
                    target=spec.now,
                    scale=spec.recency_half_life_s,
                    midpoint=0.5,
                )
            )
            formula = qm.FormulaQuery(
                formula=qm.MultExpression(mult=["$score", decay]),
                defaults={spec.recency_key: spec.now},
            )
            stage, prefetches = (formula, None), [prefetch(stage, prefetches)]
        if spec.mmr is not None:
            mmr = qm.NearestQuery(
                nearest=spec.mmr.vector,
                mmr=qm.Mmr(diversity=1.0 - spec.mmr.lambda_, candidates_limit=spec.candidates),
            )
            stage, prefetches = (mmr, DENSE), [prefetch(stage, prefetches)]
        query, using = stage
        return qm.QueryRequest(
            prefetch=prefetches,
            query=query,
            using=using,
            filter=flt,
            params=params,
            limit=spec.limit,
            with_payload=True,
            with_vector=[DENSE] if spec.with_dense else False,
        )
