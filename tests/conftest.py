from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench._models import build_tiny_gpt2
from memq.ops.process import free_port
from memq.ops.redis_server import start_redis
from tests.utils.stack import StackFactory

# No Hugging Face Hub on CI machines: never let a test wait on network timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 saved like a hub checkpoint (loaded via from_pretrained)."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def embedding_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`MEMQ_MODEL_CACHE_DIR` for the memory services tests start: the embedder is exported
    to ONNX once per session instead of once per stack."""
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def stack_factory(
    tiny_model_dir: Path, embedding_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> StackFactory:
    """Whole stacks as real processes on the tiny GPT-2 (tests/utils/stack.py)."""
    return StackFactory(tiny_model_dir, embedding_cache_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real, private redis-server on a free port (not the shared one on 6379), started
    exactly as `memq up` starts its embedded Redis."""
    port = free_port()
    server = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    server.stop()


@pytest.fixture
def redis_client(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    yield client
    client.close()
