"""The batched engine: iteration-level (continuous) batching on one model.

Caller threads (Celery's threads pool) put requests in a queue and wait. One scheduler
thread owns the model and the batch's KV cache and loops:

1. drop requests cancelled while queued;
2. admit queued requests (FIFO) while the batch has a free row and the token budget
   allows, prefill them together and pick their first tokens (a group wider than
   `prefill_chunk_tokens` is prefilled a chunk per iteration, each followed by the
   running rows' decode step, so a long prompt never stalls the batch);
3. merge them into the running batch and run one decode step for every row;
4. finish rows (length, eos, stop sequence, cancellation) and drop them at once, so a
   queued request takes the row at the next step.

See docs/engine.md for the cache layout, the budget and the knobs.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from memq.errors import WorkerError
from worker.engine.base import (
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    StopChecker,
    check_fits,
    request_cancelled,
)
from worker.engine.kv_batch import PaddedKV, map_kv, new_cache
from worker.engine.sampling import NGramBans, RowSampling, select_next_tokens
from worker.model_loader import LoadedModel

log = logging.getLogger("memq.worker.engine")

# Finished rows are masked out in place and their slots refilled by newcomers; the cache
# is compacted (one copy) at most this often, instead of once per finished row.
COMPACT_EVERY_STEPS = 32


class EngineClosed(WorkerError):
    """The engine was closed (or its scheduler died) before the request finished."""

    code = "engine_closed"


@dataclass(eq=False)
class _Sequence:
    request: GenerationRequest
    stop: StopChecker
    generator: torch.Generator | None
    ngrams: NGramBans | None = None
    submitted_at: float = field(default_factory=time.monotonic)
    generated: list[int] = field(default_factory=list)
    first_token_at: float | None = None
    finish_reason: FinishReason | None = None
    output: GenerationOutput | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    callback_failed: bool = False

    @property
    def prompt_len(self) -> int:
        return len(self.request.input_ids)

    @property
    def reserved_len(self) -> int:
        """The longest this row can grow: what the token budget reserves for it."""
        return self.prompt_len + self.request.params.max_new_tokens

    @property
    def position(self) -> int:
        """Position id of the row's latest token (the next decode step's input)."""
        return self.prompt_len + len(self.generated) - 1

    def sampling(self) -> RowSampling:
        params = self.request.params
        seen = self.request.input_ids + self.generated if params.repetition_penalty != 1.0 else []
        if self.ngrams is not None:
            self.ngrams.sync(self.generated)
        return RowSampling(params, seen, self.generator, self.ngrams)


@dataclass(eq=False)
class _Prefill:
    """A group of newcomers being prefilled in column chunks (left-padded, like a whole
    prefill); `done` columns are in `cache` so far."""

    seqs: list[_Sequence]
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    cache: Any
    done: int = 0


class BatchedEngine:
    name = "batched"

    def __init__(
        self,
        lm: LoadedModel,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_prefill_tokens: int,
        prefill_chunk_tokens: int,
    ) -> None:
        """Knobs come from `WorkerSettings` (through `build_engine`), which owns their
        defaults; see docs/engine.md. `prefill_chunk_tokens` 0 prefills every group whole."""
        if max_batch_size < 1 or max_batch_tokens < 1 or max_prefill_tokens < 1:
            raise ValueError("max_batch_size, max_batch_tokens and max_prefill_tokens must be >= 1")
        if prefill_chunk_tokens < 0:
            raise ValueError("prefill_chunk_tokens must be >= 0 (0 = no chunking)")
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self._prefilling: _Prefill | None = None  # scheduler thread only
        self.lm = lm
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_prefill_tokens = max_prefill_tokens
        self._num_layers = int(lm.model.config.num_hidden_layers)
        self._pad_id = lm.eos_token_id if lm.eos_token_id is not None else 0
        self._cond = threading.Condition()
        self._queue: collections.deque[_Sequence] = collections.deque()
        self._closed = False
        self._fatal: BaseException | None = None
        # Scheduler thread only, aligned with the cache rows; None marks a retired slot.
        self._rows: list[_Sequence | None] = []
        self._kv = PaddedKV()
        self._steps_since_compact = 0
        self._thread = threading.Thread(target=self._run, name="memq-batched-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- caller side

    def generate(self, request: GenerationRequest) -> GenerationOutput:
        check_fits(request, self.lm.context_window)
        seq = _Sequence(
            request=request,
            stop=StopChecker(self.lm.tokenizer, request.params.stop),
            generator=self._generator(request.params.seed, request.params.greedy),
            ngrams=NGramBans.for_params(request.params, request.input_ids),
        )
        with self._cond:
            if self._closed or self._fatal is not None:
                raise EngineClosed("the batched engine is closed") from self._fatal
            self._queue.append(seq)
            self._cond.notify()
        # Waking up now and then guards against a scheduler that died without resolving us.
        while not seq.done.wait(timeout=1.0):
            if not self._thread.is_alive() and not seq.done.is_set():
                raise EngineClosed("the batched engine's scheduler stopped") from self._fatal
        if seq.error is not None:
            raise seq.error
        assert seq.output is not None
        return seq.output

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @staticmethod
    def _generator(seed: int | None, greedy: bool) -> torch.Generator | None:
        if greedy:
            return None
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        return generator

    # ------------------------------------------------------------- scheduler side

    def _run(self) -> None:
        try:
            while True:
                newcomers = self._wait_for_work()
                if newcomers is None:
                    break
                with torch.inference_mode():
                    if self._prefilling is not None:
                        self._prefill_chunk()
                    elif newcomers:
                        self._prefill(newcomers)
                    if self._live():
                        self._decode()
        except BaseException as exc:  # a bug in the loop itself: fail everyone, never hang
            log.exception("batched engine scheduler crashed")
            self._fatal = exc
            with self._cond:
                stranded = list(self._queue) + self._live() + self._prefilling_seqs()
                self._queue.clear()
            self._rows = []
            self._kv.clear()
            self._prefilling = None
            for seq in stranded:
                self._fail(seq, exc)
            return
        closed = EngineClosed("the batched engine was closed")
        with self._cond:
            stranded = list(self._queue) + self._live() + self._prefilling_seqs()
            self._queue.clear()
        self._rows = []
        self._kv.clear()
        self._prefilling = None
        for seq in stranded:
            self._fail(seq, closed)

    def _live(self) -> list[_Sequence]:
        return [s for s in self._rows if s is not None]

    def _prefilling_seqs(self) -> list[_Sequence]:
        return list(self._prefilling.seqs) if self._prefilling is not None else []

    def _wait_for_work(self) -> list[_Sequence] | None:
        """Block until there is something to do; return the requests to admit now."""
        with self._cond:
            while (
                not self._closed and not self._queue and not self._rows and self._prefilling is None
            ):
                self._cond.wait()
            if self._closed:
                return None
            if self._prefilling is not None:
                return []  # FIFO: nobody is admitted past a group still being prefilled
            queued = list(self._queue)
            self._queue.clear()
        keep: list[_Sequence] = []
        for seq in queued:
            if self._cancelled(seq):
                self._finish(seq, "cancelled")
            else:
                keep.append(seq)
        admitted = self._admit(keep)
        with self._cond:
            self._queue.extendleft(reversed(keep[len(admitted) :]))
        return admitted

    def _admit(self, queued: list[_Sequence]) -> list[_Sequence]:
        """The longest FIFO prefix of `queued` that fits the row, KV and prefill limits."""
        live = self._live()
        rows = len(live)
        widest = max((s.reserved_len for s in live), default=0)
        admitted: list[_Sequence] = []
        longest_prompt = 0
        for seq in queued:
            rows_after = rows + len(admitted) + 1
            widest_after = max(widest, seq.reserved_len)
            prompt_after = max(longest_prompt, seq.prompt_len)
            fits = (
                rows_after <= self.max_batch_size
                and rows_after * widest_after <= self.max_batch_tokens
                and (len(admitted) + 1) * prompt_after <= self.max_prefill_tokens
            )
            # An oversized request still runs when it would be alone, or it would starve.
            if not fits and rows_after > 1:
                break
            admitted.append(seq)
            widest, longest_prompt = widest_after, prompt_after
        return admitted

    def _prefill(self, newcomers: list[_Sequence]) -> None:
        width = max(s.prompt_len for s in newcomers)
        ids = torch.full((len(newcomers), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(newcomers), width), dtype=torch.long)
        for i, seq in enumerate(newcomers):
            ids[i, width - seq.prompt_len :] = torch.tensor(seq.request.input_ids)
            mask[i, width - seq.prompt_len :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        self._prefilling = _Prefill(newcomers, ids, mask, positions, new_cache(self._num_layers))
        self._prefill_chunk()

    def _prefill_chunk(self) -> None:
        """Prefill the next chunk of the group (all of it when chunking is off or the group
        is narrow enough); after the last one, pick first tokens and join the batch."""
        group = self._prefilling
        assert group is not None
        if all(self._cancelled(s) for s in group.seqs):
            self._prefilling = None
            for seq in group.seqs:
                self._finish(seq, "cancelled")
            return
        width = int(group.ids.shape[1])
        chunk = self.prefill_chunk_tokens or width
        end = min(group.done + chunk, width)
        try:
            out = self.lm.model(
                input_ids=group.ids[:, group.done : end],
                attention_mask=group.mask[:, :end],
                position_ids=group.positions[:, group.done : end],
                cache=group.cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :].float()
        except Exception as exc:
            self._prefilling = None
            for seq in group.seqs:
                self._fail(seq, exc)
            return
        group.done = end
        if end < width:
            return
        self._prefilling = None
        self._join(group.seqs, group.cache, group.mask, logits)

    def _join(
        self, newcomers: list[_Sequence], cache: Any, mask: torch.Tensor, logits: torch.Tensor
    ) -> None:
        keep = self._advance(newcomers, logits)
        if not keep:
            return
        # Refill retired slots in place first: no copy of the running batch's cache.
        free = [i for i, s in enumerate(self._rows) if s is None]
        rest: list[int] = []
        for j in keep:
            if free and self._kv.place(free[0], cache, j, mask[j]):
                self._rows[free.pop(0)] = newcomers[j]
            else:
                rest.append(j)
        if rest:
            index = torch.tensor(rest, dtype=torch.long)
            map_kv(cache, lambda t: t.index_select(0, index))
            self._kv.extend(cache, mask.index_select(0, index))
            self._rows.extend(newcomers[i] for i in rest)

    def _decode(self) -> None:
        rows = self._rows
        ids = torch.tensor(
            [[s.generated[-1] if s is not None else self._pad_id] for s in rows], dtype=torch.long
        )
        positions = torch.tensor(
            [[s.position if s is not None else 0] for s in rows], dtype=torch.long
        )
        mask = self._kv.decode_mask()
        try:
            out = self.lm.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=self._kv.cache,
                use_cache=True,
            )
            logits = out.logits[:, -1, :].float()
        except Exception as exc:
            # The cache may hold a half-appended step: no row can continue from it.
            for seq in self._live():
                self._fail(seq, exc)
            self._rows = []
            self._kv.clear()
            return
        self._kv.advance(mask)
        live = [i for i, s in enumerate(rows) if s is not None]
        live_seqs = [s for s in rows if s is not None]
        kept = self._advance(live_seqs, logits.index_select(0, torch.tensor(live)))
        continuing = {live[k] for k in kept}
        for i in live:
            if i not in continuing:
                self._rows[i] = None
                self._kv.retire(i)
        self._compact()

    def _compact(self) -> None:
        """Drop retired slots and all-padding columns (one copy), not on every finish."""
        self._steps_since_compact += 1
        live = [i for i, s in enumerate(self._rows) if s is not None]
        if not live:
            self._rows = []
            self._kv.clear()
            self._steps_since_compact = 0
            return
        retired = len(self._rows) - len(live)
        if retired and (
            self._steps_since_compact >= COMPACT_EVERY_STEPS or retired * 2 > len(self._rows)
        ):
            self._kv.keep(live)
            self._rows = [self._rows[i] for i in live]
            self._steps_since_compact = 0

    def _advance(self, rows: list[_Sequence], logits: torch.Tensor) -> list[int]:
        """Give each row its next token; return the indices of rows that continue.

        A failure here fails only the rows it concerns; the loop itself carries on.
        """
        try:
            chosen = select_next_tokens(logits, [s.sampling() for s in rows])
        except Exception as exc:
            for seq in rows:
                self._fail(seq, exc)
            return []
        now = time.monotonic()
        keep: list[int] = []
        for i, (seq, token) in enumerate(zip(rows, chosen, strict=True)):
            if isinstance(token, BaseException):
                self._fail(seq, token)
                continue
            try:
                if self._accept(seq, token, now):
                    keep.append(i)
            except Exception as exc:
                self._fail(seq, exc)
        return keep

    def _accept(self, seq: _Sequence, token: int, now: float) -> bool:
        """Append `token` to the row; finish it if it is done. True when it continues."""
        seq.generated.append(token)
        if seq.first_token_at is None:
            seq.first_token_at = now
        params = seq.request.params
        stopped = False
        if params.stop or seq.request.on_token is not None:
            stopped = seq.stop.update(seq.generated)
        self._notify(seq)
        eos = self.lm.eos_token_id
        if self._cancelled(seq):
            self._finish(seq, "cancelled")
        elif stopped:
            self._finish(seq, "stop")
        elif eos is not None and token == eos:
            self._finish(seq, "eos")
        elif len(seq.generated) >= params.max_new_tokens:
            self._finish(seq, "length")
        else:
            return True
        return False

    def _notify(self, seq: _Sequence) -> None:
        callback = seq.request.on_token
        if callback is None:
            return
        try:
            callback(len(seq.generated), seq.stop.text)
        except Exception:
            if not seq.callback_failed:  # log once per request, not once per token
                log.exception("on_token callback raised; generation continues")
            seq.callback_failed = True

    @staticmethod
    def _cancelled(seq: _Sequence) -> bool:
        return request_cancelled(seq.request)

    def _finish(self, seq: _Sequence, reason: FinishReason) -> None:
        seq.stop.update(seq.generated)
        end = time.monotonic()
        seq.output = GenerationOutput(
            token_ids=list(seq.generated),
            text=seq.stop.text,
            finish_reason=reason,
            time_to_first_token_s=(seq.first_token_at or end) - seq.submitted_at,
            generation_s=end - seq.submitted_at,
            submitted_at=seq.submitted_at,
        )
        seq.done.set()

    @staticmethod
    def _fail(seq: _Sequence, exc: BaseException) -> None:
        seq.error = exc
        seq.done.set()

    def stats(self) -> dict[str, Any]:
        """A snapshot for logs and tests (read without the scheduler's cooperation)."""
        with self._cond:
            queued = len(self._queue)
        running = sum(1 for s in self._rows if s is not None)
        return {"running": running, "queued": queued, "kv_width": self._kv.width}
