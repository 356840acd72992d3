"""Consolidation: train a LoRA adapter (peft) on a namespace's memories.

The consolidate job (`Consolidator`) selects the memories, turns them into examples
(worker.training_data), trains LoRA on a shared copy of the engine's model
(`train_adapter`, on `worker.lora.shared_copy`: the base weights frozen and shared, so
decoding goes on untouched beside it), then stores and registers the adapter version. One
training at a time per process (`TrainingSlot`); the job is refused with TrainingBusy while
one runs (the task sends it back to the queue).
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from memq.contracts import (
    MAX_CONSOLIDATE_MEMORIES,
    AdapterServed,
    ConsolidateJobRequest,
    JobResult,
    JobTimings,
    MemoryFilter,
    MemoryKind,
    MemoryPublic,
    TokenUsage,
    TrainedMemory,
    TrainingOptions,
)
from memq.errors import InvalidInput, WorkerError
from memq.store.adapters import AdapterRegistry, AdapterVersionRecord, version_dir
from memq.store.jobs import JobRecord
from worker.lora import default_target_modules, shared_copy
from worker.model_loader import LoadedModel
from worker.training_data import IGNORE, Example, ExampleBuilder

log = logging.getLogger("memq.worker.training")

DEFAULT_EPOCHS = 5


class TrainingBusy(WorkerError):
    """This worker process is already training; the job goes back to the queue."""

    code = "training_busy"


class NoMemoriesToConsolidate(InvalidInput):
    code = "no_memories"


@dataclass(frozen=True)
class TrainingOutcome:
    loss: list[float]
    steps: int
    train_s: float
    options: TrainingOptions
    examples: int
    tokens: int
    size_bytes: int


class TrainingSlot:
    """At most one training per process: a second one is refused, not queued behind the
    first on a Celery thread that generation could use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise TrainingBusy("this worker is already training an adapter")
        try:
            yield
        finally:
            self._lock.release()


# ------------------------------------------------------------------------------ training


def resolve_options(options: TrainingOptions, model: Any, examples: int) -> TrainingOptions:
    """The options as applied: alpha, target modules and the step count filled in."""
    targets = options.target_modules or default_target_modules(model)
    steps = options.steps
    if steps is None:
        epochs = options.epochs or DEFAULT_EPOCHS
        steps = math.ceil(examples / options.batch_size) * epochs
    return options.model_copy(
        update={
            "steps": steps,
            "alpha": options.alpha if options.alpha is not None else 2 * options.rank,
            "target_modules": targets,
        }
    )


