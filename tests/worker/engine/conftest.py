from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.worker.engine.helpers import batched
from worker.engine.batched import BatchedEngine
from worker.engine.simple import SimpleEngine
from worker.model_loader import LoadedModel


@pytest.fixture(scope="session")
def simple_engine(tiny_lm: LoadedModel) -> SimpleEngine:
    return SimpleEngine(tiny_lm)


@pytest.fixture
def batched_engine(tiny_lm: LoadedModel) -> Iterator[BatchedEngine]:
    engine = batched(tiny_lm)
    yield engine
    engine.close()


PROMPTS = [
    "The quick brown fox",
    "Alice lives in Paris and works as a marine biologist. Bob's favourite colour is",
    "Memory",
    "Redis, Celery and Qdrant power the memq job service. TL;DR: a short summary follows",
    "Summaries should be short, faithful and cover the main points. The quick brown fox jumps"
    " over the lazy dog. Alice lives in Paris",
]


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    return PROMPTS
