"""Adapters: the registry on a real redis-server (versions, tenants, staleness, deletion),
applying a trained adapter on the tiny GPT-2 (merged and unmerged, the base untouched), the
worker's LRU pool of adapter engines, and a generate job through the pipeline naming the
adapter that served it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from memq.contracts import (
    AdapterRef,
    GenerateJobRequest,
    GenerationParams,
    JobStatus,
    JobType,
    MemorySearchRequest,
    MemorySearchResponse,
    TrainingOptions,
)
from memq.store.adapters import (
    AdapterIncompatible,
    AdapterNotFound,
    AdapterRegistry,
    AdapterVersionRecord,
    version_dir,
)
from memq.store.jobs import JobRecord
from worker.adapters import AdapterPool
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.base import Engine, GenerationRequest
from worker.lora import adapted_model, private_bytes
from worker.model_loader import LoadedModel, load_model
from worker.pipeline import JobRunner
from worker.prompting import PlainPrompts
from worker.training import resolve_options, train_adapter
from worker.training_data import ExampleBuilder

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FACTS = ["Zorvan Kell keeps a pet iguana named Pickle.", "Ilsa Brannock loves quince tart."]


def record(
    version: int, *, namespace: str = "user:1", path: str = "/nowhere", model: str = "m"
) -> AdapterVersionRecord:
    return AdapterVersionRecord(
        version=version,
        created_at=T0,
        job_id=f"job-{version}",
        base_model=model,
        namespace=namespace,
        memories=[],
        training=TrainingOptions(steps=1),
        examples=1,
        tokens=1,
        steps=1,
        loss=[1.0],
        train_s=0.1,
        size_bytes=1,
        path=path,
    )


@pytest.fixture
def registry(redis_client: redis.Redis) -> AdapterRegistry:
    return AdapterRegistry(redis_client, "test")


# ------------------------------------------------------------------------------ registry


def test_a_job_makes_one_version_however_often_it_runs(registry: AdapterRegistry) -> None:
    assert registry.reserve_version("t", "facts", "job-a") == 1
    assert registry.reserve_version("t", "facts", "job-a") == 1  # a second execution
    assert registry.reserve_version("t", "facts", "job-b") == 2
    assert registry.reserve_version("t", "other", "job-a") == 1
    # Reserved but not trained yet: nothing is listed or resolvable.
    assert registry.listing("t").items == []
    with pytest.raises(AdapterNotFound):
        registry.resolve("t", AdapterRef(name="facts"))


def test_resolve_gives_the_latest_or_the_version_asked(registry: AdapterRegistry) -> None:
    for v in (1, 2):
        registry.put("t", "facts", record(v), T0)
    assert registry.resolve("t", AdapterRef(name="facts")).version == 2
    assert registry.resolve("t", AdapterRef(name="facts", version=1)).version == 1
    with pytest.raises(AdapterNotFound, match="has no version 3; its versions are 1, 2"):
        registry.resolve("t", AdapterRef(name="facts", version=3))
    listed = registry.listing("t").items
    assert [(a.name, a.latest, [v.version for v in a.versions]) for a in listed] == [
        ("facts", 2, [2, 1])
    ]
    assert "path" not in listed[0].versions[0].model_dump()  # a public view


def test_another_tenants_adapter_is_as_unknown_as_no_adapter(registry: AdapterRegistry) -> None:
    registry.put("a", "facts", record(1), T0)
    with pytest.raises(AdapterNotFound) as theirs:
        registry.resolve("b", AdapterRef(name="facts"))
    with pytest.raises(AdapterNotFound) as nobody:
        registry.resolve("b", AdapterRef(name="nothing"))
    assert theirs.value.message.replace("facts", "x") == nobody.value.message.replace(
        "nothing", "x"
    )
    assert registry.listing("b").items == []
    with pytest.raises(AdapterNotFound):
        registry.delete("b", "facts")
    assert registry.get("a", "facts").latest == 1


def test_forgetting_a_namespace_marks_its_versions_stale(registry: AdapterRegistry) -> None:
    registry.put("t", "facts", record(1, namespace="user:1"), T0)
    registry.put("t", "facts", record(2, namespace="user:2"), T0)
    registry.put("u", "facts", record(1, namespace="user:1"), T0)
    assert registry.mark_stale("t", "user:1") == 1
    assert registry.mark_stale("t", "user:1") == 0  # already stale
    versions = {v.version: v for v in registry.get("t", "facts").versions}
    assert versions[1].stale and versions[1].stale_at is not None
    assert "user:1" in (versions[1].stale_reason or "")
    assert not versions[2].stale and not registry.get("t", "facts").stale  # latest is v2
    assert not registry.get("u", "facts").stale  # another tenant's namespace of that name


def test_a_training_that_started_before_the_forget_is_stale_on_arrival(
    registry: AdapterRegistry,
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    registry.mark_stale("t", "user:1")  # forgotten while the job trained
    registry.put("t", "facts", record(1, namespace="user:1"), started)
    assert registry.get("t", "facts").stale
    later = datetime.now(UTC) + timedelta(seconds=5)  # began after the forget
    registry.put("t", "fresh", record(1, namespace="user:1"), later)
    assert not registry.get("t", "fresh").stale


def test_delete_removes_versions_and_their_files_only(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    dirs = [version_dir(tmp_path, "t", "facts", v) for v in (1, 2)]
    for v, d in enumerate(dirs, start=1):
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"x")
        registry.put("t", "facts", record(v, path=str(d)), T0)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    registry.put("t", "odd", record(1, path=str(outside)), T0)
    assert registry.delete("t", "facts", version=1).deleted_versions == [1]
    assert not dirs[0].exists() and dirs[1].exists()
    assert registry.get("t", "facts").latest == 2
    assert registry.delete("t", "facts").deleted_versions == [2]
    assert not dirs[1].exists()
    with pytest.raises(AdapterNotFound):
        registry.get("t", "facts")
    assert [a.name for a in registry.listing("t").items] == ["odd"]
    registry.delete("t", "odd")
    assert outside.exists()  # a record is not a licence to delete an arbitrary path


def test_tenant_directories_are_never_dot_names(tmp_path: Path) -> None:
    assert version_dir(tmp_path, "..", "facts", 1) == tmp_path / "%2E%2E" / "facts" / "v1"
    assert version_dir(tmp_path, "acme", "facts", 3) == tmp_path / "acme" / "facts" / "v3"


# ------------------------------------------------------------------------------ the model


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path) -> LoadedModel:
    return load_model(str(tiny_model_dir), explicit=True, data_dir=Path("."))


@pytest.fixture(scope="module")
def adapter_dir(lm: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from memq.contracts import MemoryKind, MemoryPublic

    memories = [
        MemoryPublic(
            id=f"m{i}",
            tenant="t",
            namespace="user:1",
            kind=MemoryKind.fact,
            text=text,
            created_at=T0,
            updated_at=T0,
            content_hash="0" * 64,
        )
        for i, text in enumerate(FACTS)
    ]
    examples = ExampleBuilder(lm.tokenizer, chat_template=False).build(
        memories, max_tokens=256, qa_variants=True
    )
    options = resolve_options(
        TrainingOptions(steps=20, learning_rate=2e-2, batch_size=4), lm.model, len(examples)
    )
    target = tmp_path_factory.mktemp("adapter") / "v1"
    assert train_adapter(lm.model, examples, options, target, pad_id=0) is not None
    return target


def logits(model: Any, lm: LoadedModel) -> torch.Tensor:
    ids = torch.tensor([lm.tokenizer.encode("Tell me about Zorvan.")])
    with torch.inference_mode():
        out: torch.Tensor = model(input_ids=ids).logits
    return out


def test_the_adapter_changes_the_logits_and_never_the_base(
    lm: LoadedModel, adapter_dir: Path
) -> None:
    before = logits(lm.model, lm)
    merged = adapted_model(lm.model, adapter_dir, merge=True)
    unmerged = adapted_model(lm.model, adapter_dir, merge=False)
    assert not torch.allclose(logits(merged, lm), before, atol=1e-4)
    assert torch.allclose(logits(merged, lm), logits(unmerged, lm), atol=1e-4)
    assert torch.equal(logits(lm.model, lm), before)
    # Merged: private copies of the target modules' weights; unmerged: only the LoRA ones.
    targets = sum(
        p.numel() * p.element_size()
        for n, p in lm.model.named_parameters()
        if ".c_attn." in n or ".c_proj." in n
    )
    assert private_bytes(merged, lm.model) >= targets
    assert 0 < private_bytes(unmerged, lm.model) < targets


class Recorder:
    """An engine factory that builds real engines and remembers them."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.built: list[Engine] = []
        self.closed: list[Engine] = []

    def __call__(self, adapted: LoadedModel) -> Engine:
        engine = build_engine(self.settings, adapted)
        close = engine.close

        def closing() -> None:
            self.closed.append(engine)
            close()

        engine.close = closing  # type: ignore[method-assign]
        self.built.append(engine)
        return engine


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(service_token="test", data_dir=tmp_path)  # type: ignore[arg-type]


