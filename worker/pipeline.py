"""What a job does, independent of Celery: retrieve → assemble → generate → record."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from memq.clients import MemoryClient, MemoryRequestRejected, MemoryServiceError
from memq.contracts import (
    ErrorResponse,
    GenerateJobRequest,
    GenerationParams,
    JobResult,
    JobStatus,
    JobTimings,
    MemoryHit,
    MemorySearchRequest,
    RetrievedMemory,
    SummarizeJobRequest,
    TokenUsage,
)
from memq.jobstore import JobRecord, JobStore
from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.errors import JobCancelled, MemoryUnavailable, WorkerError
from worker.model_loader import LoadedModel
from worker.progress import CancelWatcher, ProgressPublisher
from worker.prompt import AssembledPrompt, assemble, encode, split_tokens

log = logging.getLogger("memq.worker.pipeline")

TLDR = "\n\nTL;DR:"


@dataclass
class _Calls:
    """Accumulates usage over the model calls of one job (several for map-reduce)."""

    prompt_tokens: int = 0
    context_tokens: int = 0
    completion_tokens: int = 0
    generation_s: float = 0.0
    outputs: list[GenerationOutput] = field(default_factory=list)

    def add(self, prompt: AssembledPrompt, out: GenerationOutput) -> None:
        self.prompt_tokens += prompt.prompt_tokens
        self.context_tokens += prompt.context_tokens
        self.completion_tokens += len(out.token_ids)
        self.outputs.append(out)

    def usage(self) -> TokenUsage:
        inp = self.prompt_tokens + self.context_tokens
        return TokenUsage(
            prompt_tokens=self.prompt_tokens,
            context_tokens=self.context_tokens,
            input_tokens=inp,
            completion_tokens=self.completion_tokens,
            total_tokens=inp + self.completion_tokens,
        )


class JobRunner:
    def __init__(
        self,
        lm: LoadedModel,
        engine: Engine,
        store: JobStore,
        memory: MemoryClient,
        *,
        retrieval_query_chars: int = 2000,
        progress_interval_s: float = 0.05,
    ) -> None:
        self.lm = lm
        self.engine = engine
        self.store = store
        self.memory = memory
        self.retrieval_query_chars = retrieval_query_chars
        self.progress = ProgressPublisher(store, progress_interval_s)
        self.cancels = CancelWatcher(store)
        self._map_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="memq-map")

    # ------------------------------------------------------------------------------------
    def run(self, record: JobRecord) -> JobResult:
        started = time.monotonic()
        queued_at = record.timestamps.get(JobStatus.queued) or record.created_at
        running_at = record.timestamps.get(JobStatus.running) or record.created_at
        request = record.request
        t0 = time.monotonic()
        hits = self.retrieve(record.tenant, request)
        retrieval_s = time.monotonic() - t0
        if isinstance(request, GenerateJobRequest):
            text, finish, prompt, calls, chunks = self._generate(record, request, hits)
        else:
            text, finish, prompt, calls, chunks = self._summarize(record, request, hits)
        self.progress.flush()
        used = set(prompt.used_memory_ids)
        return JobResult(
            text=text,
            model=self.lm.name,
            finish_reason=finish,
            memories=[
                RetrievedMemory(id=h.id, score=h.score, text=h.text, used=h.id in used)
                for h in hits
            ],
            usage=calls.usage(),
            timings=JobTimings(
                queue_wait_s=max((running_at - queued_at).total_seconds(), 0.0),
                retrieval_s=retrieval_s,
                generation_s=calls.generation_s,
                total_s=time.monotonic() - started,
            ),
            prompt=self.lm.tokenizer.decode(prompt.input_ids),
            chunks=chunks,
        )

    def retrieve(
        self, tenant: str, request: GenerateJobRequest | SummarizeJobRequest
    ) -> list[MemoryHit]:
        opts = request.memory
        if not opts.namespace or opts.top_k == 0:
            return []
        query = request.prompt if isinstance(request, GenerateJobRequest) else request.text
        search = MemorySearchRequest(
            namespace=opts.namespace,
            query=query[-self.retrieval_query_chars :],
            top_k=opts.top_k,
            min_score=opts.min_score,
        )
        try:
            return self.memory.search(tenant, search).hits
        except (httpx.TransportError, MemoryServiceError) as exc:
            raise MemoryUnavailable(f"memory service unavailable: {exc}") from exc
        except MemoryRequestRejected as exc:
            raise WorkerError(f"memory retrieval was rejected: {exc}") from exc

    # ------------------------------------------------------------------------------------
    def _call(
        self, record: JobRecord, prompt: AssembledPrompt, params: GenerationParams, stream: bool
    ) -> GenerationOutput:
        def on_token(n: int, text: str) -> None:
            self.progress.token(record.tenant, record.id, n, text)

        self.cancels.watch(record.tenant, record.id)
        try:
            out = self.engine.generate(
                GenerationRequest(
                    input_ids=prompt.input_ids,
                    params=params,
                    on_token=on_token if stream else None,
                    is_cancelled=lambda: self.cancels.is_cancelled(record.tenant, record.id),
                )
            )
        finally:
            self.cancels.unwatch(record.tenant, record.id)
        if out.finish_reason == "cancelled":
            raise JobCancelled("job was cancelled while running")
        return out

    def _generate(
        self, record: JobRecord, request: GenerateJobRequest, hits: list[MemoryHit]
    ) -> tuple[str, str, AssembledPrompt, _Calls, int]:
        user_ids = encode(self.lm.tokenizer, request.prompt)
        prompt = assemble(
            self.lm.tokenizer,
            user_ids,
            hits,
            max_new_tokens=request.params.max_new_tokens,
            context_window=self.lm.context_window,
        )
        calls = _Calls()
        t0 = time.monotonic()
        out = self._call(record, prompt, request.params, stream=True)
        calls.generation_s = time.monotonic() - t0
        calls.add(prompt, out)
        return out.text, out.finish_reason, prompt, calls, 1

    def _summarize(
        self, record: JobRecord, request: SummarizeJobRequest, hits: list[MemoryHit]
    ) -> tuple[str, str, AssembledPrompt, _Calls, int]:
        """Zero-shot "TL;DR:" summarization, map-reduced over chunks that fit the context."""
        tok = self.lm.tokenizer
        params = request.params
        suffix = encode(tok, TLDR)
        # Leave room for memories in the final step only when retrieval is requested.
        chunk_len = self.lm.context_window - params.max_new_tokens - len(suffix)
        if chunk_len < 32:
            raise WorkerError(
                f"max_new_tokens={params.max_new_tokens} leaves fewer than 32 tokens per chunk "
                f"in the {self.lm.context_window}-token context; lower max_new_tokens"
            )
        calls = _Calls()
        t0 = time.monotonic()
        ids = encode(tok, request.text)
        chunks = split_tokens(ids, chunk_len, overlap=min(64, chunk_len // 8))
        n_map = len(chunks)
        level_is_user_text = True
        while len(chunks) > 1:
            prompts = [
                assemble(
                    tok,
                    c,
                    [],
                    max_new_tokens=params.max_new_tokens,
                    context_window=self.lm.context_window,
                    suffix_ids=suffix,
                )
                for c in chunks
            ]
            if not level_is_user_text:
                for p in prompts:  # intermediate summaries are context, not user text
                    p.context_tokens += p.prompt_tokens
                    p.prompt_tokens = 0
            # Submitting the chunks concurrently lets the batched engine decode them together.
            outs = list(
                self._map_pool.map(lambda p: self._call(record, p, params, stream=False), prompts)
            )
            for p, o in zip(prompts, outs, strict=True):
                calls.add(p, o)
            joined = encode(tok, "\n".join(o.text.strip() for o in outs if o.text.strip()))
            if not joined:
                joined = encode(tok, outs[0].text or " ")
            chunks = split_tokens(joined, chunk_len, overlap=0)
            level_is_user_text = False
        final_ids = chunks[0] if chunks else []
        prompt = assemble(
            tok,
            final_ids,
            hits,
            max_new_tokens=params.max_new_tokens,
            context_window=self.lm.context_window,
            suffix_ids=suffix,
        )
        if not level_is_user_text:
            prompt.context_tokens += prompt.prompt_tokens
            prompt.prompt_tokens = 0
        out = self._call(record, prompt, params, stream=True)
        calls.add(prompt, out)
        calls.generation_s = time.monotonic() - t0
        return out.text.strip(), out.finish_reason, prompt, calls, n_map

    def error_of(self, exc: BaseException) -> ErrorResponse:
        code = exc.code if isinstance(exc, WorkerError) else "internal_error"
        return ErrorResponse(error=code, message=str(exc) or type(exc).__name__)
