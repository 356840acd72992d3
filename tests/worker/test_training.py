"""Consolidation's training half: LoRA training on the tiny GPT-2, the options it resolves,
the one-at-a-time slot, and what a consolidate job selects. Real models and tokenizers, no
mocks of torch or peft."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from memq.contracts import (
    ConsolidateJobRequest,
    MemoryFilter,
    MemoryKind,
    MemoryPublic,
    TrainingOptions,
)
from memq.errors import InvalidInput
from tests.worker.helpers import FACTS, memory
from worker.model_loader import LoadedModel, load_model
from worker.training import (
    Consolidator,
    NoMemoriesToConsolidate,
    TrainingBusy,
    TrainingSlot,
    resolve_options,
    train_adapter,
)
from worker.training_data import ExampleBuilder


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path) -> LoadedModel:
    return load_model(str(tiny_model_dir), explicit=True, data_dir=Path("."))


def state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ training


def test_options_are_resolved_from_the_architecture_and_the_example_count(
    lm: LoadedModel,
) -> None:
    resolved = resolve_options(TrainingOptions(epochs=3, batch_size=4, rank=8), lm.model, 10)
    assert (resolved.steps, resolved.alpha) == (9, 16)  # ceil(10 / 4) × 3; 2 × rank
    assert resolved.target_modules == ["c_attn", "c_proj"]
    assert resolve_options(TrainingOptions(), lm.model, 8).steps == 5  # 1 batch × 5 epochs
    explicit = TrainingOptions(steps=7, alpha=3, target_modules=["c_attn"])
    assert resolve_options(explicit, lm.model, 100) == explicit


def test_training_lowers_the_loss_and_leaves_the_served_model_alone(
    lm: LoadedModel, tmp_path: Path
) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    examples = builder.build([memory(f) for f in FACTS], max_tokens=256, qa_variants=True)
    options = resolve_options(
        TrainingOptions(steps=25, learning_rate=1e-2, batch_size=4), lm.model, len(examples)
    )
    before = state(lm.model)
    seen: list[tuple[int, int, float]] = []
    outcome = train_adapter(
        lm.model,
        examples,
        options,
        tmp_path / "v1",
        pad_id=lm.eos_token_id or 0,
        on_step=lambda step, total, loss: seen.append((step, total, loss)),
    )
    assert outcome is not None
    assert outcome.loss[-1] < outcome.loss[0]
    assert [(s, t) for s, t, _ in seen] == [(s, 25) for s in range(1, 26)]
    assert [loss for _, _, loss in seen] == outcome.loss
    assert outcome.examples == len(examples) == 9  # 3 texts + 2 questions each
    assert (tmp_path / "v1" / "adapter_config.json").is_file()
    assert outcome.size_bytes == sum(f.stat().st_size for f in (tmp_path / "v1").iterdir())
    after = state(lm.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_with_the_same_seed_is_reproducible(lm: LoadedModel, tmp_path: Path) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    examples = builder.build([memory(f) for f in FACTS], max_tokens=64, qa_variants=True)
    options = resolve_options(TrainingOptions(steps=4, seed=3), lm.model, len(examples))
    runs = [
        train_adapter(lm.model, examples, options, tmp_path / str(i), pad_id=0) for i in range(2)
    ]
    assert runs[0] is not None and runs[1] is not None
    assert runs[0].loss == runs[1].loss


def test_a_cancelled_training_stops_between_steps_and_saves_nothing(
    lm: LoadedModel, tmp_path: Path
) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    examples = builder.build([memory(FACTS[0])], max_tokens=64, qa_variants=False)
    options = resolve_options(TrainingOptions(steps=100), lm.model, len(examples))
    steps: list[int] = []
    outcome = train_adapter(
        lm.model,
        examples,
        options,
        tmp_path / "v1",
        pad_id=0,
        on_step=lambda step, _total, _loss: steps.append(step),
        is_cancelled=lambda: len(steps) >= 3,
    )
    assert outcome is None and steps == [1, 2, 3]
    assert not (tmp_path / "v1").exists()


def test_an_unknown_target_module_is_a_clear_error(lm: LoadedModel, tmp_path: Path) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    examples = builder.build([memory(FACTS[0])], max_tokens=64, qa_variants=False)
    options = resolve_options(
        TrainingOptions(steps=1, target_modules=["q_proj"]), lm.model, len(examples)
    )
    with pytest.raises(InvalidInput, match=r"training\.target_modules"):
        train_adapter(lm.model, examples, options, tmp_path / "v1", pad_id=0)


def test_one_training_at_a_time() -> None:
    slot = TrainingSlot()
    with slot.hold():
        assert slot.busy
        with pytest.raises(TrainingBusy), slot.hold():
            pass
    assert not slot.busy
    with slot.hold():  # free again
        pass


# ------------------------------------------------------------------------------ selection


class Lister:
    def __init__(self, memories: list[MemoryPublic]) -> None:
        self.memories = memories
        self.calls: list[dict[str, Any]] = []

    def list_all(
        self,
        tenant: str,
        namespace: str,
        *,
        kinds: list[MemoryKind] | None = None,
        where: MemoryFilter | None = None,
        limit: int = 1000,
    ) -> list[MemoryPublic]:
        self.calls.append({"namespace": namespace, "kinds": kinds, "where": where, "limit": limit})
        return self.memories[:limit]


def consolidator(lm: LoadedModel, memories: list[MemoryPublic], root: Path) -> Consolidator:
    return Consolidator(lm, Lister(memories), registry=None, root=root, chat_template=False)  # type: ignore[arg-type]


def test_selection_is_oldest_first_and_filters_by_id(lm: LoadedModel, tmp_path: Path) -> None:
    found = [memory(FACTS[i], n=i) for i in (2, 0, 1)]
    request = ConsolidateJobRequest(adapter="a", namespace="user:1")
    assert [m.id for m in consolidator(lm, found, tmp_path).select("t", request)] == [
        "m0",
        "m1",
        "m2",
    ]
    some = ConsolidateJobRequest(adapter="a", namespace="user:1", memory_ids=["m2", "m0"])
    assert [m.id for m in consolidator(lm, found, tmp_path).select("t", some)] == ["m0", "m2"]
    missing = ConsolidateJobRequest(adapter="a", namespace="user:1", memory_ids=["m0", "m9"])
    with pytest.raises(InvalidInput, match="m9"):
        consolidator(lm, found, tmp_path).select("t", missing)


def test_an_empty_or_oversized_selection_is_refused(lm: LoadedModel, tmp_path: Path) -> None:
    request = ConsolidateJobRequest(adapter="a", namespace="user:1")
    with pytest.raises(NoMemoriesToConsolidate, match="user:1"):
        consolidator(lm, [], tmp_path).select("t", request)
    many = [memory(f"Fact number {i}.", n=i) for i in range(1001)]
    with pytest.raises(InvalidInput, match="more than 1,000"):
        consolidator(lm, many, tmp_path).select("t", request)
