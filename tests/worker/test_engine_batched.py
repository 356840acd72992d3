"""Scheduling behaviour of the batched engine: slots, budget, per-row state, failures."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from memq.contracts import GenerationParams
from tests.worker.engine_helpers import (
    after_tokens,
    batched,
    outputs,
    request,
    run_concurrently,
    worker_settings,
)
from worker.engine import build_engine
from worker.engine.base import GenerationOutput, GenerationRequest
from worker.engine.batched import BatchedEngine, EngineClosed
from worker.model_loader import LoadedModel


def _running_counter(engine: BatchedEngine, peak: list[int]) -> Any:
    def on_token(_n: int, _text: str) -> None:
        peak.append(engine.stats()["running"])

    return on_token


def test_seeded_sampling_is_reproducible_regardless_of_batch_companions(
    tiny_lm: LoadedModel, batched_engine: BatchedEngine, prompts: list[str]
) -> None:
    sampled = {"temperature": 1.1, "top_k": 40, "top_p": 0.95, "seed": 1234}
    alone = batched_engine.generate(request(tiny_lm, prompts[0], max_new_tokens=40, **sampled))

    on_token, running = after_tokens(5)
    companions = [
        request(tiny_lm, prompts[1], max_new_tokens=25, temperature=0.9, seed=7),
        request(tiny_lm, prompts[2], max_new_tokens=80),
        request(tiny_lm, prompts[3], max_new_tokens=10, temperature=1.5, top_p=0.5),
    ]
    companions[1].on_token = on_token
    target = request(tiny_lm, prompts[0], max_new_tokens=40, **sampled)
    # The target joins a batch that is already decoding, next to different companions.
    got = outputs(
        run_concurrently(
            batched_engine, [*companions, target], start_after=[None, None, running, running]
        )
    )

    assert got[-1].token_ids == alone.token_ids


def test_rows_keep_their_own_params_in_a_shared_batch(
    tiny_lm: LoadedModel, batched_engine: BatchedEngine, prompts: list[str]
) -> None:
    greedy = request(tiny_lm, prompts[1], max_new_tokens=20)
    top1 = request(tiny_lm, prompts[1], max_new_tokens=20, temperature=3.0, top_k=1, seed=5)
    short = request(tiny_lm, prompts[3], max_new_tokens=3, temperature=1.0, seed=5)
    stopper = request(tiny_lm, prompts[0], max_new_tokens=40, stop=["\u0000never"])

    got = outputs(run_concurrently(batched_engine, [greedy, top1, short, stopper]))

    assert got[1].token_ids == got[0].token_ids  # top_k=1 is greedy whatever the temperature
    assert len(got[2].token_ids) == 3
    assert len(got[3].token_ids) == 40 and got[3].finish_reason == "length"


def test_finished_row_frees_its_slot_for_a_queued_request(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, max_batch_size=2)
    peak: list[int] = []
    requests = [
        request(tiny_lm, p, max_new_tokens=n)
        for p, n in zip(prompts, (5, 30, 12, 8, 3), strict=True)
    ]
    for r in requests:
        r.on_token = _running_counter(engine, peak)
    try:
        got = outputs(run_concurrently(engine, requests))
    finally:
        engine.close()

    assert [len(o.token_ids) for o in got] == [5, 30, 12, 8, 3]
    assert max(peak) == 2


def test_token_budget_caps_rows_in_flight(tiny_lm: LoadedModel, prompts: list[str]) -> None:
    # Each request reserves prompt + 20 tokens; the budget fits two padded rows, not three.
    requests = [request(tiny_lm, prompts[0], max_new_tokens=20) for _ in range(4)]
    reserved = len(requests[0].input_ids) + 20
    engine = batched(tiny_lm, max_batch_tokens=2 * reserved + reserved // 2)
    peak: list[int] = []
    for r in requests:
        r.on_token = _running_counter(engine, peak)
    try:
        got = outputs(run_concurrently(engine, requests))
    finally:
        engine.close()

    assert max(peak) == 2
    assert len({tuple(o.token_ids) for o in got}) == 1


def test_request_larger_than_budget_runs_alone(tiny_lm: LoadedModel, prompts: list[str]) -> None:
    engine = batched(tiny_lm, max_batch_tokens=8, max_prefill_tokens=4)
    try:
        out = engine.generate(request(tiny_lm, prompts[1], max_new_tokens=10))
    finally:
        engine.close()

    assert len(out.token_ids) == 10


def test_cancelled_running_job_stops_within_one_decode_step_while_others_continue(
    tiny_lm: LoadedModel, batched_engine: BatchedEngine, prompts: list[str]
) -> None:
    cancel = threading.Event()
    on_token, fifth = after_tokens(5)
    victim = request(tiny_lm, prompts[0], max_new_tokens=200)
    victim.on_token = on_token
    victim.is_cancelled = cancel.is_set
    survivor = request(tiny_lm, prompts[1], max_new_tokens=40)

    def cancel_at_fifth_token(n: int, text: str) -> None:
        on_token(n, text)
        if n == 5:
            cancel.set()

    victim.on_token = cancel_at_fifth_token
    got = outputs(run_concurrently(batched_engine, [victim, survivor]))

    assert fifth.is_set()
    assert got[0].finish_reason == "cancelled" and len(got[0].token_ids) == 5
    assert got[1].finish_reason == "length" and len(got[1].token_ids) == 40


def test_request_cancelled_while_queued_finishes_without_tokens(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, max_batch_size=1)
    on_token, started = after_tokens(1)
    blocker = request(tiny_lm, prompts[1], max_new_tokens=40)
    blocker.on_token = on_token
    queued = request(tiny_lm, prompts[0], max_new_tokens=40)
    queued.is_cancelled = lambda: True
    try:
        got = outputs(run_concurrently(engine, [blocker, queued], start_after=[None, started]))
    finally:
        engine.close()

    assert got[1].finish_reason == "cancelled" and got[1].token_ids == []
    assert len(got[0].token_ids) == 40


def test_model_error_fails_the_affected_requests_and_the_engine_recovers(
    tiny_lm: LoadedModel, prompts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = batched(tiny_lm)
    real_forward = tiny_lm.model.forward
    broken = threading.Event()

    def flaky_forward(*args: Any, **kwargs: Any) -> Any:
        if broken.is_set():
            raise RuntimeError("out of memory (simulated)")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(tiny_lm.model, "forward", flaky_forward)
    requests = [request(tiny_lm, p, max_new_tokens=500) for p in prompts[:2]]
    gates = []
    for r in requests:
        r.on_token, reached = after_tokens(3)
        gates.append(reached)

    def break_when_both_run() -> None:
        for gate in gates:
            assert gate.wait(30)
        broken.set()

    breaker = threading.Thread(target=break_when_both_run)
    breaker.start()
    try:
        results = run_concurrently(engine, requests)
        breaker.join()
        broken.clear()
        after = engine.generate(request(tiny_lm, prompts[0], max_new_tokens=6))
    finally:
        engine.close()

    assert all(isinstance(r, RuntimeError) and "simulated" in str(r) for r in results)
    assert len(after.token_ids) == 6


def test_close_fails_waiting_callers_instead_of_hanging(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, max_batch_size=1)
    on_token, started = after_tokens(2)
    first = request(tiny_lm, prompts[0], max_new_tokens=1000 - 30)
    first.on_token = on_token
    results: list[GenerationOutput | BaseException] = []
    caller = threading.Thread(target=lambda: results.extend(run_concurrently(engine, [first])))
    caller.start()
    assert started.wait(30)
    engine.close()
    caller.join(30)

    assert not caller.is_alive()
    assert isinstance(results[0], EngineClosed)
    with pytest.raises(EngineClosed):
        engine.generate(request(tiny_lm, prompts[0], max_new_tokens=2))


def test_prompt_that_overflows_the_context_is_rejected(
    tiny_lm: LoadedModel, batched_engine: BatchedEngine
) -> None:
    ids = [1] * (tiny_lm.context_window - 5)

    with pytest.raises(ValueError, match="context"):
        batched_engine.generate(GenerationRequest(ids, GenerationParams(max_new_tokens=10)))


def test_build_engine_selects_by_name_with_knobs_from_settings(tiny_lm: LoadedModel) -> None:
    knobs = {"max_batch_size": 4, "max_batch_tokens": 4096, "max_prefill_tokens": 64}
    built = build_engine(worker_settings(engine="batched", **knobs), tiny_lm)
    simple = build_engine(worker_settings(engine="simple", **knobs), tiny_lm)
    try:
        assert (built.name, simple.name) == ("batched", "simple")
        assert isinstance(built, BatchedEngine)
        assert (built.max_batch_size, built.max_batch_tokens, built.max_prefill_tokens) == (
            4,
            4096,
            64,
        )
    finally:
        built.close()
    defaults = worker_settings()
    engine = batched(tiny_lm)
    try:
        assert engine.max_batch_tokens == defaults.max_batch_tokens
        assert engine.max_batch_size == defaults.max_batch_size
        assert engine.max_prefill_tokens == defaults.max_prefill_tokens
    finally:
        engine.close()
