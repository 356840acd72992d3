"""The ONNX Runtime path computes the same vectors as sentence-transformers itself."""

from __future__ import annotations

import numpy as np

from memory_service.services.embeddings import Embedder

TEXTS = [
    "short",
    "A considerably longer sentence about invoices, refunds and a parcel sent to Oslo.",
    "Zephyrine prefers meetings in the morning",
    "",
    "émoji 🎉 and ünïcödé",
]


def test_onnx_embeddings_match_sentence_transformers_in_any_batch_order(
    embedder: Embedder,
) -> None:
    assert embedder.backend == "onnx"
    reference = embedder._model.encode(TEXTS, normalize_embeddings=True)
    one_by_one = np.stack([embedder.embed([t])[0] for t in TEXTS])
    batched = embedder.embed(TEXTS * 3)[: len(TEXTS)]
    for got in (one_by_one, batched):
        assert got.shape == (len(TEXTS), 384)
        assert np.min(np.sum(got * reference, axis=1)) > 0.9999
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_bm25_query_vector_ignores_stopwords_and_keeps_rare_tokens(embedder: Embedder) -> None:
    assert embedder.sparse_query("the and of").indices == []
    doc = embedder.sparse_document("invoice QX-5521 overdue")
    query = embedder.sparse_query("QX-5521")
    assert set(query.indices) <= set(doc.indices)
