"""Behaviour every engine shares, run against both `simple` and `batched`."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.worker.engine.helpers import (
    DEADLINE_S,
    Hold,
    encode,
    outputs,
    request,
    run_concurrently,
    wait_until,
)
from tests.worker.helpers import worker_settings
from worker.engine import build_engine
from worker.engine.base import Engine, GenerationRequest
from worker.engine.simple import SimpleEngine
from worker.model_loader import LoadedModel


@pytest.fixture(params=["simple", "batched"])
def engine(request: pytest.FixtureRequest, tiny_lm: LoadedModel) -> Iterator[Engine]:
    built = build_engine(worker_settings(engine=request.param), tiny_lm)
    yield built
    built.close()


def test_max_new_tokens_finishes_with_length(engine: Engine, tiny_lm: LoadedModel) -> None:
    out = engine.generate(request(tiny_lm, "The quick brown fox", max_new_tokens=7))

    assert len(out.token_ids) == 7
    assert out.finish_reason == "length"
    assert out.text == tiny_lm.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def test_stop_sequence_finishes_with_stop_and_is_cut_from_text(
    engine: Engine, tiny_lm: LoadedModel
) -> None:
    free = engine.generate(request(tiny_lm, "Alice lives in", max_new_tokens=30))
    stop = free.text[len(free.text) // 2 :][:3]
    assert stop.strip(), "greedy output too short to pick a stop sequence from"

    out = engine.generate(request(tiny_lm, "Alice lives in", max_new_tokens=30, stop=[stop]))

    assert out.finish_reason == "stop"
    assert out.text == free.text[: free.text.find(stop)]
    assert stop not in out.text
    assert len(out.token_ids) < len(free.token_ids)


def test_on_token_reports_every_token_with_partial_text(
    engine: Engine, tiny_lm: LoadedModel
) -> None:
    seen: list[tuple[int, str]] = []
    req = request(tiny_lm, "Memory lets", max_new_tokens=12)
    req.on_token = lambda n, text: seen.append((n, text))

    out = engine.generate(req)

    assert [n for n, _ in seen] == list(range(1, 13))
    assert seen[-1][1] == out.text


def test_cancellation_stops_right_after_the_current_token(
    engine: Engine, tiny_lm: LoadedModel
) -> None:
    produced: list[int] = []
    req = request(tiny_lm, "The quick brown fox", max_new_tokens=50)
    req.on_token = lambda n, _text: produced.append(n)
    req.is_cancelled = lambda: bool(produced) and produced[-1] >= 3

    out = engine.generate(req)

    assert out.finish_reason == "cancelled"
    assert len(out.token_ids) == 3


def test_raising_on_token_callback_does_not_stop_generation(
    engine: Engine, tiny_lm: LoadedModel
) -> None:
    def boom(_n: int, _text: str) -> None:
        raise RuntimeError("callback bug")

    req = request(tiny_lm, "Redis, Celery", max_new_tokens=9)
    req.on_token = boom

    out = engine.generate(req)

    assert len(out.token_ids) == 9
    assert out.finish_reason == "length"


def test_raising_is_cancelled_callback_counts_as_not_cancelled(
    engine: Engine, tiny_lm: LoadedModel
) -> None:
    def boom() -> bool:
        raise RuntimeError("redis down")

    req = request(tiny_lm, "Redis, Celery", max_new_tokens=5)
    req.is_cancelled = boom

    out = engine.generate(req)

    assert out.finish_reason == "length"
    assert len(out.token_ids) == 5


def test_reports_timings(engine: Engine, tiny_lm: LoadedModel) -> None:
    out = engine.generate(GenerationRequest(encode(tiny_lm, "TL;DR"), request(tiny_lm, "x").params))

    assert 0 <= out.time_to_first_token_s <= out.generation_s


def _waiting_for_simple_engine(engine: SimpleEngine) -> int:
    # SimpleEngine has no stats(): its FIFO lock's queue is the only record of who waits.
    return len(engine._lock._waiting)


def test_simple_engine_serves_waiting_jobs_in_arrival_order(tiny_lm: LoadedModel) -> None:
    engine = SimpleEngine(tiny_lm)
    all_waiting = threading.Event()
    served: list[str] = []
    first = request(tiny_lm, "The quick brown fox", max_new_tokens=3)
    # The first job holds the engine at its first token until every waiter is queued.
    hold = Hold(
        {1: all_waiting.is_set}, also=lambda n, _t: served.append("first") if n == 3 else None
    )
    first.on_token = hold
    waiters = [request(tiny_lm, "Memory", max_new_tokens=2) for _ in range(4)]
    for i, r in enumerate(waiters):
        r.on_token = lambda n, _t, i=i: served.append(f"waiter {i}") if n == 1 else None
    arrivals = [threading.Event() for _ in waiters]
    observed_waiting: list[int] = []

    def arrive_one_by_one() -> None:
        if not hold.reached[1].wait(DEADLINE_S):
            return
        for i, arrival in enumerate(arrivals):
            arrival.set()  # waiter i submits ...
            # ... and the next one only once waiter i is seen queued behind the first job.
            if wait_until(lambda i=i: _waiting_for_simple_engine(engine) == i + 1):
                observed_waiting.append(i)
        all_waiting.set()

    arriver = threading.Thread(target=arrive_one_by_one)
    arriver.start()
    outputs(run_concurrently(engine, [first, *waiters], start_after=[None, *arrivals]))
    arriver.join(DEADLINE_S)

    hold.check()
    assert observed_waiting == [0, 1, 2, 3]
    assert served == ["first", "waiter 0", "waiter 1", "waiter 2", "waiter 3"]
