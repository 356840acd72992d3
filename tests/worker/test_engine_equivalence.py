"""Greedy decoding gives token-for-token the same output in the batched and simple engines."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import torch

from memq.contracts import GenerationParams
from tests.worker.engine_helpers import after_tokens, batched, outputs, request, run_concurrently
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
    on_token, tenth_token = after_tokens(10)
    first = request(tiny_lm, prompts[1], max_new_tokens=60)
    first.on_token = on_token
    later = [request(tiny_lm, p, max_new_tokens=30) for p in prompts]
    expected = [simple_engine.generate(r).token_ids for r in [first, *later]]

    gates: list[threading.Event | float | None] = [None] + [tenth_token] * 2 + [0.05] * 3
    got = outputs(run_concurrently(batched_engine, [first, *later], start_after=gates))

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
    try:
        got = outputs(run_concurrently(engine, requests, start_after=[None, None, 0.3]))
    finally:
        engine.close()

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
    on_token, reached = after_tokens(30)
    long_[0].on_token = on_token
    reqs = long_ + short + late
    got = outputs(run_concurrently(batched_engine, reqs, start_after=[None] * 5 + [reached] * 2))
    want = [simple_engine.generate(r) for r in reqs]
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
    assert placed, "no newcomer reused a retired slot"
