"""Generation engines: `simple` (one job at a time) and `batched` (continuous batching)."""

from __future__ import annotations

from typing import Any

from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.model_loader import LoadedModel

ENGINE_NAMES = ("simple", "batched")
DEFAULT_ENGINE = "batched"
BATCHED_KNOBS = frozenset({"max_batch_size", "max_batch_tokens", "max_prefill_tokens"})

__all__ = [
    "BATCHED_KNOBS",
    "DEFAULT_ENGINE",
    "ENGINE_NAMES",
    "Engine",
    "GenerationOutput",
    "GenerationRequest",
    "build_engine",
]


def build_engine(name: str, lm: LoadedModel, **knobs: Any) -> Engine:
    """Build the engine called `name` around `lm`.

    Knobs (see docs/engine.md): `max_batch_size`, `max_batch_tokens`,
    `max_prefill_tokens`. The simple engine accepts and ignores them, so one settings
    object can configure either engine; an unknown knob or name raises ValueError.
    """
    unknown = set(knobs) - BATCHED_KNOBS
    if unknown:
        raise ValueError(f"unknown engine knobs {sorted(unknown)}; known: {sorted(BATCHED_KNOBS)}")
    if name == "simple":
        from worker.engine.simple import SimpleEngine

        return SimpleEngine(lm)
    if name == "batched":
        from worker.engine.batched import BatchedEngine

        return BatchedEngine(lm, **knobs)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