def pool_with(
    lm: LoadedModel, registry: AdapterRegistry, factory: Recorder, capacity: int
) -> AdapterPool:
    return AdapterPool(lm, registry, factory, capacity=capacity)


def test_the_pool_loads_once_and_evicts_the_least_recently_used(
    lm: LoadedModel, adapter_dir: Path, registry: AdapterRegistry, settings: WorkerSettings
) -> None:
    for name in ("a", "b"):
        registry.put("t", name, record(1, path=str(adapter_dir), model=lm.name), T0)
    factory = Recorder(settings)
    pool = pool_with(lm, registry, factory, capacity=1)
    try:
        with pool.engine("t", AdapterRef(name="a")) as (first, served):
            assert (served.name, served.version, served.stale) == ("a", 1, False)
        with pool.engine("t", AdapterRef(name="a")) as (again, _):
            assert again is first
        assert len(factory.built) == 1
        with pool.engine("t", AdapterRef(name="b")) as (other, _):
            assert other is not first
        assert factory.closed == [first]  # capacity 1: `a` went when `b` came
        assert pool.stats()["loaded"] == ["t/b/v1"]
    finally:
        pool.close()


def test_an_adapter_in_use_is_not_evicted_under_it(
    lm: LoadedModel, adapter_dir: Path, registry: AdapterRegistry, settings: WorkerSettings
) -> None:
    for name in ("a", "b"):
        registry.put("t", name, record(1, path=str(adapter_dir), model=lm.name), T0)
    factory = Recorder(settings)
    pool = pool_with(lm, registry, factory, capacity=1)
    try:
        with pool.engine("t", AdapterRef(name="a")) as (held, _):
            with pool.engine("t", AdapterRef(name="b")):
                assert factory.closed == []  # both in use: over capacity for a while
            params = GenerationParams(max_new_tokens=3, temperature=0)
            out = held.generate(GenerationRequest(lm.tokenizer.encode("Zorvan"), params))
            assert len(out.token_ids) == 3
        assert len(factory.closed) == 1 and len(pool.stats()["loaded"]) == 1
    finally:
        pool.close()


