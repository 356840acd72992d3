"""Consolidation's training data: the subject a fact is about, the questions asked of it,
and the token-level examples built from memories (text windows never cut, loss only on
the answer, chat-template rendering as generate prompts are). Real tokenizer."""

from __future__ import annotations

import pytest

from memq.contracts import MemoryKind
from tests.worker.helpers import CHAT_TEMPLATE, FACTS, memory
from worker.model_loader import LoadedModel
from worker.training_data import IGNORE, ExampleBuilder, questions_for, subject_of


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


def test_plain_examples_train_the_answer_only(tiny_lm: LoadedModel) -> None:
    builder = ExampleBuilder(tiny_lm.tokenizer, chat_template=False)
    examples = builder.build([memory(FACTS[0])], max_tokens=128, qa_variants=True)
    text, *qa = examples
    assert text.labels == text.input_ids  # the memory itself: every token counts
    assert tiny_lm.tokenizer.decode(text.input_ids) == FACTS[0] + tiny_lm.tokenizer.eos_token
    assert len(qa) == 2
    for example in qa:
        answer = [t for t in example.labels if t != IGNORE]
        assert tiny_lm.tokenizer.decode(answer) == f" {FACTS[0]}{tiny_lm.tokenizer.eos_token}"
        prompt = tiny_lm.tokenizer.decode(example.input_ids[: len(example.input_ids) - len(answer)])
        assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")
        assert example.labels[: len(example.labels) - len(answer)] == [IGNORE] * (
            len(example.labels) - len(answer)
        )


def test_chat_template_examples_are_rendered_as_generate_prompts_are(
    tiny_lm: LoadedModel,
) -> None:
    tokenizer = tiny_lm.tokenizer
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


def test_only_facts_get_question_variants(tiny_lm: LoadedModel) -> None:
    builder = ExampleBuilder(tiny_lm.tokenizer, chat_template=False)
    kinds = [MemoryKind.message, MemoryKind.document_chunk, MemoryKind.summary]
    examples = builder.build(
        [memory(FACTS[0], kind) for kind in kinds], max_tokens=128, qa_variants=True
    )
    assert len(examples) == 3 and all(e.labels == e.input_ids for e in examples)
    off = builder.build([memory(FACTS[0])], max_tokens=128, qa_variants=False)
    assert len(off) == 1


def test_a_long_memory_is_split_into_windows_never_cut(tiny_lm: LoadedModel) -> None:
    builder = ExampleBuilder(tiny_lm.tokenizer, chat_template=False)
    long_text = " ".join(FACTS * 12)
    ids = [*builder.encode(long_text), tiny_lm.tokenizer.eos_token_id]
    windows = builder.build([memory(long_text)], max_tokens=32, qa_variants=True)
    assert all(len(w.input_ids) <= 32 for w in windows)
    assert len(windows) > 1  # and no question variant: the memory does not fit one example
    covered: set[int] = set()
    stride = 32 - 32 // 4
    for i, w in enumerate(windows):
        assert w.input_ids == ids[i * stride : i * stride + 32]
        covered |= set(range(i * stride, i * stride + len(w.input_ids)))
    assert covered == set(range(len(ids)))
