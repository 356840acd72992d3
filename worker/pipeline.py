"""What a job does, independent of Celery: retrieve → assemble → generate → result.

`JobRunner.run(record)` is the whole job; the Celery task only starts the record, calls
it and commits the outcome. Every collaborator (model, engine, prompt strategy, memory
client, session history, progress publisher, cancel watcher, thread pool) is handed in,
so the runner is tested without Celery, Redis or a model.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from memq.budget import check_job_fits
from memq.contracts import (
    AdapterServed,
    ChatJobRequest,
    Citation,
    ConsolidateJobRequest,
    GenerateJobRequest,
    GenerationJobRequest,
    GenerationParams,
    JobRequest,
    JobResult,
    JobStatus,
    JobTimings,
    JobType,
    MemoryHit,
    MemoryScope,
    MemorySearchRequest,
    MemorySearchResponse,
    RetrievedMemory,
    ScopeReason,
    SummarizeJobRequest,
    TokenUsage,
)
from memq.errors import WorkerError
from memq.store.adapters import AdapterNotFound
from memq.store.jobs import JobRecord
from worker import grounding
from worker.engine.base import Engine, GenerationOutput, GenerationRequest
from worker.errors import JobCancelled, SummaryDidNotConverge
from worker.model_loader import LoadedModel
from worker.prompting import AssembledPrompt, Prompts, split_tokens
from worker.sessions import SessionContext

if TYPE_CHECKING:
    from worker.adapters import AdapterPool
    from worker.training import Consolidator

log = logging.getLogger("memq.worker.pipeline")

SUMMARY_SHRINK = 4
"""An intermediate (map or reduce) summary is at most 1/SUMMARY_SHRINK of its input, so
every reduce round works on fewer chunks than the one before (see `_summarize`)."""
MAX_SUMMARY_ROUNDS = 12
"""More rounds than the longest accepted text needs (the chunk count shrinks by ≥ 32/11
per round; 1M characters is < 32,000 chunks, < 10 rounds)."""
MAP_OVERLAP_TOKENS = 64
SUMMARY_SEPARATOR = "\n"


class MemorySearcher(Protocol):
    def search(self, tenant: str, request: MemorySearchRequest) -> MemorySearchResponse: ...


class SessionSource(Protocol):
    def context(self, tenant: str, session_id: str) -> SessionContext: ...


class TokenSink(Protocol):
    def token(self, tenant: str, job_id: str, tokens: int, text: str) -> None: ...

    def flush(self, timeout: float = 5.0) -> None: ...

    def forget(self, tenant: str, job_id: str) -> None: ...


class CancelSource(Protocol):
    def watch(self, tenant: str, job_id: str) -> None: ...

    def unwatch(self, tenant: str, job_id: str) -> None: ...

    def is_cancelled(self, tenant: str, job_id: str) -> bool: ...


@dataclass
class _Calls:
    """Accumulates usage over the model calls of one job (several for map-reduce)."""

    prompt_tokens: int = 0
    context_tokens: int = 0
    completion_tokens: int = 0
    count: int = 0
    first_token_s: float | None = None  # the first call's, from its engine submission

    def add(self, prompt: AssembledPrompt, out: GenerationOutput) -> None:
        self.prompt_tokens += prompt.prompt_tokens
        self.context_tokens += prompt.context_tokens
        self.completion_tokens += len(out.token_ids)
        self.count += 1
        if self.first_token_s is None and out.token_ids:
            self.first_token_s = out.time_to_first_token_s

    def usage(self) -> TokenUsage:
        inp = self.prompt_tokens + self.context_tokens
        return TokenUsage(
            prompt_tokens=self.prompt_tokens,
            context_tokens=self.context_tokens,
            input_tokens=inp,
            completion_tokens=self.completion_tokens,
            total_tokens=inp + self.completion_tokens,
        )


@dataclass
class _Outcome:
    text: str
    finish_reason: str
    prompt: AssembledPrompt
    calls: _Calls
    chunks: int = 1
    rounds: int = 0


class _Interrupted(WorkerError):
    """A model call stopped because the job was cancelled; carries what it had made (turned
    into `JobCancelled` with the partial result by `JobRunner.run`)."""

    code = "cancelled"

    def __init__(self, outcome: _Outcome) -> None:
        super().__init__("cancelled")
        self.outcome = outcome


def applied(request: JobRequest) -> JobRequest:
    """The request as it runs: a sampled job without a seed gets one drawn now, so its
    result names every parameter needed to reproduce it."""
    if isinstance(request, ConsolidateJobRequest):
        return request
    params = request.params
    if params.greedy or params.seed is not None:
        return request
    seeded = params.model_copy(update={"seed": secrets.randbits(32)})
    return request.model_copy(update={"params": seeded})


class JobRunner:
    def __init__(
        self,
        lm: LoadedModel,
        engine: Engine,
        memory: MemorySearcher,
        progress: TokenSink,
        cancels: CancelSource,
        map_pool: ThreadPoolExecutor,
        *,
        prompts: Prompts,
        sessions: SessionSource | None = None,
        retrieval_query_chars: int,
        min_similarity: float | None = None,
        adapters: AdapterPool | None = None,
        consolidator: Consolidator | None = None,
        abstain: bool = True,
    ) -> None:
        self.lm = lm
        self.abstain = abstain
        self.engine = engine
        self.adapters = adapters
        self.consolidator = consolidator
        self.memory = memory
        self.progress = progress
        self.cancels = cancels
        self.map_pool = map_pool
        self.prompts = prompts
        self.sessions = sessions
        self.retrieval_query_chars = retrieval_query_chars
        self.min_similarity = min_similarity

    def run(self, record: JobRecord) -> JobResult:
        """The job's result; raises JobCancelled (carrying the partial result) when it was
        cancelled while running, MemoryUnavailable for the task to retry, or a MemqError."""
        request = applied(record.request)
        if isinstance(request, ConsolidateJobRequest):
            return self._consolidate(record, request)
        # A job on an adapter runs on that adapter's engine; everything else is shared.
        with self._engine_for(record.tenant, request) as (engine, served):
            return self._generation(record, engine, request, served)

    @contextmanager
    def _engine_for(
        self, tenant: str, request: GenerationJobRequest
    ) -> Iterator[tuple[Engine, AdapterServed | None]]:
        if request.adapter is None:
            yield self.engine, None
            return
        if self.adapters is None:
            raise AdapterNotFound("this worker serves no adapters")
        with self.adapters.engine(tenant, request.adapter) as found:
            yield found

    def _consolidate(self, record: JobRecord, request: ConsolidateJobRequest) -> JobResult:
        if self.consolidator is None:
            raise AdapterNotFound("this worker does not train adapters")
        tenant, job_id = record.tenant, record.id
        self.cancels.watch(tenant, job_id)
        try:
            result = self.consolidator.run(
                record, request, is_cancelled=lambda: self.cancels.is_cancelled(tenant, job_id)
            )
        finally:
            self.cancels.unwatch(tenant, job_id)
        if result is None:
            raise JobCancelled("the job was cancelled while training", None)
        queued_at = record.timestamps.get(JobStatus.queued) or record.created_at
        running_at = record.timestamps.get(JobStatus.running) or record.created_at
        result.timings.queue_wait_s = max((running_at - queued_at).total_seconds(), 0.0)
        return result

    def _generation(
        self,
        record: JobRecord,
        engine: Engine,
        request: GenerationJobRequest,
        served: AdapterServed | None,
    ) -> JobResult:
        started = time.monotonic()
        queued_at = record.timestamps.get(JobStatus.queued) or record.created_at
        running_at = record.timestamps.get(JobStatus.running) or record.created_at
        t0 = time.monotonic()
        hits = self.retrieve(record.tenant, request)
        retrieval_s = time.monotonic() - t0
        t1 = time.monotonic()

        def result(outcome: _Outcome) -> JobResult:
            used = set(outcome.prompt.used_memory_ids)
            question = None if isinstance(request, SummarizeJobRequest) else request.prompt
            relied_on = (
                grounding.cited(outcome.text, question, [h for h in hits if h.id in used])
                if question is not None
                else []
            )
            return JobResult(
                text=outcome.text,
                memory_scope=(
                    request.memory_scopes()
                    if isinstance(request, ChatJobRequest | GenerateJobRequest)
                    and request.memory.top_k > 0
                    else [
                        MemoryScope(namespace=ns, reason=ScopeReason.explicit)
                        for ns in request.memory.search_namespaces()
                    ]
                ),
                citations=[
                    Citation(id=h.id, version=h.version, namespace=h.namespace) for h in relied_on
                ],
                model=self.lm.name,
                finish_reason=outcome.finish_reason,
                memories=[
                    RetrievedMemory(
                        id=h.id,
                        score=h.score,
                        text=h.text,
                        namespace=h.namespace,
                        version=h.version,
                        similarity=h.similarity,
                        used=h.id in used,
                        left_out=None if h.id in used else outcome.prompt.left_out.get(h.id),
                    )
                    for h in hits
                ],
                usage=outcome.calls.usage(),
                timings=JobTimings(
                    queue_wait_s=max((running_at - queued_at).total_seconds(), 0.0),
                    retrieval_s=retrieval_s,
                    generation_s=time.monotonic() - t1,
                    engine_first_token_s=outcome.calls.first_token_s,
                    total_s=time.monotonic() - started,
                ),
                prompt=self.lm.tokenizer.decode(outcome.prompt.input_ids),
                prompt_token_ids=outcome.prompt.input_ids,
                params=request.params,
                chunks=outcome.chunks,
                adapter=served,
            )

        try:
            if isinstance(request, GenerateJobRequest):
                outcome = self._generate(record, engine, request, hits)
            elif isinstance(request, ChatJobRequest):
                outcome = self._chat(record, engine, request, hits)
            else:
                outcome = self._summarize(record, engine, request, hits)
        except _Interrupted as stop:
            partial = result(stop.outcome)
            raise JobCancelled("the job was cancelled while running", partial) from None
        finally:
            self.progress.flush()
            self.progress.forget(record.tenant, record.id)
        return result(outcome)

    def retrieve(self, tenant: str, request: GenerationJobRequest) -> list[MemoryHit]:
        """The memories the job asked for, best first (pinned ones as given): each
        namespace is searched with the tail of the job's text, the hits merged by cosine
        similarity. Raises MemoryUnavailable / MemoryRequestRejected."""
        opts = request.memory
        if opts.pinned is not None:
            return [
                MemoryHit(
                    id=m.id,
                    score=m.score,
                    text=m.text,
                    namespace=opts.namespace or "pinned",
                    similarity=m.similarity,
                    version=m.version,
                )
                for m in opts.pinned
            ]
        if isinstance(request, ChatJobRequest | GenerateJobRequest):
            namespaces, query = [s.namespace for s in request.memory_scopes()], request.prompt
        else:
            namespaces, query = opts.search_namespaces(), request.text
        if not namespaces or opts.top_k == 0:
            return []
        hits: dict[str, MemoryHit] = {}
        for namespace in namespaces:
            # Superseded memories are searched too, only to be reported (left out as
            # `superseded`), so a result shows the stale fact it did not use.
            search = MemorySearchRequest(
                namespace=namespace,
                query=query[-self.retrieval_query_chars :],
                top_k=min(2 * opts.top_k, 100),
                include_superseded=True,
            )
            for hit in self.memory.search(tenant, search).hits:
                hits.setdefault(hit.id, hit)
        ranked = sorted(
            hits.values(),
            key=lambda h: h.similarity if h.similarity is not None else h.score,
            reverse=True,
        )
        current = [h for h in ranked if h.superseded_by is None][: opts.top_k]
        stale = [h for h in ranked[: opts.top_k] if h.superseded_by is not None]
        return sorted(
            current + stale,
            key=lambda h: h.similarity if h.similarity is not None else h.score,
            reverse=True,
        )

    def _floor(self, request: GenerationJobRequest) -> float | None:
        given = request.memory.min_similarity
        return given if given is not None else self.min_similarity

    # ------------------------------------------------------------------------------------
    def _call(
        self,
        record: JobRecord,
        engine: Engine,
        prompt: AssembledPrompt,
        params: GenerationParams,
        stream: bool,
    ) -> GenerationOutput:
        tenant, job_id = record.tenant, record.id

        def on_token(n: int, text: str) -> None:
            self.progress.token(tenant, job_id, n, text)

        self.cancels.watch(tenant, job_id)
        try:
            out = engine.generate(
                GenerationRequest(
                    input_ids=prompt.input_ids,
                    params=params,
                    on_token=on_token if stream else None,
                    is_cancelled=lambda: self.cancels.is_cancelled(tenant, job_id),
                )
            )
        finally:
            self.cancels.unwatch(tenant, job_id)
        if out.finish_reason == "cancelled":
            calls = _Calls()
            calls.add(prompt, out)
            raise _Interrupted(_Outcome(out.text, "cancelled", prompt, calls))
        return out

    def _generate(
        self,
        record: JobRecord,
        engine: Engine,
        request: GenerateJobRequest,
        hits: list[MemoryHit],
    ) -> _Outcome:
        prompt = self.prompts.generate(
            request.prompt, hits, request.params.max_new_tokens, self._floor(request)
        )
        abstained = self._abstained(request.prompt, hits, prompt)
        if abstained is not None:
            return abstained
        out = self._call(record, engine, prompt, request.params, stream=True)
        calls = _Calls()
        calls.add(prompt, out)
        return _Outcome(out.text, out.finish_reason, prompt, calls)

    def _abstained(
        self, question: str, hits: list[MemoryHit], prompt: AssembledPrompt
    ) -> _Outcome | None:
        """memq's own "I don't know" when every retrieved memory is about someone else
        (`grounding.abstention`); the model is not called."""
        text = grounding.abstention(question, hits, prompt.left_out) if self.abstain else None
        if text is None:
            return None
        calls = _Calls()
        calls.prompt_tokens, calls.context_tokens = prompt.prompt_tokens, prompt.context_tokens
        return _Outcome(text, "abstained", prompt, calls)

    def _chat(
        self, record: JobRecord, engine: Engine, request: ChatJobRequest, hits: list[MemoryHit]
    ) -> _Outcome:
        context = SessionContext()
        if request.session_id is not None and self.sessions is not None:
            context = self.sessions.context(record.tenant, request.session_id)
        params = request.params
        stops = [s for s in self.prompts.chat_stop() if s not in params.stop]
        if stops:
            params = params.model_copy(update={"stop": [*params.stop, *stops][:8]})
        prompt = self.prompts.chat(
            request,
            context.turns,
            context.summary,
            hits,
            params.max_new_tokens,
            self._floor(request),
        )
        # With a conversation in the prompt the answer may be in it: the model decides.
        if not context.turns and context.summary is None:
            abstained = self._abstained(request.prompt, hits, prompt)
            if abstained is not None:
                return abstained
        out = self._call(record, engine, prompt, params, stream=True)
        calls = _Calls()
        calls.add(prompt, out)
        return _Outcome(out.text.strip(), out.finish_reason, prompt, calls)

    def _summarize(
        self,
        record: JobRecord,
        engine: Engine,
        request: SummarizeJobRequest,
        hits: list[MemoryHit],
    ) -> _Outcome:
        """Zero-shot "TL;DR:" summarization, map-reduced over chunks that fit the context.

        Termination: a chunk holds at most `room` tokens; an intermediate summary of an
        n-token chunk gets at most max(1, n // SUMMARY_SHRINK) new tokens. A round over k
        chunks (≤ k·room tokens) so yields at most k·(room/4 + 1 + separator) tokens, i.e.
        at most ceil(k · 11/32) chunks of `room` ≥ 32 tokens: fewer than k for every k ≥ 2.
        Rounds are capped anyway, and a round that fails to shrink fails the job.
        """
        params = request.params
        check_job_fits(
            JobType.summarize,
            max_new_tokens=params.max_new_tokens,
            context_window=self.lm.context_window,
            template_tokens=self.prompts.template_tokens()[JobType.summarize],
        )
        room = self.prompts.summary_room(params.max_new_tokens)
        separator = self.prompts.encode(SUMMARY_SEPARATOR)
        calls = _Calls()
        pieces = split_tokens(
            self.prompts.encode(request.text), room, overlap=min(MAP_OVERLAP_TOKENS, room // 8)
        )
        n_map, rounds, is_user_text = len(pieces), 0, True
        while len(pieces) > 1:
            rounds += 1
            if rounds > MAX_SUMMARY_ROUNDS:
                raise SummaryDidNotConverge(
                    f"the text still spans {len(pieces)} chunks after {MAX_SUMMARY_ROUNDS} "
                    "summary rounds; split it or raise max_new_tokens' room by lowering it"
                )
            summaries = self._summarize_round(record, engine, pieces, request, calls, is_user_text)
            joined: list[int] = []
            for ids in summaries:
                joined += (separator if joined else []) + ids
            if len(joined) >= sum(len(p) for p in pieces):
                raise SummaryDidNotConverge(
                    f"summary round {rounds} did not shrink its input ({len(joined)} tokens from "
                    f"{sum(len(p) for p in pieces)}); lower max_new_tokens"
                )
            pieces = split_tokens(joined or separator, room)
            is_user_text = False
        final = self.prompts.summarize(
            pieces[0] if pieces else [],
            hits,
            params.max_new_tokens,
            request.sentences,
            self._floor(request),
        )
        if not is_user_text:  # intermediate summaries are context, not the user's text
            final.context_tokens += final.prompt_tokens
            final.prompt_tokens = 0
        out = self._call(record, engine, final, params, stream=True)
        calls.add(final, out)
        return _Outcome(out.text.strip(), out.finish_reason, final, calls, n_map, rounds)

    def _summarize_round(
        self,
        record: JobRecord,
        engine: Engine,
        pieces: list[list[int]],
        request: SummarizeJobRequest,
        calls: _Calls,
        is_user_text: bool,
    ) -> list[list[int]]:
        """Summarize every piece (concurrently, so the batched engine decodes them
        together); each summary's token ids, never longer than the model produced."""
        params = request.params
        jobs = []
        for piece in pieces:
            cap = max(1, min(params.max_new_tokens, len(piece) // SUMMARY_SHRINK))
            prompt = self.prompts.summarize(piece, [], cap, request.sentences, None)
            if not is_user_text:
                prompt.context_tokens += prompt.prompt_tokens
                prompt.prompt_tokens = 0
            jobs.append((prompt, params.model_copy(update={"max_new_tokens": cap})))
        outs = list(
            self.map_pool.map(lambda j: self._call(record, engine, j[0], j[1], False), jobs)
        )
        summaries = []
        for (prompt, _), out in zip(jobs, outs, strict=True):
            calls.add(prompt, out)
            summaries.append(self.prompts.encode(out.text.strip())[: len(out.token_ids)])
        return summaries
