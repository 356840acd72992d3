"""Prompt strategies: the similarity floor, where memories go for instruct models, and how
a chat prompt is filled (history, memories, summary) without ever cutting the user's text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from memq.contracts import ChatJobRequest, ChatRole, JobType, LeftOut, MemoryHit
from memq.errors import PromptTooLong
from worker.prompting import (
    FACTS_HEADER,
    PLAIN_CHAT_STOP,
    SUMMARY_HEADER,
    PlainPrompts,
    TemplatePrompts,
    Turn,
    gate,
    prompts_for,
)

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def plain_tok(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def chat_tok(tiny_model_dir: Path) -> Any:
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = TEMPLATE
    return tok


def _hit(i: int, text: str, similarity: float | None, score: float = 0.5) -> MemoryHit:
    return MemoryHit(id=f"m{i}", score=score, text=text, namespace="user:1", similarity=similarity)


def _chat(*messages: tuple[str, str], **fields: Any) -> ChatJobRequest:
    return ChatJobRequest.model_validate(
        {"messages": [{"role": r, "content": c} for r, c in messages], **fields}
    )


def test_gate_drops_memories_below_the_floor_and_orders_by_similarity() -> None:
    hits = [_hit(1, "a", 0.2), _hit(2, "b", 0.9), _hit(3, "c", 0.5), _hit(4, "d", None)]
    kept, left_out = gate(hits, 0.3)
    assert [h.id for h in kept] == ["m2", "m3", "m4"]  # no similarity: kept, ranked by score
    assert left_out == {"m1": LeftOut.below_similarity_floor}
    assert gate(hits, None)[1] == {}
    edge, out = gate([_hit(5, "e", 0.3)], 0.3)
    assert [h.id for h in edge] == ["m5"] and out == {}  # the floor itself is kept


def test_the_strategy_follows_the_tokenizer_unless_forced(plain_tok: Any, chat_tok: Any) -> None:
    assert isinstance(prompts_for(plain_tok, 1024), PlainPrompts)
    assert isinstance(prompts_for(chat_tok, 1024), TemplatePrompts)
    assert isinstance(prompts_for(chat_tok, 1024, "plain"), PlainPrompts)
    assert isinstance(prompts_for(plain_tok, 1024, "template"), TemplatePrompts)


def test_instruct_models_get_the_facts_in_the_users_message_best_last(chat_tok: Any) -> None:
    prompts = TemplatePrompts(chat_tok, 1024)
    hits = [_hit(1, "Alice lives in Paris.", 0.9), _hit(2, "Bob owns a cat.", 0.4)]
    built = prompts.generate("Where does Alice live?", hits, 16, 0.3)
    text = chat_tok.decode(built.input_ids)
    user = text[text.index("<|user|>") : text.index("<|assistant|>")]
    assert user.index(FACTS_HEADER) < user.index("Bob owns") < user.index("Alice lives")
    assert user.removesuffix("<|end|>").endswith("Question: Where does Alice live?")
    assert built.used_memory_ids == ["m1", "m2"] and built.left_out == {}
    assert built.prompt_tokens == len(chat_tok.encode("Where does Alice live?"))
    assert built.prompt_tokens + built.context_tokens == len(built.input_ids)
    alone = prompts.generate("Where does Alice live?", [], 16, 0.3)
    assert FACTS_HEADER not in chat_tok.decode(alone.input_ids)


def test_memories_that_do_not_fit_are_left_out_with_the_reason(chat_tok: Any) -> None:
    prompts = TemplatePrompts(chat_tok, 200)
    big = _hit(1, "The quick brown fox jumps over the lazy dog. " * 40, 0.95)
    small = _hit(2, "Alice lives in Paris.", 0.8)
    low = _hit(3, "Unrelated.", 0.1)
    built = prompts.generate("Where does Alice live?", [big, small, low], 16, 0.3)
    assert built.used_memory_ids == ["m2"]
    assert built.left_out == {
        "m1": LeftOut.did_not_fit,
        "m3": LeftOut.below_similarity_floor,
    }
    assert len(built.input_ids) + 16 <= 200


def test_the_users_text_is_never_cut(chat_tok: Any, plain_tok: Any) -> None:
    long = "Alice lives in Paris. " * 200
    for prompts in (TemplatePrompts(chat_tok, 256), PlainPrompts(plain_tok, 256)):
        with pytest.raises(PromptTooLong):
            prompts.chat(_chat(("user", long)), [], None, [], 16, None)
        with pytest.raises(PromptTooLong):
            prompts.generate(long, [], 16, None)


def test_a_chat_prompt_keeps_recent_turns_newest_first_with_the_summary(chat_tok: Any) -> None:
    prompts = TemplatePrompts(chat_tok, 400)
    history = [
        Turn(ChatRole.user if n % 2 == 0 else ChatRole.assistant, f"turn {n} " + "x " * 20)
        for n in range(30)
    ]
    built = prompts.chat(
        _chat(("system", "Be terse."), ("user", "And now?")),
        history,
        "They talked about foxes.",
        [_hit(1, "Alice lives in Paris.", 0.9)],
        32,
        0.3,
    )
    text = chat_tok.decode(built.input_ids)
    assert text.startswith("<|system|>Be terse.")
    assert f"{SUMMARY_HEADER}\nThey talked about foxes." in text
    kept = [n for n in range(30) if f"turn {n} " in text]
    assert kept and kept == list(range(kept[0], 30))  # a suffix: the newest turns
    assert kept[0] > 0  # not everything fits in 400 tokens
    assert "Alice lives in Paris." in text[text.rindex("<|user|>") :]  # facts in the last message
    assert len(built.input_ids) + 32 <= 400


def test_plain_chat_is_a_transcript_that_stops_at_the_next_user_turn(plain_tok: Any) -> None:
    prompts = PlainPrompts(plain_tok, 1024)
    history = [Turn(ChatRole.user, "Hi."), Turn(ChatRole.assistant, "Hello.")]
    built = prompts.chat(_chat(("user", "Where?")), history, None, [], 16, None)
    text = plain_tok.decode(built.input_ids)
    assert text == "User: Hi.\nAssistant: Hello.\nUser: Where?\nAssistant:"
    assert prompts.chat_stop() == PLAIN_CHAT_STOP


def test_template_sizes_are_published_for_the_gateway(chat_tok: Any, plain_tok: Any) -> None:
    for prompts in (TemplatePrompts(chat_tok, 1024), PlainPrompts(plain_tok, 1024)):
        sizes = prompts.template_tokens()
        assert set(sizes) == {JobType.generate, JobType.summarize, JobType.chat}
        assert all(v >= 0 for v in sizes.values())
    assert PlainPrompts(plain_tok, 1024).template_tokens()[JobType.generate] == 0
