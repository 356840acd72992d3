"""Prompt assembly: the plain-text context (memories best-first while they fit, the user's
text never cut), token chunks for summaries, and the prompt strategies: the similarity
floor, where memories go for instruct models, and how a chat prompt is filled (history,
memories, summary) without ever cutting the user's text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer

from memq.contracts import ChatJobRequest, ChatRole, JobType, LeftOut, MemoryHit
from memq.errors import PromptTooLong
from tests.worker.helpers import CHAT_TEMPLATE
from worker.prompting import (
    FACTS_HEADER,
    PLAIN_CHAT_STOP,
    SUMMARY_HEADER,
    TLDR,
    PlainPrompts,
    TemplatePrompts,
    Turn,
    assemble,
    encode,
    gate,
    prompts_for,
    split_tokens,
)


@pytest.fixture(scope="module")
def plain_tok(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def chat_tok(tiny_model_dir: Path) -> Any:
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = CHAT_TEMPLATE
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
    hits = [_hit(1, "Alice lives in Paris.", 0.9), _hit(2, "Alice owns a cat.", 0.4)]
    built = prompts.generate("Where does Alice live?", hits, 16, 0.3)
    text = chat_tok.decode(built.input_ids)
    user = text[text.index("<|user|>") : text.index("<|assistant|>")]
    assert user.index(FACTS_HEADER) < user.index("Alice owns") < user.index("Alice lives")
    assert user.removesuffix("<|end|>").endswith("Question: Where does Alice live?")
    assert built.used_memory_ids == ["m1", "m2"] and built.left_out == {}
    assert built.prompt_tokens == len(chat_tok.encode("Where does Alice live?"))
    assert built.prompt_tokens + built.context_tokens == len(built.input_ids)
    alone = prompts.generate("Where does Alice live?", [], 16, 0.3)
    assert FACTS_HEADER not in chat_tok.decode(alone.input_ids)


def test_memories_that_do_not_fit_are_left_out_with_the_reason(chat_tok: Any) -> None:
    prompts = TemplatePrompts(chat_tok, 260)
    big = _hit(1, "Alice saw the quick brown fox jump over the lazy dog. " * 40, 0.95)
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


# ------------------------------------------------- plain-text context and token chunks


def _scored(i: int, text: str, score: float) -> MemoryHit:
    return MemoryHit(id=f"m{i}", score=score, text=text, namespace="user:1")


def test_memories_are_added_best_score_first(plain_tok: Any) -> None:
    hits = [_scored(1, "Bob owns a cat.", 0.2), _scored(2, "Alice lives in Paris.", 0.9)]
    user = encode(plain_tok, "Where does Alice live?")
    out = assemble(plain_tok, user, hits, max_new_tokens=10, context_window=1024)
    text = plain_tok.decode(out.input_ids)
    assert out.used_memory_ids == ["m2", "m1"]
    assert text.index("Alice lives in Paris.") < text.index("Bob owns a cat.")
    assert text.endswith("Where does Alice live?")
    assert out.prompt_tokens == len(user)
    assert out.prompt_tokens + out.context_tokens == len(out.input_ids)


def test_memories_that_do_not_fit_are_left_out_but_user_text_is_whole(plain_tok: Any) -> None:
    long_memory = "The quick brown fox jumps over the lazy dog. " * 60
    hits = [_scored(1, long_memory, 0.99), _scored(2, "Alice lives in Paris.", 0.5)]
    user = encode(plain_tok, "Alice lives in Paris. " * 100)
    window = len(user) + 100
    out = assemble(plain_tok, user, hits, max_new_tokens=50, context_window=window)
    assert out.used_memory_ids == ["m2"]  # the big one does not fit; the small one does
    assert out.input_ids[-len(user) :] == user
    assert len(out.input_ids) + 50 <= window


def test_prompt_that_cannot_fit_with_max_new_tokens_is_rejected_with_counts(plain_tok: Any) -> None:
    user = list(range(1000))
    with pytest.raises(PromptTooLong, match=r"1,000 tokens .* model context is 1,024"):
        assemble(plain_tok, user, [], max_new_tokens=64, context_window=1024)


def test_no_memories_means_no_template(plain_tok: Any) -> None:
    user = encode(plain_tok, "Hello")
    out = assemble(plain_tok, user, [], max_new_tokens=5, context_window=1024)
    assert out.input_ids == user and out.context_tokens == 0


def test_split_tokens_covers_everything_with_overlap() -> None:
    ids = list(range(25))
    chunks = split_tokens(ids, 10, overlap=2)
    assert chunks[0] == list(range(10))
    assert chunks[1][:2] == [8, 9]
    assert chunks[-1][-1] == 24
    assert all(len(c) <= 10 for c in chunks)


class CharTokenizer:
    """One token per character; adds a BOS token (id 0) only when asked to."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [ord(c) for c in text]


def _text(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids)


def test_context_layout_is_header_memory_lines_blank_line_then_user_text(plain_tok: Any) -> None:
    hits = [_scored(1, "Bob   owns\na cat.", 0.2), _scored(2, " Alice lives in Paris. ", 0.9)]
    user = encode(plain_tok, "Where does Alice live?")

    out = assemble(plain_tok, user, hits, max_new_tokens=10, context_window=1024)

    assert plain_tok.decode(out.input_ids) == (
        "Relevant memories:\n- Alice lives in Paris.\n- Bob owns a cat.\n\nWhere does Alice live?"
    )


