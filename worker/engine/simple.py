"""The baseline engine: one job at a time through Hugging Face `generate`."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from memq.contracts import GenerationParams
from worker.engine.base import FinishReason, GenerationOutput, GenerationRequest, StopChecker
from worker.engine.sampling import OutputNGramProcessor
from worker.model_loader import LoadedModel

log = logging.getLogger("memq.worker.engine")


class _Watch(StoppingCriteria):
    """Per-step hook: reports progress, applies stop strings and cancellation."""

    def __init__(self, request: GenerationRequest, lm: LoadedModel, prompt_len: int) -> None:
        self.request = request
        self.prompt_len = prompt_len
        self.stop = StopChecker(lm.tokenizer, request.params.stop)
        self.first_token_at: float | None = None
        self.cancelled = False
        self.generated: list[int] = []
        self.callback_failed = False

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.generated = input_ids[0, self.prompt_len :].tolist()
        done = self.stop.update(self.generated)
        # A failing progress or cancellation hook must not fail the job (same as batched).
        if self.request.on_token is not None:
            try:
                self.request.on_token(len(self.generated), self.stop.text)
            except Exception:
                if not self.callback_failed:  # once per job, not once per token
                    log.exception("on_token callback raised; generation continues")
                self.callback_failed = True
        if self._is_cancelled():
            self.cancelled = True
            done = True
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)  # type: ignore[return-value]

    def _is_cancelled(self) -> bool:
        if self.request.is_cancelled is None:
            return False
        try:
            return bool(self.request.is_cancelled())
        except Exception:
            log.exception("is_cancelled callback raised; treating the request as running")
            return False


class _FifoLock:
    """A lock granted in arrival order.

    `threading.Lock` lets the thread that just released it win again: a caller that
    submits its next job at once starves every other waiting job.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: collections.deque[object] = collections.deque()
        self._held = False

    def __enter__(self) -> None:
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            while self._held or self._waiting[0] is not ticket:
                self._cond.wait()
            self._waiting.popleft()
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


class SimpleEngine:
    name = "simple"

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self._lock = _FifoLock()

    def generate(self, request: GenerationRequest) -> GenerationOutput:
        start = time.monotonic()  # waiting for the lock is part of the time to first token
        with self._lock:
            return self._generate(request, start)

    def _generate(self, request: GenerationRequest, start: float) -> GenerationOutput:
        params = request.params
        ids = torch.tensor([request.input_ids], dtype=torch.long)
        watch = _Watch(request, self.lm, ids.shape[1])
        if params.seed is not None:
            torch.manual_seed(params.seed)
        eos = self.lm.eos_token_id
        with torch.inference_mode():
            out = self.lm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                stopping_criteria=StoppingCriteriaList([watch]),
                logits_processor=_processors(params, ids.shape[1]),
                pad_token_id=eos if eos is not None else 0,
                eos_token_id=eos,
                **params.to_generate_kwargs(),
            )
        generated = out[0, ids.shape[1] :].tolist()
        finish: FinishReason = "length"
        if watch.cancelled:
            finish = "cancelled"
        elif watch.stop.stopped:
            finish = "stop"
        elif eos is not None and generated and generated[-1] == eos:
            finish = "eos"
        watch.stop.update(generated)
        end = time.monotonic()
        return GenerationOutput(
            token_ids=generated,
            text=watch.stop.text,
            finish_reason=finish,
            time_to_first_token_s=(watch.first_token_at or end) - start,
            generation_s=end - start,
        )

    def close(self) -> None:
        pass


def _processors(params: GenerationParams, prompt_len: int) -> LogitsProcessorList:
    if params.no_repeat_ngram_size and params.no_repeat_ngram_scope == "output":
        return LogitsProcessorList([OutputNGramProcessor(params.no_repeat_ngram_size, prompt_len)])
    return LogitsProcessorList()
