"""The per-process runtime: model, engine, clients. Built once, shared by every task thread."""

from __future__ import annotations

import logging
import threading

import redis

from memq.clients import MemoryClient
from memq.contracts import ModelInfo
from memq.jobstore import JobStore
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.base import Engine
from worker.model_loader import LoadedModel, load_model
from worker.pipeline import JobRunner

log = logging.getLogger("memq.worker")


class Runtime:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.lm: LoadedModel = load_model(
            settings.model,
            explicit=settings.model_explicit,
            data_dir=settings.data_dir,
            dtype=settings.dtype,
            torch_threads=settings.torch_threads,
        )
        self.engine: Engine = build(settings, self.lm)
        self.store = JobStore(
            redis.Redis.from_url(settings.redis_url),
            prefix=settings.key_prefix,
            ttl_s=settings.job_ttl_seconds,
        )
        self.memory = MemoryClient(settings.memory_url, settings.service_token.get_secret_value())
        self.runner = JobRunner(
            self.lm,
            self.engine,
            self.store,
            self.memory,
            retrieval_query_chars=settings.retrieval_query_chars,
            progress_interval_s=settings.progress_interval_s,
        )
        self.store.publish_model(
            ModelInfo(
                name=self.lm.name,
                context_window=self.lm.context_window,
                tokenizer_json=self.lm.tokenizer_json(),
            )
        )
        log.warning("worker ready: model=%s engine=%s", self.lm.name, self.engine.name)

    def close(self) -> None:
        self.engine.close()
        self.memory.close()


def build(settings: WorkerSettings, lm: LoadedModel) -> Engine:
    return build_engine(
        settings.engine,
        lm,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_prefill_tokens=settings.max_prefill_tokens,
    )


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime(settings: WorkerSettings | None = None) -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(settings or WorkerSettings())
        return _runtime
