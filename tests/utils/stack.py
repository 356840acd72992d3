"""The whole memq stack as real processes, for every end-to-end and chaos test.

`StackFactory` (the session fixture `stack_factory` in tests/conftest.py) starts what
`memq up` starts, supervised the same way (memq.ops.launcher): a private redis-server on a free
port, the memory service (real MiniLM, embedded Qdrant Edge), Celery worker(s) serving the
tiny GPT-2, and the gateway. A test module asks for what it needs:

    @pytest.fixture(scope="module")
    def stack(stack_factory: StackFactory) -> Iterator[Stack]:
        with stack_factory("memq-delivery", kills=True, workers=2, env={...}) as running:
            yield running

On the way out the factory checks that the supervisor never gave up and, unless the tests
kill components on purpose (`kills=True`), that no component crashed: the supervisor would
otherwise hide a crash behind a restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from memq.ops.launcher import Stack, running_stack
from memq.settings import LauncherSettings

MODEL_TIMEOUT_S = 300.0


class StackFactory:
    """Starts stacks on the session's tiny GPT-2 and shared embedding cache."""

    def __init__(
        self, model_dir: Path, embedding_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        self.model_dir = model_dir
        self.embedding_cache_dir = embedding_cache_dir
        self.tmp_path_factory = tmp_path_factory

    @contextlib.contextmanager
    def __call__(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        api_keys: Mapping[str, str] | None = None,
        workers: int = 1,
        engine_process: bool = False,
        kills: bool = False,
    ) -> Iterator[Stack]:
        """A running stack in a fresh data dir named after `name`.

        `env` is added to every child's environment; `api_keys` (key -> tenant) turns
        authentication on; `engine_process` runs each worker's engine in a process of its
        own; `kills` restarts killed children fast and expects crashes.
        """
        data_dir = self.tmp_path_factory.mktemp(name)
        child_env = {
            "MEMQ_MODEL": str(self.model_dir),
            "MEMQ_MODEL_CACHE_DIR": str(self.embedding_cache_dir),
            "MEMQ_LOG_LEVEL": "INFO",
        }
        if api_keys:
            child_env["MEMQ_API_KEYS"] = ",".join(f"{k}:{t}" for k, t in api_keys.items())
        if engine_process:
            child_env["MEMQ_ENGINE_PROCESS"] = "1"
        child_env.update(env or {})
        # Killed children come back within seconds, not after the production backoff.
        fast = LauncherSettings(restart_backoff_initial_s=0.2, restart_backoff_max_s=2.0)
        with running_stack(
            data_dir,
            settings=fast if kills else None,
            env=child_env,
            workers=workers,
            model_timeout=MODEL_TIMEOUT_S,
        ) as running:
            yield running
            assert running.failure is None, running.failure
        if not kills:
            crashed = {c.name: c.crashes for c in running.procs.values() if c.crashes}
            assert not crashed, f"components crashed: {crashed}; logs in {running.log_dir}"


@contextlib.contextmanager
def paused(stack: Stack, name: str = "worker") -> Iterator[None]:
    """SIGSTOP a component (its whole process group) until the block ends, e.g. the worker
    so jobs stay queued. Keep it well under the lease TTL (a paused worker also pauses the
    reconciler it runs, so nothing is resent meanwhile)."""
    pid = stack.procs[name].pid
    assert pid is not None
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)
