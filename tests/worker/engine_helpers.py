"""Helpers shared by the engine tests: concurrent submission and request builders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from memq.contracts import GenerationParams
from worker.config import WorkerSettings
from worker.engine import build_engine
from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.engine.batched import BatchedEngine
from worker.model_loader import LoadedModel


def worker_settings(**fields: object) -> WorkerSettings:
    """Worker settings as a deployment would have them (defaults from WorkerSettings)."""
    return WorkerSettings.model_validate({"service_token": "test-token", **fields})


def batched(lm: LoadedModel, **knobs: object) -> BatchedEngine:
    """A batched engine with the settings' default knobs, except those given."""
    engine = build_engine(worker_settings(engine="batched", **knobs), lm)
    assert isinstance(engine, BatchedEngine)
    return engine


def encode(lm: LoadedModel, text: str) -> list[int]:
    return list(lm.tokenizer.encode(text))


def request(lm: LoadedModel, text: str, **params: object) -> GenerationRequest:
    return GenerationRequest(encode(lm, text), GenerationParams.model_validate(params))


def run_concurrently(
    engine: Engine,
    requests: Sequence[GenerationRequest],
    *,
    start_after: Sequence[threading.Event | float | None] | None = None,
) -> list[GenerationOutput | BaseException]:
    """Submit each request from its own thread (as Celery's threads pool does).

    `start_after[i]` delays request i: a float sleeps that long, an Event waits for it.
    """
    results: list[GenerationOutput | BaseException] = [RuntimeError("not run")] * len(requests)

    def worker(i: int) -> None:
        gate = start_after[i] if start_after else None
        if isinstance(gate, threading.Event):
            assert gate.wait(30)
        elif isinstance(gate, float):
            time.sleep(gate)
        try:
            results[i] = engine.generate(requests[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a caller hung"
    return results


def outputs(results: Sequence[GenerationOutput | BaseException]) -> list[GenerationOutput]:
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, GenerationOutput)]


def after_tokens(n: int) -> tuple[Callable[[int, str], None], threading.Event]:
    """An on_token callback and the event it sets once n tokens exist."""
    reached = threading.Event()

    def on_token(count: int, _text: str) -> None:
        if count >= n:
            reached.set()

    return on_token, reached
