"""`no_repeat_ngram_size`: the incremental bans equal Hugging Face's processor at every
step, and both engines decode token-for-token alike with it set."""

from __future__ import annotations

import random

import pytest
import torch
from pydantic import ValidationError
from transformers import NoRepeatNGramLogitsProcessor

from memq.contracts import GenerationParams
from tests.worker.engine.helpers import outputs, request, run_concurrently
from worker.engine.batched import BatchedEngine
from worker.engine.sampling import NGramBans, OutputNGramProcessor
from worker.engine.simple import SimpleEngine
from worker.model_loader import LoadedModel

VOCAB = 16


def _hf_banned(n: int, ids: list[int]) -> set[int]:
    scores = torch.zeros((1, VOCAB))
    out = NoRepeatNGramLogitsProcessor(n)(torch.tensor([ids], dtype=torch.long), scores)
    return {int(t) for t in torch.nonzero(out[0] == -float("inf")).flatten()}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("prompt_len", [0, 1, 5, 40])
def test_bans_equal_hugging_face_after_every_generated_token(n: int, prompt_len: int) -> None:
    rng = random.Random(n * 100 + prompt_len)
    # Three tokens only: n-grams recur, so most steps ban something.
    prompt = [rng.randrange(3) for _ in range(prompt_len)]
    generated = [rng.randrange(3) for _ in range(60)]
    bans = NGramBans(n, prompt)
    banned_somewhere = False

    for step in range(len(generated) + 1):
        bans.sync(generated[:step])
        seen = prompt + generated[:step]
        want = _hf_banned(n, seen) if seen else set()
        assert bans.banned() == want, f"step {step}"
        banned_somewhere |= bool(want)

    assert banned_somewhere


def test_sync_adds_only_the_tokens_not_yet_seen() -> None:
    bans = NGramBans(2, [1, 2])
    bans.sync([3])
    bans.sync([3])  # again: nothing new
    bans.sync([3, 1])

    assert bans.banned() == {2}  # "1 2" was seen; "3 3" never was
    bans.extend([3])
    assert bans.banned() == {1}  # "3 1" was seen once


def test_no_bans_before_a_whole_ngram_fits() -> None:
    assert NGramBans(3, [4]).banned() == set()
    assert NGramBans(3, [4, 4]).banned() == set()  # "4 4 ?" needs a third token seen
    assert NGramBans(3, [4, 4, 4]).banned() == {4}


def test_only_positive_sizes_make_bans() -> None:
    assert NGramBans.for_params(GenerationParams(), [1, 2, 3]) is None
    assert NGramBans.for_params(GenerationParams(no_repeat_ngram_size=2), [1]) is not None
    with pytest.raises(ValueError, match="n-gram size"):
        NGramBans(0, [])


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_output_scope_bans_only_repeats_within_the_output(n: int) -> None:
    rng = random.Random(n)
    prompt = [rng.randrange(3) for _ in range(30)]
    generated = [rng.randrange(3) for _ in range(50)]
    bans = NGramBans(n, prompt, include_prompt=False)
    processor = OutputNGramProcessor(n, len(prompt))

    for step in range(len(generated) + 1):
        bans.sync(generated[:step])
        want = _hf_banned(n, generated[:step]) if step else set()
        assert bans.banned() == want, f"step {step}"
        scores = processor(torch.tensor([prompt + generated[:step]]), torch.zeros((1, VOCAB)))
        assert {int(t) for t in torch.nonzero(scores[0] == -float("inf")).flatten()} == want
    # Scope `all` bans what the prompt alone already holds; scope `output` does not.
    assert NGramBans(2, [1, 2, 1]).banned() == {2}
    assert NGramBans(2, [1, 2, 1], include_prompt=False).banned() == set()


def test_output_scope_is_memqs_own_rule_not_hugging_faces() -> None:
    params = GenerationParams(no_repeat_ngram_size=4, no_repeat_ngram_scope="output")
    assert "no_repeat_ngram_size" not in params.to_generate_kwargs()
    bans = NGramBans.for_params(params, [7, 7, 7, 7, 7])
    assert bans is not None and bans.banned() == set()
    with pytest.raises(ValidationError, match="no_repeat_ngram_scope"):
        GenerationParams.model_validate({"no_repeat_ngram_scope": "prompt"})


