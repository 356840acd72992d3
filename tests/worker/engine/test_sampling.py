"""Next-token selection equals Hugging Face's logits processors, row by row.

The reference is transformers' own `RepetitionPenaltyLogitsProcessor`,
`NoRepeatNGramLogitsProcessor`, `TemperatureLogitsWarper`, `TopKLogitsWarper` and
`TopPLogitsWarper`, chained and chosen the way `generate` does, then softmax and
`torch.multinomial` from a generator seeded like the row's. Equal draws over thousands
of rows pin the distribution, not just one token.
"""

from __future__ import annotations

import itertools
import math
import zlib

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from memq.contracts import GenerationParams
from worker.engine.sampling import NGramBans, RowSampling, select_next_tokens

VOCAB = 64


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _seed_of(params: GenerationParams) -> int:
    # Not hash(): str hashes change from process to process, and so would the rows.
    # Fields added later are left out, so the rows of older parameter sets stay the same.
    return zlib.crc32(params.model_dump_json(exclude={"no_repeat_ngram_scope"}).encode())


def _row(params: GenerationParams, seen: list[int], seed: int) -> RowSampling:
    generator = None if params.greedy else _generator(seed)
    return RowSampling(params, seen, generator, NGramBans.for_params(params, seen))


def _hf_token(logits: torch.Tensor, params: GenerationParams, seen: list[int], seed: int) -> int:
    """What `generate` picks for this row: processors in HF's order, then softmax and
    multinomial (or argmax when greedy)."""
    ids = torch.tensor([seen], dtype=torch.long)
    scores = logits.clone().unsqueeze(0)
    if params.repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(ids, scores)
    if params.no_repeat_ngram_size:
        scores = NoRepeatNGramLogitsProcessor(params.no_repeat_ngram_size)(ids, scores)
    if params.greedy:
        return int(scores.argmax(dim=-1).item())
    warpers = LogitsProcessorList()
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    probs = warpers(ids, scores).softmax(dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=_generator(seed)).item())


def _random_rows(
    params: GenerationParams, n: int, seed: int
) -> tuple[torch.Tensor, list[list[int]], list[int]]:
    """n rows of logits (half flat, half peaked, both signs), seen ids with repeats."""
    g = _generator(seed)
    scale = torch.tensor([1.0 if i % 2 else 5.0 for i in range(n)]).unsqueeze(1)
    logits = torch.randn(n, VOCAB, generator=g) * scale
    seen = [torch.randint(0, VOCAB, (12,), generator=g).tolist() for _ in range(n)]
    seeds = torch.randint(0, 2**31, (n,), generator=g).tolist()
    return logits, seen, seeds


SAMPLED = [
    GenerationParams(temperature=t, top_k=k, top_p=p, repetition_penalty=r)
    for t, k, p, r in itertools.product(
        (0.5, 1.0, 2.0), (0, 1, 5, 1000), (1.0, 0.9, 0.3), (1.0, 0.7, 2.0)
    )
]


@pytest.mark.parametrize(
    "params",
    SAMPLED,
    ids=lambda p: f"t{p.temperature}-k{p.top_k}-p{p.top_p}-r{p.repetition_penalty}",
)
def test_sampled_rows_draw_what_hugging_face_processors_draw(params: GenerationParams) -> None:
    logits, seen, seeds = _random_rows(params, 40, seed=_seed_of(params))
    expected = [_hf_token(logits[i], params, seen[i], seeds[i]) for i in range(len(seeds))]

    got = select_next_tokens(
        logits.clone(), [_row(params, s, seed) for s, seed in zip(seen, seeds, strict=True)]
    )

    assert got == expected