def test_suffix_follows_the_user_text_and_counts_as_context() -> None:
    tok = CharTokenizer()
    hits = [_scored(1, "x y", 0.5)]
    user, suffix = encode(tok, "hello"), encode(tok, TLDR)

    out = assemble(tok, user, hits, max_new_tokens=5, context_window=200, suffix_ids=suffix)

    context = "Relevant memories:\n- x y\n\n"
    assert _text(out.input_ids) == context + "hello" + TLDR
    assert out.prompt_tokens == 5
    assert out.context_tokens == len(context) + len(TLDR)
    assert out.used_memory_ids == ["m1"]


def test_encode_adds_no_special_tokens() -> None:
    # A BOS token in the middle of an assembled prompt would corrupt it.
    assert encode(CharTokenizer(), "ab") == [ord("a"), ord("b")]


def test_summarize_template_is_gpt2s_tldr_cue_after_a_blank_line(plain_tok: Any) -> None:
    assert TLDR == "\n\nTL;DR:"
    sizes = PlainPrompts(plain_tok, 1024).template_tokens()
    assert sizes[JobType.generate] == 0
    assert sizes[JobType.summarize] == len(encode(plain_tok, "\n\nTL;DR:"))


def _frame(tok: CharTokenizer, *memories: str) -> int:
    """Tokens that memories take in the context: header, one line each, footer."""
    lines = sum(len(f"- {m}\n") for m in memories)
    return len(encode(tok, "Relevant memories:\n")) + lines + len(encode(tok, "\n"))


@pytest.mark.parametrize("suffix", ["", TLDR])
def test_a_memory_that_fills_the_room_exactly_is_used_one_token_less_room_is_not(
    suffix: str,
) -> None:
    tok = CharTokenizer()
    user, suffix_ids = encode(tok, "question?"), encode(tok, suffix)
    hits = [_scored(1, "first memory", 0.9), _scored(2, "second", 0.8)]
    exact = len(user) + len(suffix_ids) + 7 + _frame(tok, "first memory", "second")

    both = assemble(tok, user, hits, max_new_tokens=7, context_window=exact, suffix_ids=suffix_ids)
    one = assemble(
        tok, user, hits, max_new_tokens=7, context_window=exact - 1, suffix_ids=suffix_ids
    )

    assert both.used_memory_ids == ["m1", "m2"]
    assert len(both.input_ids) + 7 == exact
    assert one.used_memory_ids == ["m1"]
    assert len(one.input_ids) + 7 == exact - len("- second\n")


def test_a_lower_scored_memory_that_fits_is_used_after_a_bigger_one_did_not() -> None:
    tok = CharTokenizer()
    user = encode(tok, "q")
    hits = [_scored(1, "big " * 20, 0.9), _scored(2, "small", 0.5), _scored(3, "tiny", 0.1)]
    window = len(user) + 3 + _frame(tok, "small", "tiny")

    out = assemble(tok, user, hits, max_new_tokens=3, context_window=window)

    assert out.used_memory_ids == ["m2", "m3"]
    assert _text(out.input_ids) == "Relevant memories:\n- small\n- tiny\n\nq"


def test_no_memory_fits_means_no_header_either() -> None:
    tok = CharTokenizer()
    user = encode(tok, "question")
    window = len(user) + 4 + _frame(tok, "abc") - 1

    out = assemble(tok, user, [_scored(1, "abc", 0.9)], max_new_tokens=4, context_window=window)

    assert out.input_ids == user and out.used_memory_ids == [] and out.context_tokens == 0


@given(
    texts=st.lists(st.text("abc ", min_size=1, max_size=40), max_size=8),
    user_len=st.integers(1, 60),
    new=st.integers(1, 60),
    spare=st.integers(0, 200),
)
def test_assembled_prompt_never_exceeds_the_window_and_keeps_the_user_text(
    texts: list[str], user_len: int, new: int, spare: int
) -> None:
    tok = CharTokenizer()
    user = encode(tok, "u" * user_len)
    hits = [_scored(i, t, score=1.0 - i / 10) for i, t in enumerate(texts)]
    window = user_len + new + spare

    out = assemble(tok, user, hits, max_new_tokens=new, context_window=window)

    assert len(out.input_ids) + new <= window
    assert out.input_ids[-user_len:] == user
    assert out.prompt_tokens + out.context_tokens == len(out.input_ids)
    used = [int(i[1:]) for i in out.used_memory_ids]
    assert used == sorted(used)  # best score first
    if _frame(tok, *(" ".join(t.split()) for t in texts)) <= spare:
        assert len(used) == len(texts)  # everything fits: nothing left out


def test_split_tokens_without_overlap_cuts_consecutive_chunks() -> None:
    ids = list(range(25))

    assert split_tokens(ids, 10) == [ids[0:10], ids[10:20], ids[20:25]]
    assert split_tokens(ids[:20], 10) == [ids[0:10], ids[10:20]]
    assert split_tokens([], 10) == []


@pytest.mark.parametrize(
    ("n", "chunk", "overlap", "starts"),
    [(25, 10, 2, [0, 8, 16]), (18, 10, 2, [0, 8]), (10, 10, 3, [0]), (11, 4, 3, list(range(8)))],
)
def test_split_tokens_chunks_overlap_and_the_last_one_reaches_the_end(
    n: int, chunk: int, overlap: int, starts: list[int]
) -> None:
    ids = list(range(n))

    assert split_tokens(ids, chunk, overlap) == [ids[s : s + chunk] for s in starts]


@pytest.mark.parametrize(("chunk", "overlap"), [(3, 3), (2, 5)])
def test_split_tokens_rejects_an_overlap_not_smaller_than_the_chunk(
    chunk: int, overlap: int
) -> None:
    with pytest.raises(ValueError) as err:
        split_tokens(list(range(10)), chunk, overlap)
    assert str(err.value) == "chunk must be larger than overlap"
    assert split_tokens(list(range(10)), overlap + 1, overlap)[0] == list(range(overlap + 1))
