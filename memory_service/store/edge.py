"""Embedded backend: a Qdrant Edge shard inside this process (`MEMQ_DATA_DIR/qdrant`).

Only one process may own a shard, so opening takes an exclusive `flock` on a lock file
next to it and fails fast when another memory service already holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import qdrant_edge as qe

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
WAL_DIR = "wal"
"""Where Qdrant Edge keeps its write-ahead log inside the shard directory."""

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    """Wedge protection: after one failed update Qdrant Edge refuses every later one ("Not
    recovered from previous error") until the shard is reopened. So every engine call is
    wrapped: a failed write is answered with `StoreUnavailable` (503, never acknowledged);
    the shard is probed with a write and, if it no longer takes writes, reopened from disk.
    When even that fails, writes fail fast with the reason and `readiness()` reports it."""

    backend = "edge"

    def __init__(self, path: Path, dim: int, *, flush_on_write: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._acquire_ownership(path.with_name(path.name + ".lock"))
        self._path = path
        self._dim = dim
        self._flush_on_write = flush_on_write
        self._write_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._applied = 0
        self._flushed = 0
        self._synced = 0
        self._broken: str | None = None
        self._config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        try:
            self._shard = self._open()
        except Exception as exc:
            self._lock_file.close()
            raise StoreUnavailable(
                f"cannot open the Qdrant Edge shard at {path}: {exc}; restore the namespace "
                "exports into an empty MEMQ_DATA_DIR (see docs/memory.md)"
            ) from exc
        if not (path / WAL_DIR).is_dir():
            self.close()
            raise StoreUnavailable(
                f"the Qdrant Edge shard at {path} has no {WAL_DIR}/ directory; this qdrant-edge "
                "version lays out its files differently from the one memq was built for"
            )

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

    def _open(self) -> qe.EdgeShard:
        if self._path.exists() and any(self._path.iterdir()):
            shard = qe.EdgeShard.load(str(self._path), self._config)
        else:
            shard = qe.EdgeShard.create(str(self._path), self._config)
        existing = shard.info().payload_schema
        wanted: dict[str, Any] = {TENANT_KEY: qe.KeywordIndexParams(is_tenant=True)}
        wanted.update({k: qe.PayloadSchemaType.Keyword for k in KEYWORD_FIELDS})
        wanted.update({k: qe.PayloadSchemaType.Float for k in FLOAT_FIELDS})
        for key, schema in wanted.items():
            if key not in existing:
                shard.update(qe.UpdateOperation.create_field_index(key, schema))
        shard.flush()
        return shard

    # ------------------------------------------------------------------ wedge protection

    def _write(self, what: str, operation: Callable[[], T]) -> T:
        """Run one engine write under the write lock; a failure never leaves the shard
        wedged for the next caller."""
        with self._write_lock:
            if self._broken is not None:
                self._reopen_or_raise()
            try:
                return operation()
            except Exception as exc:
                raise self._write_failed(what, exc) from exc

    def _read(self, what: str, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except Exception as exc:
            log.warning("Qdrant Edge %s failed: %s", what, exc)
            if self._broken is not None:
                raise StoreUnavailable(
                    f"the store failed to {what}: it refuses writes ({self._broken}) and its "
                    "shard could not be reopened; restart the memory service, and if it cannot "
                    "start, restore the namespace exports into an empty MEMQ_DATA_DIR"
                ) from exc
            raise StoreUnavailable(f"the store failed to {what}: {exc}") from exc

    def _write_failed(self, what: str, exc: Exception) -> StoreUnavailable:
        """Called under the write lock after the engine refused `what`."""
        log.error("Qdrant Edge %s failed: %s", what, exc)
        reason = f"the store failed to {what}: {exc}"
        try:
            self._probe()
        except Exception:
            self._broken = reason
        else:
            return StoreUnavailable(f"{reason}; nothing was acknowledged, retry")
        log.error("the Qdrant Edge shard no longer takes writes; reopening it from disk")
        try:
            self._reopen_or_raise()
        except StoreUnavailable as broken:
            return broken
        return StoreUnavailable(f"{reason}; the shard was reopened from disk, retry")

    def _reopen_or_raise(self) -> None:
        """Replace a shard that refuses writes by a fresh load of its files (the WAL keeps
        every applied update); leaves the store broken, and raises, when that fails."""
        with contextlib.suppress(Exception):
            self._shard.close()
        try:
            self._shard = self._open()
            self._probe()
        except Exception as exc:
            log.error("reopening the Qdrant Edge shard failed: %s", exc)
            raise StoreUnavailable(
                f"the store refuses writes ({self._broken}) and reopening the shard at "
                f"{self._path} failed: {exc}; restart the memory service, and if it cannot "
                "start, restore the namespace exports into an empty MEMQ_DATA_DIR"
            ) from exc
        log.warning("Qdrant Edge shard reopened; it takes writes again")
        self._broken = None

    def _probe(self) -> None:
        """One tiny write (the same point every time) that fails when the shard is wedged."""
        vector: dict[str, Any] = {
            DENSE: [1.0] + [0.0] * (self._dim - 1),
            SPARSE: qe.SparseVector([], []),
        }
        probe = qe.Point(PROBE_POINT_ID, vector, {TENANT_KEY: PROBE_TENANT})
        self._shard.update(qe.UpdateOperation.upsert_points([probe]))

    def readiness(self) -> str | None:
        try:
            self._write("take a write", self._probe)
            self._read("count", lambda: self._shard.count(qe.CountRequest(exact=False)))
        except StoreUnavailable as exc:
            return exc.message
        return None

    # ------------------------------------------------------------------------ interface

    def _apply(self, what: str, operation: qe.UpdateOperation) -> None:
        def run() -> None:
            self._shard.update(operation)
            self._applied += 1

        self._write(what, run)

    def wait_durable(self) -> None:
        # Without flush_on_write, acknowledgement relies on the WAL append (survives a process
        # kill, not a power cut) and housekeeping flushes periodically.
        if self._flush_on_write:
            self._sync_wal()

    def _sync_wal(self) -> None:
        """Group commit on the write-ahead log. Every update is appended to the WAL before it
        is applied, and loading a shard replays the WAL past what its segments hold, so once
        the WAL's files are fsynced an update survives a power cut. That is one fsync per WAL
        file (~30 ms here) with the GIL released, where `EdgeShard.flush()` writes out every
        segment: 0.1-0.4 s of fsyncs holding the GIL, which stalls every other request and the
        event loop. Segments are still flushed by `maintain()` and `close()`."""
        wanted = self._applied
        with self._sync_lock:
            if self._synced >= wanted:
                return
            # Under the write lock no update appends or rotates WAL files meanwhile.
            with self._write_lock:
                covered = self._applied
                try:
                    _fsync_directory(self._path / WAL_DIR)
                except OSError as exc:
                    raise self._write_failed("sync the write-ahead log to disk", exc) from exc
            self._synced = covered

    def _flush_pending(self) -> None:
        # Group commit: writers queue on one lock and a single flush covers every update
        # applied before it started.
        wanted = self._applied
        with self._flush_lock:
            if self._flushed >= wanted:
                return
            covered = self._applied
            try:
                self._shard.flush()
            except Exception as exc:
                with self._write_lock:
                    raise self._write_failed("flush to disk", exc) from exc
            self._flushed = covered

    def upsert(self, tenant: str, points: list[StoredPoint]) -> None:
        edge_points = []
        for p in points:
            if p.payload.get(TENANT_KEY) != tenant:
                raise ValueError("point payload tenant differs from the caller's tenant")
            check_payload(p.payload)
            vector: dict[str, Any] = {
                DENSE: p.dense,
                SPARSE: qe.SparseVector(p.sparse.indices, p.sparse.values),
            }
            edge_points.append(qe.Point(p.point_id, vector, p.payload))
        self._apply("store points", qe.UpdateOperation.upsert_points(edge_points))

    def scroll(
        self,
        tenant: str,
        where: Where | None,
        limit: int,
        cursor: str | None = None,
        with_dense: bool = False,
    ) -> tuple[list[Found], str | None]:
        request = qe.ScrollRequest(
            offset=cursor,
            limit=limit,
            filter=to_edge_filter(self.scoped(tenant, where)),
            with_payload=True,
            with_vector=[DENSE] if with_dense else False,
        )
        records, next_offset = self._read("read points", lambda: self._shard.scroll(request))
        found = [
            Found(point_id=str(r.id), payload=r.payload or {}, dense=_dense_of(r.vector))
            for r in records
        ]
        return found, None if next_offset is None else str(next_offset)

    def count(self, tenant: str, where: Where | None) -> int:
        request = qe.CountRequest(exact=True, filter=to_edge_filter(self.scoped(tenant, where)))
        return self._read("count points", lambda: self._shard.count(request))

    def delete(self, tenant: str, where: Where) -> int:
        return self._delete_matching(to_edge_filter(self.scoped(tenant, where)))

    def delete_expired(self, now: float) -> int:
        expired = qe.Filter(must=[qe.FieldCondition("expires_ts", range=qe.RangeFloat(lte=now))])
        return self._delete_matching(expired)

    def _delete_matching(self, edge_filter: qe.Filter) -> int:
        def run() -> int:
            n = self._shard.count(qe.CountRequest(exact=True, filter=edge_filter))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter))
                self._applied += 1
            return n

        return self._write("delete points", run)

    def search(self, tenant: str, spec: SearchSpec) -> list[Found]:
        request = self._request(tenant, spec)
        return self._to_found(self._read("search", lambda: self._shard.query(request)))

    def search_many(self, tenant: str, specs: list[SearchSpec]) -> list[list[Found]]:
        if not specs:
            return []
        # Specs often share one `where` (a batch's dedup lookups): convert it once.
        filters: dict[int, qe.Filter] = {}
        batch = qe.QueryBatchRequest([self._request(tenant, s, filters) for s in specs])
        results = self._read("search", lambda: self._shard.query_batch(batch))
        return [self._to_found(r) for r in results]

    def maintain(self) -> None:
        # Edge runs segment optimizers (HNSW building, vacuum) only when asked to; they run
        # beside writers, so only a failure takes the write lock.
        try:
            self._shard.optimize()
        except Exception as exc:
            with self._write_lock:
                raise self._write_failed("optimize segments", exc) from exc
        self._flush_pending()

    def close(self) -> None:
        with self._write_lock:
            try:
                self._shard.flush()
                self._shard.close()
            except Exception as exc:  # a broken shard: nothing more to save
                log.error("closing the Qdrant Edge shard failed: %s", exc)
            finally:
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

    def _request(
        self, tenant: str, spec: SearchSpec, filters: dict[int, qe.Filter] | None = None
    ) -> qe.QueryRequest:
        key = id(spec.where)
        edge_filter = filters.get(key) if filters is not None else None
        if edge_filter is None:
            edge_filter = to_edge_filter(self.scoped(tenant, spec.where))
            if filters is not None:
                filters[key] = edge_filter
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


def _fsync_directory(directory: Path) -> None:
    """fsync every file in `directory`, then the directory itself (new and renamed files)."""
    for entry in os.scandir(directory):
        if not entry.is_file():
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # removed after its entries reached the flushed segments
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
