"""Helpers shared by the engine tests: concurrent submission, request builders, and
explicit synchronisation with the engine's own thread.

Both engines call `on_token` from the thread that runs the model (batched: the scheduler
thread; simple: inside `generate`, holding the engine). A callback that waits therefore
pauses the engine at a known token while the test enqueues other requests and watches
them queue (`BatchedEngine.stats()`): the ordering comes from the engine's state, never
from sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from memq.contracts import GenerationParams
from tests.worker.helpers import worker_settings
from worker.engine import build_engine
from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.engine.batched import BatchedEngine
from worker.model_loader import LoadedModel

DEADLINE_S = 30.0
"""Longest a test waits for the engine to reach a state; only a broken engine waits this long."""


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> bool:
    """Poll `condition` until it holds; False when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


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
    start_after: Sequence[threading.Event | None] | None = None,
) -> list[GenerationOutput | BaseException]:
    """Submit each request from its own thread (as Celery's threads pool does).

    `start_after[i]`: request i is submitted once that Event is set.
    """
    results: list[GenerationOutput | BaseException] = [RuntimeError("not run")] * len(requests)

    def worker(i: int) -> None:
        gate = start_after[i] if start_after else None
        if gate is not None and not gate.wait(DEADLINE_S):
            results[i] = TimeoutError(f"request {i}'s gate never opened")
            return
        try:
            results[i] = engine.generate(requests[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * DEADLINE_S)
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


class Hold:
    """An `on_token` callback that holds the engine's thread at chosen token counts.

    At token n (a key of `stages`) it sets `reached[n]` and waits until `stages[n]()`
    holds, so the engine decodes nothing for anyone meanwhile. The engine swallows
    callback errors, so the outcome is kept: `check()` fails the test when a stage was
    never reached or its condition never held. `also` is called for every token first.
    """

    def __init__(
        self,
        stages: dict[int, Callable[[], bool]],
        *,
        also: Callable[[int, str], None] | None = None,
    ) -> None:
        self.stages = stages
        self.also = also
        self.reached = {n: threading.Event() for n in stages}
        self.held: dict[int, bool] = {}

    def __call__(self, count: int, text: str) -> None:
        if self.also is not None:
            self.also(count, text)
        if count in self.stages and count not in self.held:
            self.reached[count].set()
            self.held[count] = wait_until(self.stages[count])

    def check(self) -> None:
        missing = [n for n in self.stages if n not in self.held]
        failed = [n for n, ok in self.held.items() if not ok]
        assert not missing, f"the engine never produced token(s) {missing}"
        assert not failed, f"the condition held at token(s) {failed} never came true"


def queued(engine: BatchedEngine, n: int) -> Callable[[], bool]:
    """True once exactly n requests wait in the engine's queue."""
    return lambda: int(engine.stats()["queued"]) == n


def tokens_so_far(log: list[int]) -> Callable[[int, str], None]:
    """An `also` callback recording each token count (read from other callbacks)."""
    return lambda count, _text: log.append(count)
