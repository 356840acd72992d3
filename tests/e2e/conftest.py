from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memq.clients import MemqClient
from memq.launcher import Stack, start_stack


@pytest.fixture(scope="session")
def stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole service as real processes: redis-server, memory service (real MiniLM +
    embedded Qdrant Edge), a Celery worker (tiny GPT-2 via from_pretrained), the gateway."""
    data_dir = tmp_path_factory.mktemp("memq-e2e")
    running = start_stack(
        data_dir,
        env={"MEMQ_MODEL": str(tiny_model_dir), "MEMQ_LOG_LEVEL": "INFO"},
        model_timeout=300,
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[MemqClient]:
    with MemqClient(stack.gateway_url) as c:
        yield c
