"""Scheduling behaviour of the batched engine: slots, budget, per-row state, failures."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from memq.contracts import GenerationParams
from tests.worker.engine.helpers import (
    DEADLINE_S,
    Hold,
    batched,
    outputs,
    queued,
    request,
    run_concurrently,
    tokens_so_far,
)
from tests.worker.helpers import worker_settings
from worker.engine import build_engine
from worker.engine.base import GenerationOutput, GenerationRequest, TokenCallback
from worker.engine.batched import BatchedEngine, EngineClosed
from worker.model_loader import LoadedModel


def test_seeded_sampling_is_reproducible_regardless_of_batch_companions(
    tiny_lm: LoadedModel, batched_engine: BatchedEngine, prompts: list[str]
) -> None:
    sampled = {"temperature": 1.1, "top_k": 40, "top_p": 0.95, "seed": 1234}
    alone = batched_engine.generate(request(tiny_lm, prompts[0], max_new_tokens=40, **sampled))

    companions = [
        request(tiny_lm, prompts[1], max_new_tokens=25, temperature=0.9, seed=7),
        request(tiny_lm, prompts[2], max_new_tokens=80),
        request(tiny_lm, prompts[3], max_new_tokens=10, temperature=1.5, top_p=0.5),
    ]
    companion_tokens: list[int] = []
    # Companion 1 runs first; companion 0 joins at its 2nd token, the target and
    # companion 2 at its 5th: the engine is held until exactly they are queued.
    hold = Hold(
        {2: queued(batched_engine, 1), 5: queued(batched_engine, 2)},
        also=tokens_so_far(companion_tokens),
    )
    companions[1].on_token = hold
    target = request(tiny_lm, prompts[0], max_new_tokens=40, **sampled)
    joined_at: list[int] = []
    target.on_token = lambda n, _t: joined_at.append(companion_tokens[-1]) if n == 1 else None
    second, fifth = hold.reached[2], hold.reached[5]
    got = outputs(
        run_concurrently(
            batched_engine, [*companions, target], start_after=[second, None, fifth, fifth]
        )
    )

    hold.check()
    assert 5 <= joined_at[0] < 80  # admitted while companion 1 was mid-decode
    assert got[-1].token_ids == alone.token_ids


def test_rows_keep_their_own_params_in_a_shared_batch(
    tiny_lm: LoadedModel, batched_engine: BatchedEngine, prompts: list[str]
) -> None:
    greedy = request(tiny_lm, prompts[1], max_new_tokens=20)
    top1 = request(tiny_lm, prompts[1], max_new_tokens=20, temperature=3.0, top_k=1, seed=5)
    short = request(tiny_lm, prompts[3], max_new_tokens=3, temperature=1.0, seed=5)
    stopper = request(tiny_lm, prompts[0], max_new_tokens=40, stop=["\u0000never"])
    hold = Hold({2: queued(batched_engine, 3)})
    greedy.on_token = hold
    gate = hold.reached[2]
    widths: list[int] = []
    stopper.on_token = lambda n, _t: widths.append(batched_engine.stats()["running"])

    got = outputs(
        run_concurrently(
            batched_engine, [greedy, top1, short, stopper], start_after=[None, gate, gate, gate]
        )
    )

    hold.check()
    assert 4 in widths  # all four rows decoded in one batch
    assert got[1].token_ids == got[0].token_ids  # top_k=1 is greedy whatever the temperature
    assert len(got[2].token_ids) == 3
    assert len(got[3].token_ids) == 40 and got[3].finish_reason == "length"


def _scheduler_view(engine: BatchedEngine, seen: list[tuple[int, int]]) -> TokenCallback:
    """Records (rows running, requests queued) at each decode step of a request."""

    def on_token(n: int, _text: str) -> None:
        if n >= 2:  # from the 2nd token the row is in the running batch
            stats = engine.stats()
            seen.append((int(stats["running"]), int(stats["queued"])))

    return on_token


def test_finished_row_frees_its_slot_for_a_queued_request(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, max_batch_size=2)
    lengths = (60, 5, 12, 8, 3)
    requests = [
        request(tiny_lm, p, max_new_tokens=n) for p, n in zip(prompts, lengths, strict=True)
    ]
    seen: list[tuple[int, int]] = []
    first_tokens: list[int] = []
    # The first request holds the engine at its 2nd token until the other four are queued.
    hold = Hold({2: queued(engine, 4)}, also=tokens_so_far(first_tokens))
    requests[0].on_token = hold
    started_while_first_ran: list[int] = []
    for i, r in enumerate(requests[1:], start=1):
        view = _scheduler_view(engine, seen)

        def on_token(n: int, text: str, view: TokenCallback = view, i: int = i) -> None:
            view(n, text)
            if n == 1 and first_tokens[-1] < lengths[0]:
                started_while_first_ran.append(i)

        r.on_token = on_token
    gate = hold.reached[2]
    try:
        got = outputs(run_concurrently(engine, requests, start_after=[None, *[gate] * 4]))
    finally:
        engine.close()

    hold.check()
    assert [len(o.token_ids) for o in got] == list(lengths)
    assert max(running for running, _ in seen) == 2  # never more rows than the limit
    assert (2, 3) in seen  # two rows ran while three waited in the queue
    # One slot was free beside the long first request: each of the four others took it
    # in turn, when the one before it finished, while the first was still decoding.
    assert sorted(started_while_first_ran) == [1, 2, 3, 4]


def test_token_budget_caps_rows_in_flight(tiny_lm: LoadedModel, prompts: list[str]) -> None:
    # Each request reserves prompt + 20 tokens; the budget fits two padded rows, not three.
    requests = [request(tiny_lm, prompts[0], max_new_tokens=20) for _ in range(4)]
    reserved = len(requests[0].input_ids) + 20
    engine = batched(tiny_lm, max_batch_tokens=2 * reserved + reserved // 2)
    assert engine.max_batch_size >= 4  # so only the token budget can hold rows back
    seen: list[tuple[int, int]] = []
    hold = Hold({2: queued(engine, 3)}, also=_scheduler_view(engine, seen))
    requests[0].on_token = hold
    for r in requests[1:]:
        r.on_token = _scheduler_view(engine, seen)
    gate = hold.reached[2]
    try:
        got = outputs(run_concurrently(engine, requests, start_after=[None, gate, gate, gate]))
    finally:
        engine.close()

    hold.check()
    assert max(running for running, _ in seen) == 2
    assert (2, 2) in seen  # two rows ran while two waited for budget
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
    victim = request(tiny_lm, prompts[0], max_new_tokens=200)
    survivor = request(tiny_lm, prompts[1], max_new_tokens=40)
    survivor_tokens: list[int] = []
    survivor.on_token = tokens_so_far(survivor_tokens)
    survivor_at_cancel: list[int] = []

    def cancel_at_fifth_token(n: int, _text: str) -> None:
        if n == 5:
            survivor_at_cancel.append(survivor_tokens[-1] if survivor_tokens else 0)
            cancel.set()

    # The survivor joins at the victim's 2nd token, so both rows run when the cancel comes.
    hold = Hold({2: queued(batched_engine, 1)}, also=cancel_at_fifth_token)
    victim.on_token = hold
    victim.is_cancelled = cancel.is_set
    got = outputs(
        run_concurrently(batched_engine, [victim, survivor], start_after=[None, hold.reached[2]])
    )

    hold.check()
    assert got[0].finish_reason == "cancelled" and len(got[0].token_ids) == 5
    assert 1 <= survivor_at_cancel[0] < 40  # the survivor was mid-decode at the cancel
    assert got[1].finish_reason == "length" and len(got[1].token_ids) == 40


def test_request_cancelled_while_queued_finishes_without_tokens(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, max_batch_size=1)
    blocker = request(tiny_lm, prompts[1], max_new_tokens=40)
    # The blocker fills the only row and holds the engine until the other one is queued.
    hold = Hold({2: queued(engine, 1)})
    blocker.on_token = hold
    waiting = request(tiny_lm, prompts[0], max_new_tokens=40)
    waiting.is_cancelled = lambda: True
    try:
        got = outputs(
            run_concurrently(engine, [blocker, waiting], start_after=[None, hold.reached[2]])
        )
    finally:
        engine.close()

    hold.check()
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
    # The second request joins at the first one's 2nd token; the model breaks at the
    # second one's 3rd token, when both rows are in the batch.
    hold = Hold({2: queued(engine, 1)})
    requests[0].on_token = hold
    requests[1].on_token = lambda n, _text: broken.set() if n == 3 else None
    try:
        results = run_concurrently(engine, requests, start_after=[None, hold.reached[2]])
        broken.clear()
        after = engine.generate(request(tiny_lm, prompts[0], max_new_tokens=6))
    finally:
        engine.close()

    hold.check()
    assert all(isinstance(r, RuntimeError) and "simulated" in str(r) for r in results)
    assert len(after.token_ids) == 6


def test_close_fails_waiting_callers_instead_of_hanging(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, max_batch_size=1)
    closing = threading.Event()
    # Held until the test is about to close: the request then has 968 tokens to go.
    hold = Hold({2: closing.is_set})
    first = request(tiny_lm, prompts[0], max_new_tokens=1000 - 30)
    first.on_token = hold
    results: list[GenerationOutput | BaseException] = []
    caller = threading.Thread(target=lambda: results.extend(run_concurrently(engine, [first])))
    caller.start()
    assert hold.reached[2].wait(DEADLINE_S)
    closing.set()
    engine.close()
    caller.join(DEADLINE_S)

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


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_prefill_decodes_like_hugging_face(
    tiny_lm: LoadedModel, simple_engine: Any, prompts: list[str], chunk: int
) -> None:
    # Prompts of 1 to ~30 tokens, prefilled together (left-padded) in chunks of `chunk`
    # columns: the same greedy tokens as HF generate on each prompt alone.
    requests = [request(tiny_lm, p, max_new_tokens=20) for p in prompts]
    expected = [simple_engine.generate(r).token_ids for r in requests]
    engine = batched(tiny_lm, prefill_chunk_tokens=chunk)
    try:
        got = outputs(run_concurrently(engine, requests))
    finally:
        engine.close()

    assert [o.token_ids for o in got] == expected


@pytest.mark.parametrize("chunk", [4, 0])
def test_running_rows_keep_decoding_while_a_long_prompt_is_prefilled_in_chunks(
    tiny_lm: LoadedModel, prompts: list[str], chunk: int
) -> None:
    long_prompt = " ".join(prompts)  # ~60 tokens: ~15 chunks of 4
    chunks = -(-len(request(tiny_lm, long_prompt).input_ids) // 4)
    assert chunks >= 8
    engine = batched(tiny_lm, prefill_chunk_tokens=chunk)
    running_tokens: list[int] = []
    # The running row is held at its 3rd token until the newcomer is queued.
    hold = Hold({3: queued(engine, 1)}, also=tokens_so_far(running_tokens))
    running = request(tiny_lm, prompts[0], max_new_tokens=200)
    running.on_token = hold
    newcomer = request(tiny_lm, long_prompt, max_new_tokens=5)
    at_first: list[int] = []
    newcomer.on_token = lambda n, _t: at_first.append(running_tokens[-1]) if n == 1 else None
    try:
        got = outputs(
            run_concurrently(engine, [running, newcomer], start_after=[None, hold.reached[3]])
        )
    finally:
        engine.close()

    hold.check()
    assert [len(o.token_ids) for o in got] == [200, 5]
    # Chunked: the running row decodes one token after every chunk but the last; whole:
    # it waits for the entire prefill.
    assert at_first[0] - 3 == (chunks - 1 if chunk else 0)


def test_a_group_cancelled_during_its_chunked_prefill_finishes_cancelled(
    tiny_lm: LoadedModel, prompts: list[str]
) -> None:
    engine = batched(tiny_lm, prefill_chunk_tokens=1)
    cancelled = threading.Event()
    victim = GenerationRequest(
        request(tiny_lm, " ".join(prompts)).input_ids,
        GenerationParams(max_new_tokens=50),
        is_cancelled=cancelled.is_set,
    )
    cancelled.set()  # checked before every chunk: the first one already stops it
    try:
        out = engine.generate(victim)
        after = engine.generate(request(tiny_lm, prompts[0], max_new_tokens=3))
    finally:
        engine.close()

    assert (out.finish_reason, out.token_ids) == ("cancelled", [])
    assert len(after.token_ids) == 3  # the engine goes on


def test_prefill_chunk_size_is_a_setting(tiny_lm: LoadedModel) -> None:
    assert batched(tiny_lm, prefill_chunk_tokens=7).prefill_chunk_tokens == 7
    defaults = batched(tiny_lm)
    try:
        assert defaults.prefill_chunk_tokens == worker_settings().prefill_chunk_tokens > 0
    finally:
        defaults.close()
    with pytest.raises(ValueError, match="prefill_chunk_tokens"):
        BatchedEngine(
            tiny_lm,
            max_batch_size=1,
            max_batch_tokens=1,
            max_prefill_tokens=1,
            prefill_chunk_tokens=-1,
        )