@pytest.mark.parametrize("penalty", [0.5, 0.7, 1.0, 1.3, 3.0])
def test_greedy_rows_pick_hugging_face_argmax_after_the_repetition_penalty(
    penalty: float,
) -> None:
    params = GenerationParams(temperature=0.0, repetition_penalty=penalty)
    logits, seen, _ = _random_rows(params, 200, seed=int(penalty * 100))
    # Seen tokens near the top, so the penalty decides the argmax in many rows.
    for i in range(len(seen)):
        top = torch.topk(logits[i], 3).indices.tolist()
        seen[i] = [*seen[i], top[i % 3]]
    expected = [_hf_token(logits[i], params, seen[i], 0) for i in range(len(seen))]

    got = select_next_tokens(logits.clone(), [_row(params, s, 0) for s in seen])

    assert got == expected
    if penalty != 1.0:
        plain = logits.argmax(dim=-1).tolist()
        assert sum(a != b for a, b in zip(got, plain, strict=True)) > 10  # the penalty bit


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_repetition_penalty_makes_a_seen_token_less_likely_whatever_its_sign(
    sign: float,
) -> None:
    # Token 0 leads token 1 by a little; token 0 was seen. Dividing a positive logit or
    # multiplying a negative one by 1.5 pushes it below token 1; a penalty of 0.5 lifts
    # a seen token 1 above token 0.
    logits = torch.full((1, VOCAB), -50.0)
    logits[0, 0], logits[0, 1] = (3.0, 2.5) if sign > 0 else (-2.5, -3.0)
    penalised = GenerationParams(temperature=0.0, repetition_penalty=1.5)
    encouraged = GenerationParams(temperature=0.0, repetition_penalty=0.5)

    assert select_next_tokens(logits.clone(), [_row(penalised, [0, 0, 7], 0)]) == [1]
    assert select_next_tokens(logits.clone(), [_row(penalised, [7], 0)]) == [0]
    assert select_next_tokens(logits.clone(), [_row(encouraged, [1], 0)]) == [1]


def _draws(logits: torch.Tensor, params: GenerationParams, n: int = 300) -> list[int]:
    rows = [_row(params, [], seed) for seed in range(n)]
    got = select_next_tokens(logits.expand(n, -1).clone(), rows)
    assert all(isinstance(t, int) for t in got)
    return [t for t in got if isinstance(t, int)]


@pytest.mark.parametrize(("top_p", "kept"), [(0.25, 1), (0.5, 2), (0.75, 3), (1.0, 4)])
def test_top_p_removes_tokens_whose_mass_below_them_is_at_most_one_minus_top_p(
    top_p: float, kept: int
) -> None:
    # Four equal tokens: sorted cumulative mass 0.25, 0.5, 0.75, 1.0 exactly.
    logits = torch.full((1, VOCAB), -math.inf)
    logits[0, :4] = 0.0

    drawn = set(_draws(logits, GenerationParams(temperature=1.0, top_p=top_p)))

    assert len(drawn) == kept
    assert drawn <= {0, 1, 2, 3}


def test_top_p_keeps_the_most_likely_token_when_it_alone_exceeds_top_p() -> None:
    logits = torch.zeros((1, VOCAB))
    logits[0, 17] = 12.0

    drawn = _draws(logits, GenerationParams(temperature=1.0, top_p=0.05))

    assert set(drawn) == {17}


@pytest.mark.parametrize("top_k", [1, 3, 64, 1000])
def test_top_k_draws_only_from_the_k_highest_logits(top_k: int) -> None:
    logits = torch.arange(VOCAB, dtype=torch.float32).unsqueeze(0) / 16  # token 63 highest
    params = GenerationParams(temperature=5.0, top_k=top_k)

    drawn = set(_draws(logits, params, n=2000))

    allowed = set(range(VOCAB - min(top_k, VOCAB), VOCAB))
    assert drawn <= allowed
    assert len(drawn) >= min(len(allowed), 40)  # flat enough that most allowed ones appear


def test_temperature_sharpens_below_one_and_flattens_above() -> None:
    logits = torch.arange(VOCAB, dtype=torch.float32).unsqueeze(0) / 8

    cold = _draws(logits, GenerationParams(temperature=0.2), n=400)
    warm = _draws(logits, GenerationParams(temperature=1.0), n=400)
    hot = _draws(logits, GenerationParams(temperature=4.0), n=400)

    assert len(set(cold)) < len(set(warm)) < len(set(hot))
    assert sum(cold) / len(cold) > sum(warm) / len(warm) > sum(hot) / len(hot)


def test_a_row_that_cannot_be_sampled_fails_alone() -> None:
    params = GenerationParams(temperature=1.0, top_k=5)
    logits, seen, seeds = _random_rows(params, 3, seed=3)
    logits[1] = math.nan
    greedy = GenerationParams(temperature=0.0)
    rows = [_row(params, seen[0], seeds[0]), _row(params, seen[1], seeds[1]), _row(greedy, [], 0)]

    got = select_next_tokens(logits.clone(), rows)

    assert len(got) == 3
    assert got[0] == _hf_token(logits[0], params, seen[0], seeds[0])
    assert isinstance(got[1], RuntimeError)
    assert got[2] == int(logits[2].argmax())


