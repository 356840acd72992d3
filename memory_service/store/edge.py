"""Embedded backend: a Qdrant Edge shard inside this process (`MEMQ_DATA_DIR/qdrant`).

Only one process may own a shard, so opening takes an exclusive `flock` on a lock file
next to it and fails fast when another memory service already holds it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import IO, Any

import qdrant_edge as qe

from memory_service.core.errors import StoreUnavailable
from memory_service.store.base import (
    DENSE,
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
)
from memory_service.store.schema import FLOAT_FIELDS, KEYWORD_FIELDS, TENANT_KEY

RRF_K = 60


def to_edge_filter(where: Where) -> qe.Filter:
    return qe.Filter(
        must=[_condition(c) for c in where.must] or None,
        should=[_condition(c) for c in where.should] or None,
        must_not=[_condition(c) for c in where.must_not] or None,
    )


def _condition(c: Condition) -> Any:
    if isinstance(c, Where):
        return to_edge_filter(c)
    if isinstance(c, Match):
        return qe.FieldCondition(c.key, match=qe.MatchValue(c.value))
    if isinstance(c, MatchAny):
        return qe.FieldCondition(c.key, match=qe.MatchAny(c.values))
    if isinstance(c, Range):
        return qe.FieldCondition(c.key, range=qe.RangeFloat(gte=c.gte, gt=c.gt, lte=c.lte, lt=c.lt))
    if isinstance(c, HasId):
        return qe.HasIdCondition(set(c.point_ids))
    raise TypeError(f"unknown condition {c!r}")


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):
        dense = vector.get(DENSE)
        return list(dense) if dense is not None else None
    return None


class EdgeStore(VectorStore):
    backend = "edge"

    def __init__(self, path: Path, dim: int, *, flush_on_write: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._acquire_ownership(path.with_name(path.name + ".lock"))
        self._flush_on_write = flush_on_write
        self._write_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._applied = 0
        self._flushed = 0
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        if path.exists() and any(path.iterdir()):
            self._shard = qe.EdgeShard.load(str(path), config)
        else:
            self._shard = qe.EdgeShard.create(str(path), config)
        self._ensure_indexes()

    @staticmethod
    def _acquire_ownership(lock_path: Path) -> IO[str]:
        handle = lock_path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreUnavailable(
                f"another process owns the Qdrant Edge shard at {lock_path.parent}; stop it or "
                "point MEMQ_DATA_DIR elsewhere"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _ensure_indexes(self) -> None:
        existing = self._shard.info().payload_schema
        wanted: dict[str, Any] = {TENANT_KEY: qe.KeywordIndexParams(is_tenant=True)}
        wanted.update({k: qe.PayloadSchemaType.Keyword for k in KEYWORD_FIELDS})
        wanted.update({k: qe.PayloadSchemaType.Float for k in FLOAT_FIELDS})
        for key, schema in wanted.items():
            if key not in existing:
                self._shard.update(qe.UpdateOperation.create_field_index(key, schema))
        self._shard.flush()

    def _apply(self, operation: qe.UpdateOperation) -> None:
        with self._write_lock:
            self._shard.update(operation)
            self._applied += 1

    def wait_durable(self) -> None:
        # Without flush_on_write, acknowledgement relies on the WAL (survives a process kill,
        # not a power cut) and housekeeping flushes periodically.
        if self._flush_on_write:
            self._flush_pending()

    def _flush_pending(self) -> None:
        # Group commit: a flush takes 0.1-0.4 s of fsyncs here, so writers queue on one lock
        # and a single flush covers every update applied before it started.
        wanted = self._applied
        with self._flush_lock:
            if self._flushed >= wanted:
                return
            covered = self._applied
            self._shard.flush()
            self._flushed = covered

    def upsert(self, tenant: str, points: list[StoredPoint]) -> None:
        edge_points = []
        for p in points:
            if p.payload.get(TENANT_KEY) != tenant:
                raise ValueError("point payload tenant differs from the caller's tenant")
            vector: dict[str, Any] = {
                DENSE: p.dense,
                SPARSE: qe.SparseVector(p.sparse.indices, p.sparse.values),
            }
            edge_points.append(qe.Point(p.point_id, vector, p.payload))
        self._apply(qe.UpdateOperation.upsert_points(edge_points))

    def scroll(
        self,
        tenant: str,
        where: Where | None,
        limit: int,
        cursor: str | None = None,
        with_dense: bool = False,
    ) -> tuple[list[Found], str | None]:
        records, next_offset = self._shard.scroll(
            qe.ScrollRequest(
                offset=cursor,
                limit=limit,
                filter=to_edge_filter(self.scoped(tenant, where)),
                with_payload=True,
                with_vector=[DENSE] if with_dense else False,
            )
        )
        found = [
            Found(point_id=str(r.id), payload=r.payload or {}, dense=_dense_of(r.vector))
            for r in records
        ]
        return found, None if next_offset is None else str(next_offset)

    def count(self, tenant: str, where: Where | None) -> int:
        return self._shard.count(
            qe.CountRequest(exact=True, filter=to_edge_filter(self.scoped(tenant, where)))
        )

    def delete(self, tenant: str, where: Where) -> int:
        edge_filter = to_edge_filter(self.scoped(tenant, where))
        with self._write_lock:
            n = self._shard.count(qe.CountRequest(exact=True, filter=edge_filter))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter))
                self._applied += 1
        return n

    def delete_expired(self, now: float) -> int:
        expired = qe.Filter(must=[qe.FieldCondition("expires_ts", range=qe.RangeFloat(lte=now))])
        with self._write_lock:
            n = self._shard.count(qe.CountRequest(exact=True, filter=expired))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(expired))
                self._applied += 1
        return n

    def search(self, tenant: str, spec: SearchSpec) -> list[Found]:
        return self._to_found(self._shard.query(self._request(tenant, spec)))

    def search_many(self, tenant: str, specs: list[SearchSpec]) -> list[list[Found]]:
        if not specs:
            return []
        batch = qe.QueryBatchRequest([self._request(tenant, s) for s in specs])
        return [self._to_found(r) for r in self._shard.query_batch(batch)]

    def maintain(self) -> None:
        # Edge runs segment optimizers (HNSW building, vacuum) only when asked to.
        self._shard.optimize()
        self._flush_pending()

    def close(self) -> None:
        with self._write_lock:
            self._shard.flush()
            self._shard.close()
        self._lock_file.close()

    @staticmethod
    def _to_found(points: list[qe.ScoredPoint]) -> list[Found]:
        return [
            Found(
                point_id=str(p.id),
                payload=p.payload or {},
                score=p.score,
                dense=_dense_of(p.vector),
            )
            for p in points
        ]

    def _request(self, tenant: str, spec: SearchSpec) -> qe.QueryRequest:
        edge_filter = to_edge_filter(self.scoped(tenant, spec.where))
        params = qe.SearchParams(hnsw_ef=spec.hnsw_ef) if spec.hnsw_ef else None

        def prefetch(query: Any, prefetches: list[qe.Prefetch] | None = None) -> qe.Prefetch:
            return qe.Prefetch(
                limit=spec.candidates,
                query=query,
                prefetches=prefetches,
                filter=edge_filter,
                params=params,
            )

        legs: list[Any] = []
        if spec.dense is not None:
            legs.append(qe.Query.Nearest(spec.dense, using=DENSE))
        if spec.sparse is not None:
            sparse = qe.SparseVector(spec.sparse.indices, spec.sparse.values)
            legs.append(qe.Query.Nearest(sparse, using=SPARSE))
        if not legs:
            raise ValueError("a search needs a dense or a sparse query vector")

        query: Any = legs[0]
        prefetches: list[qe.Prefetch] | None = None
        if len(legs) == 2:
            query, prefetches = qe.Fusion.Rrf(k=RRF_K), [prefetch(leg) for leg in legs]
        if spec.recency_half_life_s is not None:
            decay = qe.Expression.Decay(
                qe.DecayKind.Exp,
                qe.Expression.Variable(spec.recency_key),
                target=qe.Expression.Constant(spec.now),
                midpoint=0.5,
                scale=spec.recency_half_life_s,
            )
            formula = qe.Formula(
                qe.Expression.Mult([qe.Expression.Variable("$score"), decay]),
                defaults={spec.recency_key: spec.now},
            )
            query, prefetches = formula, [prefetch(query, prefetches)]
        if spec.mmr is not None:
            mmr = qe.Mmr(spec.mmr.vector, spec.mmr.lambda_, spec.candidates, using=DENSE)
            query, prefetches = mmr, [prefetch(query, prefetches)]
        return qe.QueryRequest(
            limit=spec.limit,
            query=query,
            prefetches=prefetches,
            filter=edge_filter,
            params=params,
            with_payload=True,
            with_vector=[DENSE] if spec.with_dense else False,
        )
