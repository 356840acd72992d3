"""Context assembly: memories best-first while they fit; the user's text is never cut."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from memq.contracts import MemoryHit
from memq.errors import PromptTooLong
from worker.prompt import assemble, encode, split_tokens


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def _hit(i: int, text: str, score: float) -> MemoryHit:
    return MemoryHit(id=f"m{i}", score=score, text=text, namespace="user:1")


def test_memories_are_added_best_score_first(tok) -> None:  # type: ignore[no-untyped-def]
    hits = [_hit(1, "Bob owns a cat.", 0.2), _hit(2, "Alice lives in Paris.", 0.9)]
    user = encode(tok, "Where does Alice live?")
    out = assemble(tok, user, hits, max_new_tokens=10, context_window=1024)
    text = tok.decode(out.input_ids)
    assert out.used_memory_ids == ["m2", "m1"]
    assert text.index("Alice lives in Paris.") < text.index("Bob owns a cat.")
    assert text.endswith("Where does Alice live?")
    assert out.prompt_tokens == len(user)
    assert out.prompt_tokens + out.context_tokens == len(out.input_ids)


def test_memories_that_do_not_fit_are_left_out_but_user_text_is_whole(tok) -> None:  # type: ignore[no-untyped-def]
    long_memory = "The quick brown fox jumps over the lazy dog. " * 60
    hits = [_hit(1, long_memory, 0.99), _hit(2, "Alice lives in Paris.", 0.5)]
    user = encode(tok, "Alice lives in Paris. " * 100)
    window = len(user) + 100
    out = assemble(tok, user, hits, max_new_tokens=50, context_window=window)
    assert out.used_memory_ids == ["m2"]  # the big one does not fit; the small one does
    assert out.input_ids[-len(user) :] == user
    assert len(out.input_ids) + 50 <= window


def test_prompt_that_cannot_fit_with_max_new_tokens_is_rejected_with_counts(tok) -> None:  # type: ignore[no-untyped-def]
    user = list(range(1000))
    with pytest.raises(PromptTooLong, match=r"1,000 tokens .* model context is 1,024"):
        assemble(tok, user, [], max_new_tokens=64, context_window=1024)


def test_no_memories_means_no_template(tok) -> None:  # type: ignore[no-untyped-def]
    user = encode(tok, "Hello")
    out = assemble(tok, user, [], max_new_tokens=5, context_window=1024)
    assert out.input_ids == user and out.context_tokens == 0


def test_split_tokens_covers_everything_with_overlap() -> None:
    ids = list(range(25))
    chunks = split_tokens(ids, 10, overlap=2)
    assert chunks[0] == list(range(10))
    assert chunks[1][:2] == [8, 9]
    assert chunks[-1][-1] == 24
    assert all(len(c) <= 10 for c in chunks)
