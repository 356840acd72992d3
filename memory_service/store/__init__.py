"""Vector store backends behind one interface (`base.VectorStore`)."""

from __future__ import annotations

from memory_service.core.config import Backend, MemorySettings
from memory_service.store.base import VectorStore


def build_store(settings: MemorySettings, dim: int) -> VectorStore:
    """The backend the settings choose; imports only the client that backend needs."""
    if settings.resolved_backend is Backend.server:
        from memory_service.store.server import ServerStore

        assert settings.qdrant_url is not None  # enforced by MemorySettings validation
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerStore.connect(settings.qdrant_url, api_key, settings.qdrant_collection, dim)
    from memory_service.store.edge import EdgeStore

    return EdgeStore(settings.edge_path, dim, flush_on_write=settings.memory_flush_on_write)
