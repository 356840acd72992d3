"""Generation engines: `simple` (one job at a time) and `batched` (continuous batching)."""

from __future__ import annotations

from worker.config import WorkerSettings
from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.model_loader import LoadedModel

ENGINE_NAMES = ("simple", "batched")

__all__ = ["ENGINE_NAMES", "Engine", "GenerationOutput", "GenerationRequest", "build_engine"]


def build_engine(settings: WorkerSettings, lm: LoadedModel) -> Engine:
    """The engine `settings.engine` names, around `lm`, with its knobs from settings
    (`max_batch_size`, `max_batch_tokens`, `max_prefill_tokens`; see docs/engine.md)."""
    if settings.engine == "simple":
        from worker.engine.simple import SimpleEngine

        return SimpleEngine(lm)
    from worker.engine.batched import BatchedEngine

    return BatchedEngine(
        lm,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_prefill_tokens=settings.max_prefill_tokens,
    )
