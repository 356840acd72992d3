"""The engine interface every generation engine implements.

An engine owns one model for the life of the worker process. `generate` is blocking and
thread-safe: Celery's threads pool calls it from many threads at once, and each engine
decides how to share the model (the simple engine serialises, the batched one batches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from memq.contracts import GenerationParams

FinishReason = Literal["length", "stop", "eos", "cancelled"]
TokenCallback = Callable[[int, str], None]
"""Called after each generated token with (tokens generated so far, partial text)."""


@dataclass
class GenerationRequest:
    input_ids: list[int]
    params: GenerationParams
    on_token: TokenCallback | None = None
    is_cancelled: Callable[[], bool] | None = None


@dataclass
class GenerationOutput:
    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    time_to_first_token_s: float
    generation_s: float
    submitted_at: float = field(default_factory=time.monotonic)


def check_fits(request: GenerationRequest, context_window: int) -> None:
    """Raise ValueError when the request can never run: an empty prompt, or prompt +
    max_new_tokens past the model's context."""
    if not request.input_ids:
        raise ValueError("input_ids is empty: the prompt must have at least one token")
    total = len(request.input_ids) + request.params.max_new_tokens
    if total > context_window:
        raise ValueError(
            f"prompt ({len(request.input_ids)} tokens) + max_new_tokens "
            f"({request.params.max_new_tokens}) is {total} tokens; the model's context "
            f"is {context_window}"
        )


def request_cancelled(request: GenerationRequest) -> bool:
    """Ask the request's `is_cancelled`; a callback that raises is logged and ignored."""
    check = request.is_cancelled
    if check is None:
        return False
    try:
        return bool(check())
    except Exception:
        logging.getLogger("memq.worker.engine").exception(
            "is_cancelled callback raised; treating the request as running"
        )
        return False


class Engine(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> GenerationOutput: ...

    def close(self) -> None: ...


class StopChecker:
    """Tracks one sequence's decoded text and decides when a stop sequence ends it.

    Stop strings can span token boundaries, so the check runs on decoded text; the
    returned text is cut before the stop string and never includes it.
    """

    def __init__(self, tokenizer: object, stop: list[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self.text = ""
        self.stopped = False

    def update(self, token_ids: list[int]) -> bool:
        """Feed all generated ids so far; returns True when a stop sequence appeared."""
        text: str = self._tokenizer.decode(token_ids, skip_special_tokens=True)  # type: ignore[attr-defined]
        self.text = text
        if self._stop:
            cut = min((i for s in self._stop if (i := text.find(s)) >= 0), default=-1)
            if cut >= 0:
                self.text = text[:cut]
                self.stopped = True
        return self.stopped