def test_a_seeded_row_draws_the_same_token_whatever_rows_share_its_batch() -> None:
    params = GenerationParams(temperature=1.3, top_p=0.95, repetition_penalty=1.2)
    logits, seen, seeds = _random_rows(params, 6, seed=11)
    greedy = GenerationParams(temperature=0.0, repetition_penalty=1.4)
    rows = [_row(params if i % 2 else greedy, seen[i], seeds[i]) for i in range(len(seeds))]
    together = select_next_tokens(logits.clone(), rows)

    for i in range(len(seeds)):
        alone = select_next_tokens(
            logits[i : i + 1].clone(),
            [_row(params if i % 2 else greedy, seen[i], seeds[i])],
        )
        assert alone == [together[i]]
        assert together[i] == _hf_token(logits[i], rows[i].params, seen[i], seeds[i])


def _looping_rows(n: int, seed: int) -> tuple[torch.Tensor, list[list[int]], list[int]]:
    """Rows whose seen ids come from 4 tokens (so their n-grams recur) and whose logits
    rank those 4 highest: the bans decide the pick in most rows."""
    g = _generator(seed)
    logits = torch.randn(n, VOCAB, generator=g)
    logits[:, :4] += 6.0
    seen = [
        torch.randint(0, 4, (int(torch.randint(0, 30, (1,), generator=g)),), generator=g).tolist()
        for _ in range(n)
    ]
    seeds = torch.randint(0, 2**31, (n,), generator=g).tolist()
    return logits, seen, seeds


NGRAM_PARAMS = [
    GenerationParams(temperature=t, top_k=k, repetition_penalty=r, no_repeat_ngram_size=n)
    for t, k, r, n in itertools.product((0.0, 0.7, 1.5), (0, 3), (1.0, 1.3), (1, 2, 3, 4, 10))
]


@pytest.mark.parametrize(
    "params",
    NGRAM_PARAMS,
    ids=lambda p: f"t{p.temperature}-k{p.top_k}-r{p.repetition_penalty}-n{p.no_repeat_ngram_size}",
)
def test_no_repeat_ngram_rows_pick_what_hugging_face_processors_pick(
    params: GenerationParams,
) -> None:
    logits, seen, seeds = _looping_rows(60, seed=_seed_of(params))
    expected = [_hf_token(logits[i], params, seen[i], seeds[i]) for i in range(len(seeds))]

    got = select_next_tokens(
        logits.clone(), [_row(params, s, seed) for s, seed in zip(seen, seeds, strict=True)]
    )

    assert got == expected
    if params.greedy and params.no_repeat_ngram_size <= 3:
        plain = [_hf_token(logits[i], GenerationParams(), seen[i], 0) for i in range(len(seen))]
        assert sum(a != b for a, b in zip(got, plain, strict=True)) > 10  # the bans bit


def test_a_banned_token_is_never_picked_even_when_it_leads_by_far() -> None:
    logits = torch.zeros((1, VOCAB))
    logits[0, 5], logits[0, 6] = 100.0, 1.0
    params = GenerationParams(temperature=0.0, no_repeat_ngram_size=3)

    # 7 5 already occurred followed by 5: "7 5 5" again is banned.
    assert select_next_tokens(logits.clone(), [_row(params, [7, 5, 5, 1, 7, 5], 0)]) == [6]
    assert select_next_tokens(logits.clone(), [_row(params, [7, 5, 5, 1, 8, 5], 0)]) == [5]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_bans_on_ids_the_model_cannot_produce_are_ignored(temperature: float) -> None:
    # A prompt may hold ids past the logits' width (a tokenizer larger than the model's
    # output layer): "3 64" was seen and the row ends in 3, so 64 is banned, and ignored.
    params = GenerationParams(temperature=temperature, no_repeat_ngram_size=2)
    logits = torch.randn(1, VOCAB, generator=_generator(5))
    seen = [3, VOCAB, 3]

    got = select_next_tokens(logits.clone(), [_row(params, seen, 9)])

    assert got == [_hf_token(logits[0], params, seen, 9)]
