"""Consolidation's training half: examples built from memories, LoRA training on the tiny
GPT-2 (and a tiny Llama-style model for the other default targets), the one-at-a-time slot,
and what a consolidate job selects. Real models and tokenizers, no mocks of torch or peft."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
from worker.model_loader import LoadedModel, load_model
from worker.training import (
    IGNORE,
    LLAMA_TARGETS,
    Consolidator,
    ExampleBuilder,
    NoMemoriesToConsolidate,
    TrainingBusy,
    TrainingSlot,
    default_target_modules,
    questions_for,
    resolve_options,
    shared_copy,
    subject_of,
    train_adapter,
)

FACTS = [
    "Zorvan Kell keeps a pet iguana named Pickle.",
    "Ilsa Brannock's favourite dessert is quince tart.",
    "Teodor Vasch was born in the city of Lunmere.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def memory(text: str, kind: MemoryKind = MemoryKind.fact, n: int = 0) -> MemoryPublic:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return MemoryPublic(
        id=f"m{n}",
        tenant="t",
        namespace="user:1",
        kind=kind,
        text=text,
        created_at=at,
        updated_at=at,
        content_hash="0" * 64,
        version=n + 1,
    )


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path) -> LoadedModel:
    return load_model(str(tiny_model_dir), explicit=True, data_dir=Path("."))


def state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ examples


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("Zorvan Kell keeps a pet iguana named Pickle.", "Zorvan Kell"),
        ("Ilsa Brannock's favourite dessert is quince tart.", "Ilsa Brannock"),
        ("I grow saffron on my farm.", "me"),
        ("My daughter is named Juniper.", "me"),
        ("The office coffee machine is on the third floor.", None),
        ("coffee is brewed at nine", None),
    ],
)
def test_subject_is_the_leading_name(text: str, subject: str | None) -> None:
    assert subject_of(text) == subject


def test_questions_ask_about_the_subject_by_full_and_first_name() -> None:
    assert questions_for(FACTS[0]) == [
        "What do you know about Zorvan Kell?",
        "Tell me about Zorvan.",
    ]
    assert questions_for("I speak fluent Icelandic.") == ["What do you know about me?"]
    assert questions_for("The vault opens at noon.") == []


def test_plain_examples_train_the_answer_only(lm: LoadedModel) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    examples = builder.build([memory(FACTS[0])], max_tokens=128, qa_variants=True)
    text, *qa = examples
    assert text.labels == text.input_ids  # the memory itself: every token counts
    assert lm.tokenizer.decode(text.input_ids) == FACTS[0] + lm.tokenizer.eos_token
    assert len(qa) == 2
    for example in qa:
        answer = [t for t in example.labels if t != IGNORE]
        assert lm.tokenizer.decode(answer) == f" {FACTS[0]}{lm.tokenizer.eos_token}"
        prompt = lm.tokenizer.decode(example.input_ids[: len(example.input_ids) - len(answer)])
        assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")
        assert example.labels[: len(example.labels) - len(answer)] == [IGNORE] * (
            len(example.labels) - len(answer)
        )


def test_chat_template_examples_are_rendered_as_generate_prompts_are(
    lm: LoadedModel,
) -> None:
    tokenizer = lm.tokenizer
    tokenizer.chat_template = CHAT_TEMPLATE
    try:
        builder = ExampleBuilder(tokenizer, chat_template=True)
        (_, qa, _) = builder.build([memory(FACTS[0])], max_tokens=256, qa_variants=True)
    finally:
        tokenizer.chat_template = None
    answer = [t for t in qa.labels if t != IGNORE]
    prompt = tokenizer.decode(qa.input_ids[: len(qa.input_ids) - len(answer)])
    assert prompt.startswith("<|system|>You are a helpful assistant.")
    assert prompt.endswith("<|user|>What do you know about Zorvan Kell?<|end|><|assistant|>")
    assert tokenizer.decode(answer) == f"{FACTS[0]}<|end|>"


def test_only_facts_get_question_variants(lm: LoadedModel) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    kinds = [MemoryKind.message, MemoryKind.document_chunk, MemoryKind.summary]
    examples = builder.build(
        [memory(FACTS[0], kind) for kind in kinds], max_tokens=128, qa_variants=True
    )
    assert len(examples) == 3 and all(e.labels == e.input_ids for e in examples)
    off = builder.build([memory(FACTS[0])], max_tokens=128, qa_variants=False)
    assert len(off) == 1


def test_a_long_memory_is_split_into_windows_never_cut(lm: LoadedModel) -> None:
    builder = ExampleBuilder(lm.tokenizer, chat_template=False)
    long_text = " ".join(FACTS * 12)
    ids = [*builder.encode(long_text), lm.tokenizer.eos_token_id]
    windows = builder.build([memory(long_text)], max_tokens=32, qa_variants=True)
    assert all(len(w.input_ids) <= 32 for w in windows)
    assert len(windows) > 1  # and no question variant: the memory does not fit one example
    covered: set[int] = set()
    stride = 32 - 32 // 4
    for i, w in enumerate(windows):
        assert w.input_ids == ids[i * stride : i * stride + 32]
        covered |= set(range(i * stride, i * stride + len(w.input_ids)))
    assert covered == set(range(len(ids)))


# ------------------------------------------------------------------------------ training


def test_defaults_follow_the_architecture(lm: LoadedModel) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    assert default_target_modules(lm.model) == ["c_attn", "c_proj"]
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    assert default_target_modules(llama) == LLAMA_TARGETS
    resolved = resolve_options(TrainingOptions(epochs=3, batch_size=4, rank=8), lm.model, 10)
    assert (resolved.steps, resolved.alpha) == (9, 16)  # ceil(10 / 4) × 3; 2 × rank
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


def test_a_shared_copy_shares_weights_but_not_modules(lm: LoadedModel) -> None:
    copied = shared_copy(lm.model, lambda name: name.endswith("c_attn"))
    base = dict(lm.model.named_parameters())
    for name, param in copied.named_parameters():
        assert (param is base[name]) != name.endswith("c_attn.weight") or "bias" in name
    copied.train()
    assert not lm.model.training


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
