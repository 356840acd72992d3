from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memq.ops.launcher import Stack, start_stack
from memq.sdk import Client


@pytest.fixture(scope="session")
def stack(
    tiny_model_dir: Path, embedding_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole service as real processes: redis-server, memory service (real MiniLM +
    embedded Qdrant Edge), a Celery worker (tiny GPT-2 via from_pretrained), the gateway,
    supervised as `memq up` supervises them."""
    data_dir = tmp_path_factory.mktemp("memq-e2e")
    running = start_stack(
        data_dir,
        env={
            "MEMQ_MODEL": str(tiny_model_dir),
            "MEMQ_MODEL_CACHE_DIR": str(embedding_cache_dir),
            "MEMQ_LOG_LEVEL": "INFO",
            # Small, so the e2e sessions grow a rolling summary within a few turns.
            "MEMQ_SESSION_SUMMARY_TOKENS": "150",
        },
        model_timeout=300,
    )
    try:
        yield running
    finally:
        running.stop()
    # The supervisor would hide a crash behind a restart: no e2e test kills anything, so any
    # crash here is a bug (its log is in the message).
    crashed = {c.name: c.crashes for c in running.procs.values() if c.crashes}
    assert not crashed, (
        f"components crashed during the e2e tests: {crashed}; logs in {data_dir}/logs"
    )


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.gateway_url) as c:
        yield c


@pytest.fixture(scope="session")
def ops_stack(
    tiny_model_dir: Path, embedding_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack for the operations tests (webhooks, metrics, JSON logs, schemathesis):
    authentication on (tests/e2e/ops.py has the keys), JSON logs, webhooks allowed to
    127.0.0.1 (the receivers run there) and retried after short waits."""
    from tests.e2e.ops import FUZZ_KEY, FUZZ_TENANT, OPS_KEY, OPS_TENANT

    data_dir = tmp_path_factory.mktemp("memq-ops")
    running = start_stack(
        data_dir,
        env={
            "MEMQ_MODEL": str(tiny_model_dir),
            "MEMQ_MODEL_CACHE_DIR": str(embedding_cache_dir),
            "MEMQ_API_KEYS": f"{OPS_KEY}:{OPS_TENANT},{FUZZ_KEY}:{FUZZ_TENANT}",
            "MEMQ_LOG_FORMAT": "json",
            "MEMQ_LOG_LEVEL": "INFO",
            # Small, so the e2e sessions grow a rolling summary within a few turns.
            "MEMQ_SESSION_SUMMARY_TOKENS": "150",
            "MEMQ_WEBHOOK_ALLOW_PRIVATE": "true",
            "MEMQ_WEBHOOK_BACKOFF_S": "0.2",
        },
        model_timeout=300,
    )
    try:
        yield running
    finally:
        running.stop()
    crashed = {c.name: c.crashes for c in running.procs.values() if c.crashes}
    assert not crashed, f"components crashed: {crashed}; logs in {data_dir}/logs"