def test_no_repeat_ngram_size_is_bounded_and_reaches_hugging_face_generate() -> None:
    assert "no_repeat_ngram_size" not in GenerationParams().to_generate_kwargs()
    kwargs = GenerationParams(no_repeat_ngram_size=4).to_generate_kwargs()
    assert kwargs["no_repeat_ngram_size"] == 4
    for bad in (-1, 11):
        with pytest.raises(ValidationError, match="no_repeat_ngram_size"):
            GenerationParams(no_repeat_ngram_size=bad)


def _output_repeats_an_ngram(prompt: list[int], output: list[int], n: int) -> bool:
    """Does an n-gram ending in the output occur earlier in prompt + output? (The prompt
    may repeat itself; that is not the model's doing.)"""
    ids = prompt + output
    for end in range(max(len(prompt), n - 1), len(ids)):
        gram = ids[end - n + 1 : end + 1]
        if any(ids[i : i + n] == gram for i in range(end - n + 1)):
            return True
    return False


@pytest.mark.parametrize(
    ("n", "penalty", "scope"),
    [
        (1, 1.0, "all"),
        (2, 1.0, "all"),
        (3, 1.0, "all"),
        (3, 1.3, "all"),
        (4, 1.2, "all"),
        (10, 1.0, "all"),
        (2, 1.0, "output"),
        (3, 1.0, "output"),
    ],
)
def test_greedy_with_no_repeat_ngram_matches_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
    n: int,
    penalty: float,
    scope: str,
) -> None:
    requests = [
        request(
            tiny_lm,
            p,
            max_new_tokens=40,
            no_repeat_ngram_size=n,
            no_repeat_ngram_scope=scope,
            repetition_penalty=penalty,
        )
        for p in prompts
    ]
    expected = [simple_engine.generate(r).token_ids for r in requests]
    unbanned = [
        simple_engine.generate(request(tiny_lm, p, max_new_tokens=40, repetition_penalty=penalty))
        for p in prompts
    ]

    got = outputs(run_concurrently(batched_engine, requests))

    assert [o.token_ids for o in got] == expected
    for r, o in zip(requests, got, strict=True):
        assert not _output_repeats_an_ngram(r.input_ids if scope == "all" else [], o.token_ids, n)
    if n <= 3:  # the tiny model loops without the bans: they changed something
        assert expected != [o.token_ids for o in unbanned]


def test_seeded_sampling_with_no_repeat_ngram_matches_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
) -> None:
    requests = [
        request(
            tiny_lm,
            p,
            max_new_tokens=30,
            temperature=0.9,
            top_k=40,
            no_repeat_ngram_size=2 + i % 3,
            no_repeat_ngram_scope="output" if i % 2 else "all",
            seed=i,
        )
        for i, p in enumerate(prompts)
    ]
    expected = [simple_engine.generate(r).token_ids for r in requests]

    got = outputs(run_concurrently(batched_engine, requests))

    assert [o.token_ids for o in got] == expected


def test_summarize_jobs_keep_the_loop_guards_when_params_leave_them_out() -> None:
    from memq.contracts import SUMMARY_PARAMS, SummarizeJobRequest

    given = [
        SummarizeJobRequest(text="x"),
        SummarizeJobRequest.model_validate({"text": "x", "params": {"max_new_tokens": 200}}),
        SummarizeJobRequest(text="x", params=GenerationParams(temperature=0.7, seed=1)),
    ]

    for job in given:
        assert job.params.no_repeat_ngram_size == SUMMARY_PARAMS["no_repeat_ngram_size"] > 0
        assert job.params.repetition_penalty == SUMMARY_PARAMS["repetition_penalty"]
        assert job.params.no_repeat_ngram_scope == SUMMARY_PARAMS["no_repeat_ngram_scope"]
    assert given[1].params.max_new_tokens == 200
    assert given[2].params.max_new_tokens == SUMMARY_PARAMS["max_new_tokens"]
    off = SummarizeJobRequest.model_validate(
        {"text": "x", "params": {"no_repeat_ngram_size": 0, "repetition_penalty": 1.3}}
    )
    assert (off.params.no_repeat_ngram_size, off.params.repetition_penalty) == (0, 1.3)
    stored = SummarizeJobRequest.model_validate_json(given[2].model_dump_json())
    assert stored.params == given[2].params  # a stored job reads back as it ran