def _batches(examples: Sequence[Example], batch_size: int, seed: int) -> Iterator[list[Example]]:
    """Endless shuffled passes over the examples (a new order each pass)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            yield [examples[i] for i in order[start : start + batch_size]]


def _collate(batch: Sequence[Example], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_adapter(
    base: Any,
    examples: Sequence[Example],
    options: TrainingOptions,
    out_dir: Path,
    *,
    pad_id: int,
    on_step: Callable[[int, int, float], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> TrainingOutcome | None:
    """Train LoRA on a shared copy of `base` and save the adapter to `out_dir`; None when
    `is_cancelled` said so between two steps. `options` must be resolved."""
    import torch
    from peft import LoraConfig, get_peft_model

    assert options.steps is not None and options.target_modules is not None
    if not examples:
        raise NoMemoriesToConsolidate("no training examples to learn from")
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha or 2 * options.rank,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
        task_type="CAUSAL_LM",
    )
    losses: list[float] = []
    # Seeded from the job's options without touching anyone else's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        try:
            model = get_peft_model(shared_copy(base), config)
        except ValueError as exc:  # peft: a target module the model does not have
            raise InvalidInput(f"training.target_modules: {exc}") from exc
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate, weight_decay=0.0)
        model.train()
        batches = _batches(examples, options.batch_size, options.seed)
        started = time.monotonic()
        with torch.enable_grad():
            for step in range(1, options.steps + 1):
                if is_cancelled is not None and is_cancelled():
                    return None
                out = model(**_collate(next(batches), pad_id))
                out.loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(out.loss.detach()))
                if on_step is not None:
                    on_step(step, options.steps, losses[-1])
        train_s = time.monotonic() - started
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    return TrainingOutcome(
        loss=losses,
        steps=options.steps,
        train_s=train_s,
        options=options,
        examples=len(examples),
        tokens=sum(len(e.input_ids) for e in examples),
        size_bytes=size,
    )


# ------------------------------------------------------------------------------ the job


class MemoryLister(Protocol):
    def list_all(
        self,
        tenant: str,
        namespace: str,
        *,
        kinds: list[MemoryKind] | None = None,
        where: MemoryFilter | None = None,
        limit: int = 1000,
    ) -> list[MemoryPublic]: ...


StepCallback = Callable[[int, int, float], None]
ProgressSink = Callable[[str, str, int, int, float], None]
"""Told (tenant, job id, step, steps in all, loss) after every step."""


class Consolidator:
    """A consolidate job: select the memories, build examples, train, store and register
    the adapter version, and describe it as the job's result."""

    def __init__(
        self,
        lm: LoadedModel,
        memory: MemoryLister,
        registry: AdapterRegistry,
        root: Path,
        *,
        chat_template: bool,
        progress: ProgressSink | None = None,
        slot: TrainingSlot | None = None,
    ) -> None:
        self.lm = lm
        self.memory = memory
        self.registry = registry
        self.root = root
        self.progress = progress
        self.examples = ExampleBuilder(lm.tokenizer, chat_template=chat_template)
        self.slot = slot or TrainingSlot()

    def select(self, tenant: str, request: ConsolidateJobRequest) -> list[MemoryPublic]:
        """The memories to learn, oldest first; refuses (never truncates) a selection larger
        than a job may train on."""
        found = self.memory.list_all(
            tenant,
            request.namespace,
            kinds=request.kinds,
            where=request.where,
            limit=MAX_CONSOLIDATE_MEMORIES + 1,
        )
        if request.memory_ids is not None:
            wanted = set(request.memory_ids)
            missing = wanted - {m.id for m in found}
            if missing:
                raise InvalidInput(
                    f"memory_ids not in namespace {request.namespace!r} (or filtered out by "
                    f"kinds/where): {sorted(missing)[:10]}"
                )
            found = [m for m in found if m.id in wanted]
        if len(found) > MAX_CONSOLIDATE_MEMORIES:
            raise InvalidInput(
                f"namespace {request.namespace!r} holds more than {MAX_CONSOLIDATE_MEMORIES:,} "
                "matching memories; narrow the selection with memory_ids, kinds or where"
            )
        if not found:
            raise NoMemoriesToConsolidate(
                f"namespace {request.namespace!r} has no memories that match; add some first "
                "(POST /v1/memories)"
            )
        return sorted(found, key=lambda m: (m.created_at, m.id))

    def run(
        self,
        record: JobRecord,
        request: ConsolidateJobRequest,
        *,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> JobResult | None:
        """The job's result, or None when it was cancelled between two steps."""
        with self.slot.hold():
            return self._run(record, request, self._reporter(record), is_cancelled)

    def _reporter(self, record: JobRecord) -> StepCallback | None:
        sink = self.progress
        if sink is None:
            return None

        def report(step: int, total: int, loss: float) -> None:
            try:
                sink(record.tenant, record.id, step, total, loss)
            except Exception:
                log.exception("training progress write failed; the job itself is unaffected")

        return report

    def _run(
        self,
        record: JobRecord,
        request: ConsolidateJobRequest,
        on_step: StepCallback | None,
        is_cancelled: Callable[[], bool] | None,
    ) -> JobResult | None:
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        tenant, name = record.tenant, request.adapter
        memories = self.select(tenant, request)
        selected_s = time.monotonic() - t0
        examples = self.examples.build(
            memories,
            max_tokens=request.training.max_tokens,
            qa_variants=request.training.qa_variants,
        )
        options = resolve_options(request.training, self.lm.model, len(examples))
        staging = version_dir(self.root, tenant, name, 0).with_name(f".train-{record.id}")
        shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "consolidating %d memories of %s into adapter %s: %d examples, %s steps",
            len(memories),
            request.namespace,
            name,
            len(examples),
            options.steps,
        )
        pad_id = self.lm.eos_token_id if self.lm.eos_token_id is not None else 0
        try:
            outcome = train_adapter(
                self.lm.model,
                examples,
                options,
                staging,
                pad_id=pad_id,
                on_step=on_step,
                is_cancelled=is_cancelled,
            )
            if outcome is None:
                return None
            version = self.registry.reserve_version(tenant, name, record.id)
            final = version_dir(self.root, tenant, name, version)
            shutil.rmtree(final, ignore_errors=True)  # an earlier run of this same job
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        trained = AdapterVersionRecord(
            version=version,
            created_at=datetime.now(UTC),
            job_id=record.id,
            base_model=self.lm.name,
            namespace=request.namespace,
            memories=[TrainedMemory(id=m.id, version=m.version) for m in memories],
            training=outcome.options,
            examples=outcome.examples,
            tokens=outcome.tokens,
            steps=outcome.steps,
            loss=outcome.loss,
            train_s=outcome.train_s,
            size_bytes=outcome.size_bytes,
            path=str(final.resolve()),
        )
        self.registry.put(tenant, name, trained, started_at)
        public = trained.public()
        loss = outcome.loss
        return JobResult(
            text=(
                f"adapter {name} v{version}: {len(memories)} memories, {outcome.examples} "
                f"examples, {outcome.steps} steps, loss {loss[0]:.3f} → {loss[-1]:.3f} in "
                f"{outcome.train_s:.1f} s"
            ),
            model=self.lm.name,
            finish_reason="trained",
            usage=TokenUsage(
                prompt_tokens=0,
                context_tokens=0,
                input_tokens=0,
                completion_tokens=0,
                total_tokens=0,
            ),
            timings=JobTimings(
                retrieval_s=selected_s,
                generation_s=outcome.train_s,
                total_s=time.monotonic() - t0,
            ),
            prompt="",
            adapter=AdapterServed(name=name, version=version),
            consolidation=public,
        )
