"""The per-process runtime: model, engine, clients and helper threads, built once by the
task class (`worker.tasks.JobTask.runtime`) and closed on worker shutdown."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from memq.broker import job_store
from memq.contracts import ModelInfo
from memq.memory_client import MemoryClient
from memq.store.adapters import AdapterRegistry
from worker.adapters import AdapterPool
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.base import Engine
from worker.model_loader import LoadedModel, load_worker_model
from worker.pipeline import JobRunner
from worker.progress import CancelWatcher, ProgressPublisher
from worker.prompting import prompts_for
from worker.reconciler import Housekeeper, LeaseKeeper, Reconciler, SendJob
from worker.sessions import ScheduleJob, SessionBook
from worker.training import Consolidator, TrainingSlot

log = logging.getLogger("memq.worker")


def new_worker_id() -> str:
    """Unique per process start: a restarted worker never inherits a dead one's leases."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runtime:
    def __init__(
        self,
        settings: WorkerSettings,
        celery: Celery,
        send: SendJob,
        queues: list[str],
        schedule: ScheduleJob,
    ) -> None:
        self.settings = settings
        self.worker_id = new_worker_id()
        self.lm: LoadedModel = load_worker_model(settings)
        self.engine: Engine = build_engine(settings, self.lm)
        self.store = job_store(settings, celery)
        self.leases = LeaseKeeper(self.store, self.worker_id)
        self.housekeeper = Housekeeper(
            self.leases,
            Reconciler(
                self.store,
                send,
                queues,
                worker_id=self.worker_id,
                grace_s=settings.lease_ttl_s,
                max_queued_s=settings.max_queued_s,
            ),
            settings.heartbeat_interval_s,
        )
        self.memory = MemoryClient(
            settings.memory_url, settings.token, timeout=settings.memory_timeout_s
        )
        self.progress = ProgressPublisher(self.store, settings.progress_interval_s)
        self.cancels = CancelWatcher(self.store, settings.cancel_poll_interval_s)
        self.map_pool = ThreadPoolExecutor(settings.map_threads, thread_name_prefix="memq-map")
        self.prompts = prompts_for(self.lm.tokenizer, self.lm.context_window, settings.prompt_style)
        self.sessions = SessionBook(
            self.memory,
            self.store,
            count_tokens=lambda text: len(self.prompts.encode(text)),
            summary_budget=settings.session_summary_tokens or self.lm.context_window // 2,
            recent_turns=settings.session_recent_turns,
            schedule=schedule,
        )
        registry = AdapterRegistry(self.store.r, settings.key_prefix)
        self.adapters = AdapterPool(
            self.lm,
            registry,
            # Adapted models are decoded in this process, whatever MEMQ_ENGINE_PROCESS says.
            lambda adapted: build_engine(settings, adapted, in_process=True),
            capacity=settings.adapter_cache_size,
            merge=settings.adapter_merge,
        )
        self.training = TrainingSlot()
        self.consolidator = Consolidator(
            self.lm,
            self.memory,
            registry,
            settings.adapter_root,
            chat_template=self.prompts.chat_template,
            progress=lambda tenant, job_id, step, total, loss: self.store.publish_progress(
                tenant, job_id, step=step, total=total, loss=loss
            ),
            slot=self.training,
        )
        self.runner = JobRunner(
            self.lm,
            self.engine,
            self.memory,
            self.progress,
            self.cancels,
            self.map_pool,
            prompts=self.prompts,
            sessions=self.sessions,
            retrieval_query_chars=settings.retrieval_query_chars,
            min_similarity=settings.min_similarity,
            abstain=settings.abstain,
            adapters=self.adapters,
            consolidator=self.consolidator,
        )
        self.store.publish_model(
            ModelInfo(
                name=self.lm.name,
                context_window=self.lm.context_window,
                tokenizer_json=self.lm.tokenizer_json(),
                template_tokens=self.prompts.template_tokens(),
                chat_template=self.prompts.chat_template,
            )
        )
        self.housekeeper.start()
        log.warning(
            "worker ready: id=%s model=%s engine=%s", self.worker_id, self.lm.name, self.engine.name
        )

    def close(self) -> None:
        self.housekeeper.close()
        self.adapters.close()
        self.engine.close()
        self.map_pool.shutdown(wait=False, cancel_futures=True)
        self.progress.close()
        self.cancels.close()
        self.memory.close()
        self.store.r.close()
