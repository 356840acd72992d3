"""The memory service's logic: writes with dedup and versioning, search, TTL, export/import.

Writes are serialized by one lock so that "is this a duplicate?" and "store it" are atomic;
embeddings are computed before taking it so slow model calls never block other writers.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from pydantic import ValidationError

from memory_service.core.config import KEYWORD_WEIGHT
from memory_service.core.errors import InvalidRequest, MemoryConflict, MemoryNotFound
from memory_service.services import fusion, supersession
from memory_service.services.chunking import chunk_spans
from memory_service.services.embeddings import Embedder, FloatMatrix
from memory_service.services.records import (
    alive,
    content_hash,
    from_payload,
    namespace_where,
    point_id,
    to_payload,
    utcnow,
)
from memory_service.store.base import (
    Found,
    HasId,
    Match,
    MatchAny,
    MmrSpec,
    SearchSpec,
    SparseVec,
    StoredPoint,
    VectorStore,
    Where,
)
from memq.contracts import (
    MAX_HISTORY_VERSIONS,
    DocumentIngest,
    DocumentIngestResponse,
    MemoryCreate,
    MemoryFilter,
    MemoryHistoryResponse,
    MemoryHit,
    MemoryKind,
    MemoryListResponse,
    MemoryPublic,
    MemoryRecord,
    MemorySearchRequest,
    MemoryUpdate,
    MemoryVersion,
    SearchMode,
    Supersession,
    SupersessionMethod,
    has_visible_text,
)

EXPORT_PAGE = 256


def _public(record: MemoryRecord, *, deduplicated: bool = False) -> MemoryPublic:
    # The record is already validated; re-validating every field costs ~20% of batch ingest.
    fields = {name: getattr(record, name) for name in MemoryPublic.model_fields}
    return MemoryPublic.model_construct(**{**fields, "deduplicated": deduplicated})


def _version_of(record: MemoryRecord) -> MemoryVersion:
    return MemoryVersion(
        version=record.version,
        text=record.text,
        kind=record.kind,
        metadata=record.metadata,
        source=record.source,
        content_hash=record.content_hash,
        updated_at=record.updated_at,
    )


@dataclass
class MemoryService:
    store: VectorStore
    embedder: Embedder
    dedup_threshold: float = 0.95
    hnsw_ef: int | None = None
    keyword_weight: float = KEYWORD_WEIGHT
    clock: Callable[[], datetime] = utcnow
    _write_lock: threading.Lock = field(default_factory=threading.Lock)

    # ----------------------------------------------------------------------------- writes

    def add(self, tenant: str, item: MemoryCreate) -> MemoryPublic:
        return self.add_many(tenant, [item])[0]

    def add_many(
        self, tenant: str, items: list[MemoryCreate], *, near_dedup: bool = True
    ) -> list[MemoryPublic]:
        """Store `items` (one embedding batch); each result is either the new memory or the
        existing one it duplicates (`deduplicated=True`): same content hash in the namespace
        or, with `near_dedup`, cosine at or above the threshold."""
        texts = [i.text for i in items]
        vectors = self.embedder.embed(texts)
        # Everything that depends on the text alone is computed before taking the lock.
        dense = vectors.tolist()
        sparse = [self.embedder.sparse_document(t) for t in texts]
        hashes = [content_hash(t) for t in texts]
        with self._write_lock:
            now = self.clock()
            explicit = self._explicit_targets(tenant, items, now)
            exact = self._existing_by_hash(tenant, items, hashes, now)
            contradicted = self._contradicted(tenant, items, dense, hashes, now)
            near = (
                self._nearest_existing(tenant, items, dense, now)
                if near_dedup
                else [None] * len(items)
            )
            batch_twins = _BatchTwins(vectors if near_dedup else None, self.dedup_threshold)
            results: list[MemoryPublic] = []
            new_points: list[StoredPoint] = []
            replaced: dict[str, str] = {}
            for i, item in enumerate(items):
                near_twin = near[i]
                if near_twin is not None and near_twin.id in {c.record.id for c in contradicted[i]}:
                    near_twin = None  # "lives in Gdansk" -> "lives in Krakow" is news
                twin = (
                    None
                    if item.supersedes
                    else exact.get((item.namespace, hashes[i]))
                    or near_twin
                    or batch_twins.find(item.namespace, hashes[i], i)
                )
                if twin is not None:
                    results.append(_public(twin, deduplicated=True))
                    continue
                memory_id = str(uuid.uuid4())
                valid_from = item.valid_from or now
                targets = [
                    _Replaced(old, vector, SupersessionMethod.explicit, "named in `supersedes`")
                    for old, vector in explicit[i]
                ] + contradicted[i]
                targets = [t for t in targets if t.record.id not in replaced]
                # Every field is either validated by MemoryCreate or made here: validating the
                # record again would cost ~10% of a batch's time outside the embedder.
                record = MemoryRecord.model_construct(
                    id=memory_id,
                    tenant=tenant,
                    namespace=item.namespace,
                    kind=item.kind,
                    text=item.text,
                    metadata=item.metadata,
                    source=item.source,
                    created_at=now,
                    updated_at=now,
                    expires_at=now + timedelta(seconds=item.ttl_seconds)
                    if item.ttl_seconds
                    else None,
                    version=1,
                    content_hash=hashes[i],
                    history=[],
                    deduplicated=False,
                    valid_from=valid_from,
                    valid_to=None,
                    supersedes=[t.record.id for t in targets],
                    superseded_by=None,
                    supersession=None,
                )
                for target in targets:
                    replaced[target.record.id] = memory_id
                    ended = _superseded(target, record, now)
                    new_points.append(self._point(ended, target.vector))
                batch_twins.add(record, i)
                new_points.append(self._point(record, dense[i], sparse[i]))
                results.append(_public(record))
            if new_points:
                self.store.upsert(tenant, new_points)
        self.store.wait_durable()
        return results

    def restore(self, tenant: str, memory_id: str) -> MemoryPublic:
        """Make a superseded memory current again (undo a supersession, e.g. a wrong
        automatic one); the memory that replaced it stays current and forgets the link."""
        with self._write_lock:
            now = self.clock()
            record, vector = self._get_with_vector(tenant, memory_id, now)
            if record.superseded_by is None:
                raise MemoryConflict(
                    f"memory {memory_id!r} is current; there is nothing to restore"
                )
            points = [
                self._point(
                    record.model_copy(
                        update={"valid_to": None, "superseded_by": None, "supersession": None}
                    ),
                    vector,
                )
            ]
            try:
                by, by_vector = self._get_with_vector(tenant, record.superseded_by, now)
            except MemoryNotFound:
                pass
            else:
                kept = [m for m in by.supersedes if m != memory_id]
                points.append(self._point(by.model_copy(update={"supersedes": kept}), by_vector))
            self.store.upsert(tenant, points)
            restored = from_payload(points[0].payload)
        self.store.wait_durable()
        return _public(restored)

    def ingest_document(self, tenant: str, doc: DocumentIngest) -> DocumentIngestResponse:
        document_id = doc.document_id or str(uuid.uuid4())
        spans = [
            (start, end)
            for start, end in chunk_spans(doc.text, doc.chunk_chars, doc.overlap_chars)
            if has_visible_text(doc.text[start:end])
        ]
        items = [
            MemoryCreate(
                namespace=doc.namespace,
                text=doc.text[start:end],
                kind=MemoryKind.document_chunk,
                metadata={
                    **doc.metadata,
                    "document_id": document_id,
                    "chunk_index": index,
                    "chunk_count": len(spans),
                    "char_start": start,
                    "char_end": end,
                },
                source=doc.source or document_id,
                ttl_seconds=doc.ttl_seconds,
            )
            for index, (start, end) in enumerate(spans)
        ]
        # Neighbouring chunks of one document are often alike; collapsing them would lose
        # positions, so documents only dedup exactly (re-ingesting is idempotent).
        chunks = self.add_many(tenant, items, near_dedup=False)
        return DocumentIngestResponse(document_id=document_id, chunks=chunks)

    def put(self, tenant: str, memory_id: str, item: MemoryCreate) -> tuple[MemoryPublic, bool]:
        """Create the memory under the caller's id, or make `item` its current version.

        Idempotent (what chat write-back relies on): putting the same content again changes
        nothing. No dedup against other memories: the id is the identity. Returns the memory
        and whether it was created.
        """
        vector = self.embedder.embed([item.text])[0]
        with self._write_lock:
            now = self.clock()
            try:
                current: MemoryRecord | None = self._get_with_vector(tenant, memory_id, now)[0]
            except MemoryNotFound:
                current = None
            expires = now + timedelta(seconds=item.ttl_seconds) if item.ttl_seconds else None
            if current is None:
                record = MemoryRecord(
                    id=memory_id,
                    tenant=tenant,
                    namespace=item.namespace,
                    kind=item.kind,
                    text=item.text,
                    metadata=item.metadata,
                    source=item.source,
                    created_at=now,
                    updated_at=now,
                    expires_at=expires,
                    version=1,
                    content_hash=content_hash(item.text),
                )
                self.store.upsert(tenant, [self._point(record, vector)])
                created = True
            else:
                if current.namespace != item.namespace:
                    raise InvalidRequest(
                        f"memory {memory_id!r} belongs to namespace {current.namespace!r}; a PUT "
                        "cannot move it (delete it and create it in the other namespace)"
                    )
                same = (
                    current.text == item.text
                    and current.kind == item.kind
                    and current.metadata == item.metadata
                    and current.source == item.source
                )
                if same:
                    return _public(current), False
                if len(current.history) >= MAX_HISTORY_VERSIONS:
                    raise InvalidRequest(
                        f"memory {memory_id!r} already keeps {MAX_HISTORY_VERSIONS} earlier "
                        "versions, the most one memory holds"
                    )
                record = current.model_copy(
                    update={
                        "kind": item.kind,
                        "text": item.text,
                        "metadata": item.metadata,
                        "source": item.source,
                        "content_hash": content_hash(item.text),
                        "expires_at": expires if item.ttl_seconds else current.expires_at,
                        "updated_at": now,
                        "version": current.version + 1,
                        "history": [*current.history, _version_of(current)],
                    }
                )
                self.store.upsert(tenant, [self._point(record, vector)])
                created = False
        self.store.wait_durable()
        return _public(record), created

    def update(self, tenant: str, memory_id: str, change: MemoryUpdate) -> MemoryPublic:
        """New version of a memory; the previous one is appended to its history, never lost."""
        new_vector = self.embedder.embed([change.text])[0] if change.text is not None else None
        with self._write_lock:
            now = self.clock()
            current, stored_vector = self._get_with_vector(tenant, memory_id, now)
            if len(current.history) >= MAX_HISTORY_VERSIONS:
                raise InvalidRequest(
                    f"memory {memory_id!r} already keeps {MAX_HISTORY_VERSIONS} earlier versions, "
                    "the most one memory holds; add a new memory (and delete this one) instead "
                    "of updating it again"
                )
            # Explicit nulls mean "unchanged", except `source`, which may be cleared.
            changes = {
                k: v
                for k, v in change.model_dump(exclude_unset=True, exclude={"ttl_seconds"}).items()
                if v is not None or k == "source"
            }
            if change.text is not None:
                changes["content_hash"] = content_hash(change.text)
            if change.ttl_seconds:
                changes["expires_at"] = now + timedelta(seconds=change.ttl_seconds)
            updated = current.model_copy(
                update={
                    **changes,
                    "updated_at": now,
                    "version": current.version + 1,
                    "history": [*current.history, _version_of(current)],
                }
            )
            vector = new_vector if new_vector is not None else stored_vector
            self.store.upsert(tenant, [self._point(updated, vector)])
        self.store.wait_durable()
        return _public(updated)

    def delete(self, tenant: str, memory_id: str) -> None:
        with self._write_lock:
            deleted = self.store.delete(tenant, Where(must=[HasId([point_id(tenant, memory_id)])]))
        if not deleted:
            raise MemoryNotFound(memory_id)
        self.store.wait_durable()

    def forget(self, tenant: str, namespace: str) -> int:
        with self._write_lock:
            deleted = self.store.delete(tenant, Where(must=[Match("namespace", namespace)]))
        self.store.wait_durable()
        return deleted

    def sweep_expired(self) -> int:
        with self._write_lock:
            deleted = self.store.delete_expired(self.clock().timestamp())
        self.store.wait_durable()
        return deleted

    # ------------------------------------------------------------------------------ reads

    def get(self, tenant: str, memory_id: str) -> MemoryPublic:
        return _public(self._get_record(tenant, memory_id))

    def history(self, tenant: str, memory_id: str) -> MemoryHistoryResponse:
        record = self._get_record(tenant, memory_id)
        return MemoryHistoryResponse(id=record.id, versions=[*record.history, _version_of(record)])

    def list_memories(
        self,
        tenant: str,
        namespace: str,
        *,
        limit: int,
        cursor: str | None,
        kinds: list[MemoryKind] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        metadata: MemoryFilter | None = None,
    ) -> MemoryListResponse:
        where = namespace_where(
            namespace,
            self.clock(),
            kinds=kinds,
            created_after=created_after,
            created_before=created_before,
            metadata=metadata,
        )
        found, next_cursor = self.store.scroll(tenant, where, limit, _decode_cursor(cursor))
        items = [_public(from_payload(f.payload)) for f in found]
        return MemoryListResponse(items=items, next_cursor=next_cursor)

    def search(self, tenant: str, req: MemorySearchRequest) -> list[MemoryHit]:
        now = self.clock()
        sparse = self.embedder.sparse_query(req.query) if req.mode != SearchMode.dense else None
        if sparse is not None and not sparse.indices:
            if req.mode == SearchMode.keyword:
                return []  # only stopwords: nothing for BM25 to match
            sparse = None
        if req.mode == SearchMode.hybrid and sparse is not None:
            return self._hybrid_search(tenant, req, sparse, now)
        needs_dense = (
            req.mode != SearchMode.keyword
            or req.min_score is not None
            or req.mmr_lambda is not None
        )
        query_vector = self.embedder.embed([req.query])[0] if needs_dense else None
        dense_list = query_vector.tolist() if query_vector is not None else None
        # Cosine is the ranking score only in a plain dense search; otherwise it is computed
        # from the returned vectors so min_score means the same thing in every mode.
        plain_dense = sparse is None and req.recency_half_life_s is None and req.mmr_lambda is None
        overfetch = req.min_score is not None and not plain_dense
        spec = SearchSpec(
            limit=min(req.top_k * 3, 300) if overfetch else req.top_k,
            dense=dense_list if req.mode != SearchMode.keyword else None,
            sparse=sparse,
            where=_search_where(req, now),
            candidates=max(100, req.top_k * 4),
            mmr=MmrSpec(dense_list, req.mmr_lambda)
            if req.mmr_lambda is not None and dense_list is not None
            else None,
            recency_half_life_s=req.recency_half_life_s,
            now=now.timestamp(),
            with_dense=query_vector is not None and not plain_dense,
            hnsw_ef=self.hnsw_ef,
        )
        hits: list[MemoryHit] = []
        for f in self.store.search(tenant, spec):
            if plain_dense:
                similarity: float | None = f.score
            elif query_vector is not None and f.dense is not None:
                similarity = float(np.dot(query_vector, np.asarray(f.dense, dtype=np.float32)))
            else:
                similarity = None
            if req.min_score is not None and (similarity is None or similarity < req.min_score):
                continue
            hits.append(_hit(f, f.score, similarity))
            if len(hits) == req.top_k:
                break
        return hits

    def _hybrid_search(
        self, tenant: str, req: MemorySearchRequest, sparse: SparseVec, now: datetime
    ) -> list[MemoryHit]:
        """Both legs as plain searches (one batch), ranked here (`fusion`): the same order
        whichever backend answered."""
        query_vector = self.embedder.embed([req.query])[0]
        where = _search_where(req, now)
        pool = max(100, req.top_k * 4)
        with_vectors = req.mmr_lambda is not None
        dense_leg, keyword_leg = self.store.search_many(
            tenant,
            [
                SearchSpec(
                    limit=pool,
                    dense=query_vector.tolist(),
                    where=where,
                    with_dense=with_vectors,
                    hnsw_ef=self.hnsw_ef,
                ),
                SearchSpec(limit=pool, sparse=sparse, where=where, with_dense=True),
            ],
        )
        found: dict[str, Found] = {}
        similarity: dict[str, float] = {}
        keyword: dict[str, float] = {}
        for f in dense_leg:
            found[f.point_id] = f
            similarity[f.point_id] = f.score
        for f in keyword_leg:
            keyword[f.point_id] = f.score
            if f.point_id not in similarity and f.dense is not None:
                found[f.point_id] = f
                similarity[f.point_id] = float(
                    np.dot(query_vector, np.asarray(f.dense, dtype=np.float32))
                )
        candidates = [
            fusion.Candidate(
                key=key,
                similarity=similarity[key],
                keyword=keyword.get(key, 0.0),
                created_ts=found[key].payload.get("created_ts"),
                vector=found[key].dense,
            )
            for key in found
        ]
        ranked = fusion.rank(
            candidates,
            keyword_weight=self.keyword_weight,
            now=now.timestamp(),
            recency_half_life_s=req.recency_half_life_s,
        )
        if req.mmr_lambda is not None:
            pool_order = [c for c, _ in ranked[:pool]]
            scores = {c.key: s for c, s in ranked}
            order = fusion.mmr_order(query_vector.tolist(), pool_order, req.mmr_lambda, pool)
            ranked = [(pool_order[i], scores[pool_order[i].key]) for i in order]
        hits: list[MemoryHit] = []
        for candidate, score in ranked:
            if req.min_score is not None and candidate.similarity < req.min_score:
                continue
            hits.append(_hit(found[candidate.key], score, candidate.similarity))
            if len(hits) == req.top_k:
                break
        return hits

    # ------------------------------------------------------------------------ export/import

    def export_jsonl(self, tenant: str, namespace: str) -> Iterator[str]:
        """Every live memory of the namespace, history included, one JSON object a line."""
        cursor: str | None = None
        while True:
            where = namespace_where(namespace, self.clock())
            found, cursor = self.store.scroll(tenant, where, EXPORT_PAGE, cursor)
            for f in found:
                yield from_payload(f.payload).model_dump_json() + "\n"
            if cursor is None:
                return

    def import_jsonl(self, tenant: str, namespace: str, lines: list[str]) -> int:
        """Restore exported memories as they were (ids, versions, history, timestamps).
        Every line is validated like a write before anything is stored: one bad line
        rejects the whole import, naming its line number."""
        records = [
            record
            for number, line in enumerate(lines, start=1)
            if line.strip()
            for record in [_import_line(number, line, tenant, namespace)]
        ]
        for start in range(0, len(records), EXPORT_PAGE):
            page = records[start : start + EXPORT_PAGE]
            vectors = self.embedder.embed([r.text for r in page])
            points = [self._point(r, v) for r, v in zip(page, vectors, strict=True)]
            with self._write_lock:
                self.store.upsert(tenant, points)
        self.store.wait_durable()
        return len(records)

    # ---------------------------------------------------------------------------- helpers

    def _point(
        self,
        record: MemoryRecord,
        vector: FloatMatrix | list[float],
        sparse: SparseVec | None = None,
    ) -> StoredPoint:
        dense = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
        return StoredPoint(
            point_id=point_id(record.tenant, record.id),
            dense=dense,
            sparse=sparse if sparse is not None else self.embedder.sparse_document(record.text),
            payload=to_payload(record),
        )

    def _get_record(self, tenant: str, memory_id: str) -> MemoryRecord:
        return self._get_with_vector(tenant, memory_id, self.clock(), with_dense=False)[0]

    def _get_with_vector(
        self, tenant: str, memory_id: str, now: datetime, *, with_dense: bool = True
    ) -> tuple[MemoryRecord, list[float]]:
        where = Where(must=[HasId([point_id(tenant, memory_id)]), alive(now)])
        found, _ = self.store.scroll(tenant, where, 1, with_dense=with_dense)
        if not found:
            raise MemoryNotFound(memory_id)
        return from_payload(found[0].payload), found[0].dense or []

    def _explicit_targets(
        self, tenant: str, items: list[MemoryCreate], now: datetime
    ) -> list[list[tuple[MemoryRecord, list[float]]]]:
        """The current memories each item names in `supersedes`; refuses the whole write
        (nothing stored) when one is unknown, in another namespace or already superseded."""
        found: list[list[tuple[MemoryRecord, list[float]]]] = []
        for item in items:
            targets = []
            for memory_id in item.supersedes or []:
                try:
                    record, vector = self._get_with_vector(tenant, memory_id, now)
                except MemoryNotFound:
                    raise MemoryNotFound(
                        f"`supersedes` names {memory_id!r}, which is not a memory of this "
                        "tenant; nothing was stored"
                    ) from None
                if record.namespace != item.namespace:
                    raise MemoryNotFound(
                        f"`supersedes` names {memory_id!r}, which is not in namespace "
                        f"{item.namespace!r}; a memory supersedes only memories of its own "
                        "namespace (nothing was stored)"
                    )
                if record.superseded_by is not None:
                    raise MemoryConflict(
                        f"`supersedes` names {memory_id!r}, which {record.superseded_by!r} "
                        "already superseded; name the current memory instead (nothing was "
                        "stored)"
                    )
                targets.append((record, vector))
            found.append(targets)
        return found

    def _contradicted(
        self,
        tenant: str,
        items: list[MemoryCreate],
        dense: list[list[float]],
        hashes: list[str],
        now: datetime,
    ) -> list[list[_Replaced]]:
        """For each fact written with `auto_supersede`, the current facts of its namespace it
        contradicts (`supersession.judge` over its nearest neighbours)."""
        asked = [
            i
            for i, item in enumerate(items)
            if item.auto_supersede and item.kind == MemoryKind.fact and not item.supersedes
        ]
        found: list[list[_Replaced]] = [[] for _ in items]
        if not asked:
            return found
        wheres = {
            ns: namespace_where(ns, now, kinds=[MemoryKind.fact], include_superseded=False)
            for ns in {items[i].namespace for i in asked}
        }
        specs = [
            SearchSpec(
                limit=supersession.CANDIDATES,
                dense=dense[i],
                where=wheres[items[i].namespace],
                with_dense=True,
                hnsw_ef=self.hnsw_ef,
            )
            for i in asked
        ]
        for i, hits in zip(asked, self.store.search_many(tenant, specs), strict=True):
            for hit in hits:
                old = from_payload(hit.payload)
                if hit.score < supersession.CUE_SIMILARITY or old.content_hash == hashes[i]:
                    continue
                verdict = supersession.judge(old.text, items[i].text, hit.score)
                if verdict.supersedes:
                    found[i].append(
                        _Replaced(
                            old, hit.dense or [], SupersessionMethod.automatic, verdict.reason
                        )
                    )
        return found

    def _existing_by_hash(
        self, tenant: str, items: list[MemoryCreate], hashes: list[str], now: datetime
    ) -> dict[tuple[str, str], MemoryRecord]:
        by_namespace: dict[str, set[str]] = {}
        for item, h in zip(items, hashes, strict=True):
            by_namespace.setdefault(item.namespace, set()).add(h)
        existing: dict[tuple[str, str], MemoryRecord] = {}
        for namespace, wanted in by_namespace.items():
            alive_in_namespace = namespace_where(namespace, now, include_superseded=False)
            where = Where(must=[*alive_in_namespace.must, MatchAny("content_hash", sorted(wanted))])
            cursor: str | None = None
            while True:
                found, cursor = self.store.scroll(tenant, where, EXPORT_PAGE, cursor)
                for f in found:
                    record = from_payload(f.payload)
                    existing.setdefault((namespace, record.content_hash), record)
                if cursor is None:
                    break
        return existing

    def _nearest_existing(
        self, tenant: str, items: list[MemoryCreate], dense: list[list[float]], now: datetime
    ) -> list[MemoryRecord | None]:
        # One filter object per namespace: the store converts each distinct filter once.
        wheres = {
            ns: namespace_where(ns, now, include_superseded=False)
            for ns in {i.namespace for i in items}
        }
        specs = [
            SearchSpec(limit=1, dense=dense[i], where=wheres[item.namespace], hnsw_ef=self.hnsw_ef)
            for i, item in enumerate(items)
        ]
        nearest: list[MemoryRecord | None] = []
        for found in self.store.search_many(tenant, specs):
            hit = found[0] if found and found[0].score >= self.dedup_threshold else None
            nearest.append(from_payload(hit.payload) if hit else None)
        return nearest


@dataclass(frozen=True)
class _Replaced:
    """A current memory a new one supersedes, with its stored vector (rewritten as is)."""

    record: MemoryRecord
    vector: list[float]
    method: SupersessionMethod
    reason: str


def _superseded(target: _Replaced, by: MemoryRecord, now: datetime) -> MemoryRecord:
    old = target.record
    started = old.valid_from or old.created_at
    ended = max(by.valid_from or now, started)
    return old.model_copy(
        update={
            "valid_to": ended,
            "superseded_by": by.id,
            "supersession": Supersession(
                by=by.id, method=target.method, reason=target.reason[:512], at=now
            ),
        }
    )


class _BatchTwins:
    """Memories accepted earlier in the same batch, to dedup items against each other:
    exact twins always, near twins when vectors are given."""

    def __init__(self, vectors: FloatMatrix | None, threshold: float) -> None:
        self._vectors = vectors
        self._threshold = threshold
        self._by_hash: dict[tuple[str, str], MemoryRecord] = {}
        self._rows: dict[str, list[int]] = {}
        self._records: dict[str, list[MemoryRecord]] = {}
        # One matrix product finds the rows close to any earlier row; most batches have
        # none, so most items skip the per-item comparison below. The margin keeps rounding
        # differences between the two products from hiding a twin.
        self._may_have_twin: list[bool] = []
        if vectors is not None:
            close = np.tril(np.greater_equal(vectors @ vectors.T, threshold - 1e-4), k=-1)
            self._may_have_twin = np.any(close, axis=1).tolist()

    def add(self, record: MemoryRecord, row: int) -> None:
        self._by_hash[(record.namespace, record.content_hash)] = record
        self._rows.setdefault(record.namespace, []).append(row)
        self._records.setdefault(record.namespace, []).append(record)

    def find(self, namespace: str, item_hash: str, row: int) -> MemoryRecord | None:
        exact = self._by_hash.get((namespace, item_hash))
        if exact is not None or self._vectors is None or namespace not in self._rows:
            return exact
        if not self._may_have_twin[row]:
            return None
        similarities = self._vectors[self._rows[namespace]] @ self._vectors[row]
        best = int(np.argmax(similarities))
        return self._records[namespace][best] if similarities[best] >= self._threshold else None


def _search_where(req: MemorySearchRequest, now: datetime) -> Where:
    return namespace_where(
        req.namespace,
        now,
        kinds=req.kinds,
        created_after=req.created_after,
        created_before=req.created_before,
        metadata=req.filter,
        as_of=req.as_of,
        include_superseded=req.include_superseded,
    )


def _hit(found: Found, score: float, similarity: float | None) -> MemoryHit:
    p = found.payload
    return MemoryHit(
        id=p["memory_id"],
        score=score,
        text=p["text"],
        namespace=p["namespace"],
        kind=p["kind"],
        metadata=p.get("metadata") or {},
        similarity=similarity,
        created_at=p["created_at"],
        version=p.get("version"),
        valid_from=p.get("valid_from"),
        valid_to=p.get("valid_to"),
        superseded_by=p.get("superseded_by"),
    )


def _import_line(number: int, line: str, tenant: str, namespace: str) -> MemoryRecord:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"line {number} is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest(f"line {number} is not a JSON object (an exported memory)")
    # The tenant comes from the caller, never from the file.
    data["tenant"] = tenant
    try:
        record = MemoryRecord.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise InvalidRequest(f"line {number} is not a valid exported memory: {problems}") from exc
    if record.namespace != namespace:
        raise InvalidRequest(
            f"line {number} belongs to namespace {record.namespace!r}; import it into "
            f"/v1/namespaces/{record.namespace}/import"
        )
    # Dedup looks memories up by hash, so the hash is recomputed, never trusted.
    return record.model_copy(
        update={"deduplicated": False, "content_hash": content_hash(record.text)}
    )


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return str(uuid.UUID(cursor))
    except ValueError as exc:
        raise InvalidRequest(
            "cursor is not one this service issued; pass `next_cursor` from the previous page"
        ) from exc
