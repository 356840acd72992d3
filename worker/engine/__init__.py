"""Generation engines: `simple` (one job at a time) and `batched` (continuous batching),
the latter optionally in a process of its own (`MEMQ_ENGINE_PROCESS`)."""

from __future__ import annotations

from worker.config import WorkerSettings
from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.model_loader import LoadedModel

ENGINE_NAMES = ("simple", "batched")

__all__ = ["ENGINE_NAMES", "Engine", "GenerationOutput", "GenerationRequest", "build_engine"]


def build_engine(settings: WorkerSettings, lm: LoadedModel, *, in_process: bool = False) -> Engine:
    """The engine `settings.engine` names, around `lm`, with its knobs from settings
    (`max_batch_size`, `max_batch_tokens`, `max_prefill_tokens`, `prefill_chunk_tokens`;
    see docs/engine.md).

    With `settings.engine_process` the batched engine runs in a child process that loads
    the model the settings name itself (`lm` only serves this process's other users);
    `in_process=True` keeps it here (adapted models, whose weights exist only here)."""
    if settings.engine == "simple":
        from worker.engine.simple import SimpleEngine

        return SimpleEngine(lm)
    if settings.engine_process and not in_process:
        from worker.engine.process import ProcessEngine

        return ProcessEngine(settings)
    from worker.engine.batched import BatchedEngine

    return BatchedEngine(
        lm,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_prefill_tokens=settings.max_prefill_tokens,
        prefill_chunk_tokens=settings.prefill_chunk_tokens,
    )
