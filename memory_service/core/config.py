"""Memory service settings: every `MEMQ_*` variable it reads, validated at start-up."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from memq.settings import ServiceSettings

MIB = 1024 * 1024
KEYWORD_WEIGHT = 0.3
"""Hybrid search (memory_service/services/fusion.py): the largest keyword bonus, in cosine
units. Chosen on the dev retrieval sets (bench/results/fusion.md): the smallest weight
that puts every code and rare-name query's memory first there, while recall@1 with shared
names stays at dense's."""


class EmbeddingBackend(StrEnum):
    onnx = "onnx"
    torch = "torch"


class Backend(StrEnum):
    edge = "edge"
    server = "server"


class MemorySettings(ServiceSettings):
    memory_host: str = Field(
        default="127.0.0.1",
        description="Interface the service binds; localhost unless the gateway and workers run "
        "on other machines.",
    )
    memory_backend: Backend | None = Field(
        default=None,
        description="`edge` (embedded Qdrant Edge) or `server`; default: server when "
        "MEMQ_QDRANT_URL is set, else edge.",
    )
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL.")
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = Field(default="memq_memories", min_length=1, max_length=255)
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="sentence-transformers model name or local path; the default resolves to "
        "the bundled offline copy.",
    )
    embedding_batch_size: int = Field(default=64, ge=1, le=1024)
    embedding_backend: EmbeddingBackend = Field(
        default=EmbeddingBackend.onnx,
        description="`onnx` (ONNX Runtime; same vectors, faster on CPU; falls back to torch for "
        "models it cannot export) or `torch`.",
    )
    model_cache_dir: Path | None = Field(
        default=None, description="Where exported ONNX models are cached; default DATA_DIR/models."
    )
    embedding_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=64,
        description="Threads for batch embedding (single queries always use one).",
    )
    dedup_threshold: float = Field(
        default=0.95, gt=0.0, le=1.0, description="Cosine at or above which a write is a duplicate."
    )
    ttl_sweep_interval_s: float = Field(
        default=60.0, gt=0, description="How often expired memories are deleted."
    )
    search_hnsw_ef: int | None = Field(default=None, ge=1, le=4096)
    search_keyword_weight: float = Field(
        default=KEYWORD_WEIGHT,
        ge=0.0,
        le=10.0,
        description="Hybrid search: the largest keyword (BM25) bonus added to a memory's cosine "
        "(see memory_service/services/fusion.py); 0 ranks by the dense leg alone.",
    )
    memory_flush_on_write: bool = Field(
        default=True,
        description="Embedded backend: flush (fsync) before acknowledging a write. False "
        "acknowledges after the WAL append: survives a process crash, not a power cut.",
    )
    memory_max_body_bytes: int = Field(
        default=16 * MIB,
        ge=64 * 1024,
        description="Largest request body (bytes) of every route but import; bigger ones get "
        "413 before they are read. 16 MiB holds a 2,000,000-character document sent as "
        "UTF-8 JSON.",
    )
    memory_max_import_bytes: int = Field(
        default=64 * MIB,
        ge=64 * 1024,
        description="Largest body of `POST /v1/namespaces/{ns}/import`; split bigger exports "
        "(import is an upsert by id, so parts can be imported one after another).",
    )

    @property
    def resolved_backend(self) -> Backend:
        if self.memory_backend is not None:
            return self.memory_backend
        return Backend.server if self.qdrant_url else Backend.edge

    @property
    def onnx_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    @property
    def edge_path(self) -> Path:
        return self.data_dir / "qdrant"

    @model_validator(mode="after")
    def _server_needs_url(self) -> MemorySettings:
        if self.memory_backend is Backend.server and not self.qdrant_url:
            raise ValueError("MEMQ_MEMORY_BACKEND=server needs MEMQ_QDRANT_URL")
        return self
