"""The per-process runtime: model, engine, clients and helper threads, built once by the
task class (`worker.tasks.JobTask.runtime`) and closed on worker shutdown."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import redis

from memq.clients import MemoryClient
from memq.contracts import ModelInfo
from memq.jobstore import JobStore
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.base import Engine
from worker.model_loader import LoadedModel, load_model
from worker.pipeline import JobRunner
from worker.progress import CancelWatcher, ProgressPublisher
from worker.prompt import template_tokens

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
        self.engine: Engine = build_engine(settings, self.lm)
        self.store = JobStore(
            redis.Redis.from_url(settings.redis_url),
            prefix=settings.key_prefix,
            ttl_s=settings.job_ttl_seconds,
        )
        self.memory = MemoryClient(
            settings.memory_url, settings.token, timeout=settings.memory_timeout_s
        )
        self.progress = ProgressPublisher(self.store, settings.progress_interval_s)
        self.cancels = CancelWatcher(self.store, settings.cancel_poll_interval_s)
        self.map_pool = ThreadPoolExecutor(settings.map_threads, thread_name_prefix="memq-map")
        self.runner = JobRunner(
            self.lm,
            self.engine,
            self.memory,
            self.progress,
            self.cancels,
            self.map_pool,
            retrieval_query_chars=settings.retrieval_query_chars,
        )
        self.store.publish_model(
            ModelInfo(
                name=self.lm.name,
                context_window=self.lm.context_window,
                tokenizer_json=self.lm.tokenizer_json(),
                template_tokens=template_tokens(self.lm.tokenizer),
            )
        )
        log.warning("worker ready: model=%s engine=%s", self.lm.name, self.engine.name)

    def close(self) -> None:
        self.engine.close()
        self.map_pool.shutdown(wait=False, cancel_futures=True)
        self.progress.close()
        self.cancels.close()
        self.memory.close()
        self.store.r.close()