def test_concurrent_first_uses_load_the_adapter_once(
    lm: LoadedModel, adapter_dir: Path, registry: AdapterRegistry, settings: WorkerSettings
) -> None:
    registry.put("t", "a", record(1, path=str(adapter_dir), model=lm.name), T0)
    factory = Recorder(settings)
    pool = pool_with(lm, registry, factory, capacity=2)
    barrier = threading.Barrier(4)

    def use(_: int) -> Engine:
        barrier.wait()
        with pool.engine("t", AdapterRef(name="a")) as (engine, _served):
            return engine

    try:
        with ThreadPoolExecutor(4) as threads:
            engines = list(threads.map(use, range(4)))
        assert len(factory.built) == 1 and all(e is engines[0] for e in engines)
    finally:
        pool.close()


def test_unknown_and_foreign_model_adapters_are_refused(
    lm: LoadedModel, adapter_dir: Path, registry: AdapterRegistry, settings: WorkerSettings
) -> None:
    registry.put("t", "gpt", record(1, path=str(adapter_dir), model="another-model"), T0)
    pool = pool_with(lm, registry, Recorder(settings), capacity=1)
    with pytest.raises(AdapterNotFound), pool.engine("t", AdapterRef(name="nope")):
        pass
    with (
        pytest.raises(AdapterIncompatible, match="another-model"),
        pool.engine("t", AdapterRef(name="gpt")),
    ):
        pass


# ------------------------------------------------------------------------------ pipeline


class NoMemory:
    def search(self, tenant: str, request: MemorySearchRequest) -> MemorySearchResponse:
        return MemorySearchResponse(hits=[])


class NoProgress:
    def token(self, tenant: str, job_id: str, tokens: int, text: str) -> None:
        pass

    def flush(self, timeout: float = 5.0) -> None:
        pass

    def forget(self, tenant: str, job_id: str) -> None:
        pass


class NeverCancelled:
    def watch(self, tenant: str, job_id: str) -> None:
        pass

    def unwatch(self, tenant: str, job_id: str) -> None:
        pass

    def is_cancelled(self, tenant: str, job_id: str) -> bool:
        return False


def job(request: GenerateJobRequest, job_id: str) -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(
        id=job_id,
        type=JobType.generate,
        status=JobStatus.running,
        tenant="t",
        created_at=now,
        timestamps={JobStatus.queued: now, JobStatus.running: now},
        request=request,
    )


def test_a_job_on_an_adapter_runs_on_its_engine_and_names_it(
    lm: LoadedModel, adapter_dir: Path, registry: AdapterRegistry, settings: WorkerSettings
) -> None:
    registry.put("t", "facts", record(1, path=str(adapter_dir), model=lm.name), T0)
    pool = pool_with(lm, registry, Recorder(settings), capacity=1)
    base_engine = build_engine(settings, lm)
    with ThreadPoolExecutor(2) as maps:
        runner = JobRunner(
            lm,
            base_engine,
            NoMemory(),
            NoProgress(),
            NeverCancelled(),
            maps,
            prompts=PlainPrompts(lm.tokenizer, lm.context_window),
            retrieval_query_chars=2000,
            adapters=pool,
        )
        try:
            params = GenerationParams(max_new_tokens=8, temperature=0)
            plain = GenerateJobRequest(prompt="Tell me about Zorvan.", params=params)
            on_adapter = plain.model_copy(update={"adapter": AdapterRef(name="facts")})
            base = runner.run(job(plain, "j1"))
            adapted = runner.run(job(on_adapter, "j2"))
            assert base.adapter is None
            assert adapted.adapter is not None and adapted.adapter.name == "facts"
            assert adapted.prompt_token_ids == base.prompt_token_ids
            assert adapted.text != base.text
            assert runner.engine is base_engine  # the runner itself was not switched
            missing = plain.model_copy(update={"adapter": AdapterRef(name="gone")})
            with pytest.raises(AdapterNotFound):
                runner.run(job(missing, "j3"))
        finally:
            pool.close()
            base_engine.close()
