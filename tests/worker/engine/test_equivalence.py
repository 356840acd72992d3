"""Greedy decoding gives token-for-token the same output in the batched and simple engines."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from memq.contracts import GenerationParams
from tests.worker.engine.helpers import (
    Hold,
    batched,
    outputs,
    queued,
    request,
    run_concurrently,
    tokens_so_far,
)
from worker.engine.base import GenerationRequest
from worker.engine.batched import BatchedEngine
from worker.engine.simple import SimpleEngine
from worker.model_loader import LoadedModel


def test_greedy_batch_of_different_prompt_lengths_matches_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
) -> None:
    requests = [request(tiny_lm, p, max_new_tokens=40) for p in prompts]
    expected = [simple_engine.generate(r).token_ids for r in requests]

    got = outputs(run_concurrently(batched_engine, requests))

    assert [o.token_ids for o in got] == expected
    assert all(o.finish_reason == "length" for o in got)


def test_greedy_requests_joining_mid_batch_match_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
) -> None:
    first = request(tiny_lm, prompts[1], max_new_tokens=60)
    later = [request(tiny_lm, p, max_new_tokens=30) for p in prompts]
    expected = [simple_engine.generate(r).token_ids for r in [first, *later]]
    # Two requests join at the first one's 10th token, three more at its 25th: the
    # engine is held at each until exactly those are queued.
    first_tokens: list[int] = []
    hold = Hold(
        {10: queued(batched_engine, 2), 25: queued(batched_engine, 3)},
        also=tokens_so_far(first_tokens),
    )
    first.on_token = hold
    joined_at: dict[int, int] = {}
    for i, r in enumerate(later):
        r.on_token = lambda n, _t, i=i: joined_at.setdefault(i, first_tokens[-1])

    gates = [None] + [hold.reached[10]] * 2 + [hold.reached[25]] * 3
    got = outputs(run_concurrently(batched_engine, [first, *later], start_after=gates))

    hold.check()
    assert [joined_at[i] for i in range(5)] == [10, 10, 25, 25, 25]
    assert [o.token_ids for o in got] == expected


def test_greedy_with_repetition_penalty_matches_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
) -> None:
    requests = [request(tiny_lm, p, max_new_tokens=30, repetition_penalty=1.3) for p in prompts]
    expected = [simple_engine.generate(r).token_ids for r in requests]

    got = outputs(run_concurrently(batched_engine, requests))

    assert [o.token_ids for o in got] == expected


def test_seeded_sampling_matches_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
) -> None:
    settings = [
        {"temperature": 0.8, "seed": 1},
        {"temperature": 1.0, "top_k": 20, "seed": 2},
        {"temperature": 1.2, "top_p": 0.9, "seed": 3},
        {"temperature": 0.7, "top_k": 50, "top_p": 0.8, "repetition_penalty": 1.2, "seed": 4},
    ]
    requests = [
        request(tiny_lm, p, max_new_tokens=30, **s) for p, s in zip(prompts, settings, strict=False)
    ]
    expected = [simple_engine.generate(r).token_ids for r in requests]

    got = outputs(run_concurrently(batched_engine, requests))

    assert [o.token_ids for o in got] == expected


def test_eos_finishes_both_engines_identically(
    tiny_lm: LoadedModel, simple_engine: SimpleEngine, prompts: list[str]
) -> None:
    params = GenerationParams(max_new_tokens=20)
    ids = list(tiny_lm.tokenizer.encode(prompts[0]))
    # Declare the 5th greedy token the end-of-sequence token: both engines must stop there.
    fifth = simple_engine.generate(GenerationRequest(ids, params)).token_ids[4]
    lm = LoadedModel(tiny_lm.name, tiny_lm.model, tiny_lm.tokenizer, 1024, eos_token_id=fifth)
    expected = SimpleEngine(lm).generate(GenerationRequest(ids, params))
    engine = batched(lm)
    try:
        got = engine.generate(GenerationRequest(ids, params))
    finally:
        engine.close()

    assert expected.finish_reason == got.finish_reason == "eos"
    assert got.token_ids == expected.token_ids
    assert got.token_ids[-1] == fifth


@pytest.mark.slow
def test_greedy_matches_simple_engine_on_gpt2_124m_architecture(tiny_lm: LoadedModel) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    lm = LoadedModel("gpt2-random", model, tiny_lm.tokenizer, 1024, eos_token_id=50256)
    rng = random.Random(0)
    params = GenerationParams(max_new_tokens=8)
    requests = [
        GenerationRequest([rng.randrange(50257) for _ in range(n)], params) for n in (3, 17, 41)
    ]
    expected = [SimpleEngine(lm).generate(r).token_ids for r in requests]
    engine = batched(lm)
    # Each later request joins the running batch, at the first one's 2nd and 4th token.
    hold = Hold({2: queued(engine, 1), 4: queued(engine, 1)})
    requests[0].on_token = hold
    try:
        got = outputs(
            run_concurrently(engine, requests, start_after=[None, hold.reached[2], hold.reached[4]])
        )
    finally:
        engine.close()

    hold.check()
    assert [o.token_ids for o in got] == expected


def test_newcomers_refilling_retired_slots_in_place_match_simple_engine(
    tiny_lm: LoadedModel,
    simple_engine: SimpleEngine,
    batched_engine: BatchedEngine,
    prompts: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Short rows finish first; their slots are refilled in place (no cache copy) by
    later requests, and every row's greedy output still equals the simple engine's."""
    from worker.engine.kv_batch import PaddedKV

    placed: list[int] = []
    original = PaddedKV.place

    def spy(self: PaddedKV, row: int, *args: Any) -> bool:
        ok = original(self, row, *args)
        if ok:
            placed.append(row)
        return ok

    monkeypatch.setattr(PaddedKV, "place", spy)
    long_ = [request(tiny_lm, prompts[i], max_new_tokens=120) for i in (1, 3, 4)]
    short = [request(tiny_lm, prompts[i], max_new_tokens=3) for i in (0, 2)]
    # Late requests have short prompts, so they fit the running batch's width.
    late = [request(tiny_lm, p, max_new_tokens=20) for p in ("Memory", "The quick brown fox")]
    # The other four join the first at its 2nd token; the short ones are done by its
    # 6th; the late ones arrive at its 10th, well before the periodic compaction.
    hold = Hold({2: queued(batched_engine, 4), 10: queued(batched_engine, 2)})
    long_[0].on_token = hold
    reqs = long_ + short + late
    gates = [None] + [hold.reached[2]] * 4 + [hold.reached[10]] * 2
    got = outputs(run_concurrently(batched_engine, reqs, start_after=gates))
    want = [simple_engine.generate(r) for r in reqs]

    hold.check()
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
    assert len(placed) == 2, "the late requests did not refill the retired slots"
