"""One contract for every VectorStore backend: embedded Qdrant Edge always, Qdrant server
when MEMQ_TEST_QDRANT_URL points at one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memory_service.services.embeddings import Embedder
from memory_service.store.base import (
    HasId,
    Match,
    MmrSpec,
    Range,
    SearchSpec,
    StoredPoint,
    VectorStore,
    Where,
)
from memory_service.store.edge import EdgeStore

SERVER_URL = os.environ.get("MEMQ_TEST_QDRANT_URL")
SKIP_SERVER_REASON = "Qdrant server backend not tested: set MEMQ_TEST_QDRANT_URL to run it"


@pytest.fixture(params=["edge", "server"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder
) -> Iterator[VectorStore]:
    if request.param == "edge":
        edge = EdgeStore(tmp_path / "qdrant", embedder.dim)
        yield edge
        edge.close()
        return
    if not SERVER_URL:
        print(SKIP_SERVER_REASON)
        pytest.skip(SKIP_SERVER_REASON)
    from memory_service.store.server import ServerStore

    collection = f"memq_test_{uuid.uuid4().hex[:8]}"
    server = ServerStore.connect(
        SERVER_URL, os.environ.get("MEMQ_TEST_QDRANT_API_KEY"), collection, embedder.dim
    )
    yield server
    server._client.delete_collection(collection)
    server.close()


def _points(
    embedder: Embedder, tenant: str, texts: list[str], **payload: object
) -> list[StoredPoint]:
    vectors = embedder.embed(texts)
    return [
        StoredPoint(
            point_id=str(uuid.uuid4()),
            dense=vectors[i].tolist(),
            sparse=embedder.sparse_document(t),
            payload={
                "tenant": tenant,
                "namespace": "ns",
                "text": t,
                "created_ts": float(i),
                **payload,
            },
        )
        for i, t in enumerate(texts)
    ]


TEXTS = ["red apples grow on trees", "invoice QX-5521 is overdue", "the ocean is deep and blue"]


def test_upserted_points_are_readable_and_counted_per_tenant(
    store: VectorStore, embedder: Embedder
) -> None:
    store.upsert("a", _points(embedder, "a", TEXTS))
    store.upsert("b", _points(embedder, "b", TEXTS[:1]))
    store.wait_durable()
    assert store.count("a", None) == 3
    assert store.count("b", None) == 1
    found, cursor = store.scroll("a", None, limit=10)
    assert cursor is None
    assert sorted(f.payload["text"] for f in found) == sorted(TEXTS)


def test_upsert_refuses_points_of_another_tenant(store: VectorStore, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="tenant"):
        store.upsert("a", _points(embedder, "b", TEXTS[:1]))


def test_every_read_and_delete_is_scoped_to_the_tenant(
    store: VectorStore, embedder: Embedder
) -> None:
    a_points = _points(embedder, "a", TEXTS)
    store.upsert("a", a_points)
    ids = [p.point_id for p in a_points]
    escape = Where(should=[Match("tenant", "a"), HasId(ids)])
    assert store.count("b", escape) == 0
    assert store.scroll("b", escape, limit=10)[0] == []
    spec = SearchSpec(
        limit=10, dense=a_points[0].dense, sparse=embedder.sparse_query("invoice"), where=escape
    )
    assert store.search("b", spec) == []
    assert store.delete("b", escape) == 0
    assert store.count("a", None) == 3


def test_scroll_pages_with_cursor(store: VectorStore, embedder: Embedder) -> None:
    store.upsert("a", _points(embedder, "a", TEXTS))
    first, cursor = store.scroll("a", None, limit=2)
    assert len(first) == 2 and cursor is not None
    rest, end = store.scroll("a", None, limit=2, cursor=cursor)
    assert end is None
    assert {f.point_id for f in first}.isdisjoint(f.point_id for f in rest)
    assert len(first) + len(rest) == 3


def test_dense_sparse_and_fused_search_rank_the_matching_point_first(
    store: VectorStore, embedder: Embedder
) -> None:
    store.upsert("a", _points(embedder, "a", TEXTS))
    q = embedder.embed(["which bill is late?"])[0].tolist()
    dense = store.search("a", SearchSpec(limit=1, dense=q))
    sparse = store.search("a", SearchSpec(limit=1, sparse=embedder.sparse_query("QX-5521")))
    fused = store.search(
        "a", SearchSpec(limit=3, dense=q, sparse=embedder.sparse_query("QX-5521"), with_dense=True)
    )
    for hits in (dense, sparse, fused):
        assert hits[0].payload["text"] == "invoice QX-5521 is overdue"
    assert fused[0].dense is not None
    assert float(np.dot(q, fused[0].dense)) == pytest.approx(dense[0].score, abs=1e-4)


def test_search_many_answers_each_query_in_order(store: VectorStore, embedder: Embedder) -> None:
    store.upsert("a", _points(embedder, "a", TEXTS))
    vectors = embedder.embed(["fruit", "sea"])
    results = store.search_many("a", [SearchSpec(limit=1, dense=v.tolist()) for v in vectors])
    assert [r[0].payload["text"] for r in results] == [TEXTS[0], TEXTS[2]]


def test_recency_and_mmr_stages_run(store: VectorStore, embedder: Embedder) -> None:
    same_text = _points(embedder, "a", ["apples"] * 3)  # equal relevance, created_ts 0, 1, 2
    store.upsert("a", same_text)
    q = embedder.embed(["apples"])[0].tolist()
    recent = store.search("a", SearchSpec(limit=3, dense=q, recency_half_life_s=1.0, now=2.0))
    assert [r.payload["created_ts"] for r in recent] == [2.0, 1.0, 0.0]
    assert recent[1].score == pytest.approx(recent[0].score / 2, rel=1e-3)
    store.delete("a", Where())
    store.upsert("a", _points(embedder, "a", TEXTS))
    mmr = store.search("a", SearchSpec(limit=2, dense=q, mmr=MmrSpec(q, 0.5)))
    assert mmr[0].payload["text"] == TEXTS[0]


def test_filters_with_ranges_and_delete_return_counts(
    store: VectorStore, embedder: Embedder
) -> None:
    store.upsert("a", _points(embedder, "a", TEXTS))
    assert store.count("a", Where(must=[Range("created_ts", gte=1.0)])) == 2
    assert store.delete("a", Where(must=[Range("created_ts", lt=1.0)])) == 1
    store.wait_durable()
    assert store.count("a", None) == 2


def test_delete_expired_removes_only_expired_points_of_all_tenants(
    store: VectorStore, embedder: Embedder
) -> None:
    store.upsert("a", _points(embedder, "a", TEXTS[:1], expires_ts=10.0))
    store.upsert("b", _points(embedder, "b", TEXTS[1:2], expires_ts=10.0))
    store.upsert("a", _points(embedder, "a", TEXTS[2:], expires_ts=100.0))
    store.upsert("a", _points(embedder, "a", ["no expiry"]))
    assert store.delete_expired(now=50.0) == 2
    assert store.count("a", None) == 2
    assert store.count("b", None) == 0


def test_edge_store_reopens_with_its_data(tmp_path: Path, embedder: Embedder) -> None:
    store = EdgeStore(tmp_path / "qdrant", embedder.dim)
    store.upsert("a", _points(embedder, "a", TEXTS))
    store.wait_durable()
    store.close()
    reopened = EdgeStore(tmp_path / "qdrant", embedder.dim)
    try:
        assert reopened.count("a", None) == 3
    finally:
        reopened.close()
