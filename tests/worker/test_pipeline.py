"""JobRunner without Celery, Redis or a model: retrieval, prompt, map-reduce, usage.

A deterministic fake engine that always returns exactly `max_new_tokens` tokens (GPT-2
rarely stops by itself) proves that summarization terminates for every accepted
`max_new_tokens`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from memq.budget import max_new_tokens_limit
from memq.contracts import (
    GenerateJobRequest,
    GenerationParams,
    JobRequest,
    JobStatus,
    JobType,
    LeftOut,
    MemoryHit,
    MemoryOptions,
    MemorySearchRequest,
    MemorySearchResponse,
    SummarizeJobRequest,
)
from memq.errors import MemoryUnavailable, PromptTooLong
from memq.store.jobs import JobRecord
from worker.engine.base import GenerationOutput, GenerationRequest
from worker.errors import JobCancelled, SummaryDidNotConverge
from worker.model_loader import LoadedModel
from worker.pipeline import MAX_SUMMARY_ROUNDS, SUMMARY_SHRINK, JobRunner
from worker.prompting import TLDR, PlainPrompts, encode


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


class FakeEngine:
    """Returns exactly `max_new_tokens` tokens (`overshoot` times that, if asked to
    misbehave); records every request."""

    name = "fake"

    def __init__(self, tok: Any, overshoot: int = 1, cancel_after: int | None = None) -> None:
        self.word = encode(tok, " fox")[0]
        self.tok = tok
        self.overshoot = overshoot
        self.cancel_after = cancel_after
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest) -> GenerationOutput:
        with self._lock:
            self.requests.append(request)
        ids: list[int] = []
        for n in range(request.params.max_new_tokens * self.overshoot):
            ids.append(self.word)
            if request.on_token is not None:
                request.on_token(n + 1, self.tok.decode(ids))
            if (
                self.cancel_after is not None
                and n + 1 >= self.cancel_after
                and request.is_cancelled is not None
                and request.is_cancelled()
            ):
                return GenerationOutput(ids, self.tok.decode(ids), "cancelled", 0.0, 0.0)
        return GenerationOutput(ids, self.tok.decode(ids), "length", 0.0, 0.0)

    def close(self) -> None:
        pass


class FakeMemory:
    def __init__(self, hits: list[MemoryHit] | None = None, down: bool = False) -> None:
        self.hits = hits or []
        self.down = down
        self.searches: list[tuple[str, MemorySearchRequest]] = []

    def search(self, tenant: str, request: MemorySearchRequest) -> MemorySearchResponse:
        self.searches.append((tenant, request))
        if self.down:
            raise MemoryUnavailable("memory service unreachable")
        return MemorySearchResponse(hits=self.hits)


class FakeProgress:
    def __init__(self) -> None:
        self.tokens: list[tuple[str, str, int, str]] = []
        self.flushed = 0
        self.forgotten: list[tuple[str, str]] = []

    def token(self, tenant: str, job_id: str, tokens: int, text: str) -> None:
        self.tokens.append((tenant, job_id, tokens, text))

    def flush(self, timeout: float = 5.0) -> None:
        self.flushed += 1

    def forget(self, tenant: str, job_id: str) -> None:
        self.forgotten.append((tenant, job_id))


class FakeCancels:
    def __init__(self, cancelled: bool = False) -> None:
        self.cancelled = cancelled
        self.watching: dict[tuple[str, str], int] = {}

    def watch(self, tenant: str, job_id: str) -> None:
        self.watching[(tenant, job_id)] = self.watching.get((tenant, job_id), 0) + 1

    def unwatch(self, tenant: str, job_id: str) -> None:
        self.watching[(tenant, job_id)] -= 1

    def is_cancelled(self, tenant: str, job_id: str) -> bool:
        return self.cancelled


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def _runner(
    tok: Any,
    pool: ThreadPoolExecutor,
    *,
    window: int = 1024,
    engine: FakeEngine | None = None,
    memory: FakeMemory | None = None,
    progress: FakeProgress | None = None,
    cancels: FakeCancels | None = None,
    query_chars: int = 2000,
) -> JobRunner:
    lm = LoadedModel("tiny", None, tok, window, tok.eos_token_id)
    return JobRunner(
        lm,
        engine or FakeEngine(tok),
        memory or FakeMemory(),
        progress or FakeProgress(),
        cancels or FakeCancels(),
        pool,
        prompts=PlainPrompts(tok, window),
        retrieval_query_chars=query_chars,
        min_similarity=None,
    )


def _record(request: JobRequest, tenant: str = "acme") -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(
        id="job-1",
        type=JobType(request.type),
        status=JobStatus.running,
        tenant=tenant,
        created_at=now,
        timestamps={JobStatus.queued: now, JobStatus.running: now},
        request=request,
    )


def _hit(i: int, text: str, score: float) -> MemoryHit:
    return MemoryHit(id=f"m{i}", score=score, text=text, namespace="user:1")


LONG_TEXT = " ".join(
    f"Sentence {i} says that the quick brown fox jumps over the lazy dog near Paris."
    for i in range(400)
)


# ------------------------------------------------------------------------------- summarize


@pytest.mark.parametrize("window", [128, 256])
def test_summarize_terminates_for_every_accepted_max_new_tokens(
    tok: Any, pool: ThreadPoolExecutor, window: int
) -> None:
    template = len(encode(tok, TLDR))
    limit = max_new_tokens_limit(JobType.summarize, window, template)
    text_tokens = len(encode(tok, LONG_TEXT))
    assert text_tokens > 20 * window  # needs several reduce rounds
    for new in range(1, limit + 1):
        engine = FakeEngine(tok)
        runner = _runner(tok, pool, window=window, engine=engine)
        request = SummarizeJobRequest(text=LONG_TEXT, params=GenerationParams(max_new_tokens=new))
        result = runner.run(_record(request))
        calls = engine.requests
        # every call fits the context, and intermediate calls shrink their input 4x
        for call in calls:
            assert len(call.input_ids) + call.params.max_new_tokens <= window
        for call in calls[:-1]:
            text_len = len(call.input_ids) - template
            assert call.params.max_new_tokens <= max(1, text_len // SUMMARY_SHRINK)
            assert call.on_token is None  # only the final call streams
        assert calls[-1].params.max_new_tokens == new
        assert len(result.text.split()) == new  # the final summary is `new` fake tokens
        assert result.usage.completion_tokens == sum(c.params.max_new_tokens for c in calls)
        assert result.chunks > 1
        assert len(calls) < 2 * result.chunks + MAX_SUMMARY_ROUNDS


def test_summarize_up_to_the_1024_context_limit_terminates(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    template = len(encode(tok, TLDR))
    limit = max_new_tokens_limit(JobType.summarize, 1024, template)
    for new in [1, 96, 340, 500, 700, 900, limit - 1, limit]:
        engine = FakeEngine(tok)
        request = SummarizeJobRequest(text=LONG_TEXT, params=GenerationParams(max_new_tokens=new))
        result = _runner(tok, pool, engine=engine).run(_record(request))
        assert engine.requests[-1].params.max_new_tokens == new
        assert result.finish_reason == "length"


def test_summarize_beyond_the_limit_is_refused_with_the_limit(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    template = len(encode(tok, TLDR))
    limit = max_new_tokens_limit(JobType.summarize, 256, template)
    request = SummarizeJobRequest(text=LONG_TEXT, params=GenerationParams(max_new_tokens=limit + 1))
    with pytest.raises(PromptTooLong, match=f"at most {limit}"):
        _runner(tok, pool, window=256).run(_record(request))


def test_a_round_that_does_not_shrink_fails_the_job_with_a_reason(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    engine = FakeEngine(tok, overshoot=8)  # an engine that ignores max_new_tokens
    request = SummarizeJobRequest(text=LONG_TEXT, params=GenerationParams(max_new_tokens=50))
    with pytest.raises(SummaryDidNotConverge, match="did not shrink"):
        _runner(tok, pool, window=256, engine=engine).run(_record(request))


def test_short_text_is_summarized_in_one_call_with_memories(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    engine = FakeEngine(tok)
    memory = FakeMemory([_hit(1, "Alice lives in Paris.", 0.9)])
    request = SummarizeJobRequest(
        text="Alice went home.",
        params=GenerationParams(max_new_tokens=5),
        memory=MemoryOptions(namespace="user:1", top_k=3),
    )
    result = _runner(tok, pool, engine=engine, memory=memory).run(_record(request))
    assert len(engine.requests) == 1 and result.chunks == 1
    prompt = tok.decode(engine.requests[0].input_ids)
    assert prompt.startswith("Relevant memories:\n- Alice lives in Paris.")
    assert prompt.endswith("Alice went home." + TLDR)
    user = len(encode(tok, "Alice went home."))
    assert result.usage.prompt_tokens == user
    assert result.usage.input_tokens == len(engine.requests[0].input_ids)
    assert result.usage.context_tokens == len(engine.requests[0].input_ids) - user
    assert result.memories[0].used


def test_map_reduce_counts_user_text_once_per_map_chunk_and_summaries_as_context(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    engine = FakeEngine(tok)
    request = SummarizeJobRequest(text=LONG_TEXT, params=GenerationParams(max_new_tokens=20))
    result = _runner(tok, pool, window=256, engine=engine).run(_record(request))
    usage = result.usage
    assert usage.input_tokens == sum(len(r.input_ids) for r in engine.requests)
    assert usage.total_tokens == usage.input_tokens + usage.completion_tokens
    template = len(encode(tok, TLDR))
    map_calls = engine.requests[: result.chunks]
    assert usage.prompt_tokens == sum(len(r.input_ids) - template for r in map_calls)
    assert usage.prompt_tokens >= len(encode(tok, LONG_TEXT))  # chunks overlap


# -------------------------------------------------------------------------------- generate


def test_generate_retrieves_with_the_tail_of_the_prompt_and_puts_memories_first(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    memory = FakeMemory(
        [
            _hit(1, "Alice owns a cat.", 0.2),
            _hit(2, "Alice lives in Paris.", 0.9),
            _hit(3, "Bob lives in Rome.", 0.8),
        ]
    )
    engine = FakeEngine(tok)
    progress = FakeProgress()
    request = GenerateJobRequest(
        prompt="x" * 50 + "Where does Alice live?",
        params=GenerationParams(max_new_tokens=3),
        memory=MemoryOptions(namespace="user:1", top_k=3, min_similarity=0.1),
    )
    result = _runner(
        tok, pool, engine=engine, memory=memory, progress=progress, query_chars=100
    ).run(_record(request, tenant="beta"))
    tenant, search = memory.searches[0]
    assert tenant == "beta"
    assert (search.namespace, search.top_k, search.include_superseded) == ("user:1", 6, True)
    assert search.query == request.prompt[-100:]
    assert [m.used for m in result.memories] == [True, False, True]  # by similarity
    assert result.memories[1].left_out == LeftOut.different_subject  # Bob, not Alice
    assert result.prompt.index("Alice lives in Paris.") < result.prompt.index("Alice owns a cat.")
    assert "Bob" not in result.prompt
    assert result.prompt.endswith(request.prompt)
    assert result.usage.prompt_tokens == len(encode(tok, request.prompt))
    assert result.usage.completion_tokens == 3 and result.text == " fox fox fox"
    assert [t[2] for t in progress.tokens] == [1, 2, 3]
    assert progress.flushed == 1 and progress.forgotten == [("beta", "job-1")]


def test_retrieval_is_skipped_without_a_namespace_or_with_top_k_0(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    memory = FakeMemory([_hit(1, "unused", 0.9)])
    runner = _runner(tok, pool, memory=memory)
    runner.run(_record(GenerateJobRequest(prompt="hi", params=GenerationParams(max_new_tokens=1))))
    runner.run(
        _record(
            GenerateJobRequest(
                prompt="hi",
                params=GenerationParams(max_new_tokens=1),
                memory=MemoryOptions(namespace="user:1", top_k=0),
            )
        )
    )
    assert memory.searches == []


def test_memory_outage_is_raised_for_the_task_to_retry(tok: Any, pool: ThreadPoolExecutor) -> None:
    request = GenerateJobRequest(prompt="hi", memory=MemoryOptions(namespace="user:1"))
    with pytest.raises(MemoryUnavailable):
        _runner(tok, pool, memory=FakeMemory(down=True)).run(_record(request))


def test_cancellation_while_generating_raises_job_cancelled_and_unwatches(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    cancels = FakeCancels(cancelled=True)
    progress = FakeProgress()
    runner = _runner(
        tok, pool, engine=FakeEngine(tok, cancel_after=2), cancels=cancels, progress=progress
    )
    with pytest.raises(JobCancelled):
        runner.run(_record(GenerateJobRequest(prompt="hi")))
    assert cancels.watching == {("acme", "job-1"): 0}
    assert progress.forgotten == [("acme", "job-1")]  # state dropped even on failure


def test_a_superseded_memory_is_reported_and_kept_out_of_the_prompt(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    stale = _hit(1, "Tomasz lives in Gdansk.", 0.9).model_copy(update={"superseded_by": "m2"})
    memory = FakeMemory([stale, _hit(2, "Tomasz moved to Krakow.", 0.8)])
    request = GenerateJobRequest(
        prompt="Where does Tomasz live?",
        params=GenerationParams(max_new_tokens=3),
        memory=MemoryOptions(namespace="user:1", top_k=1, min_similarity=0.1),
    )
    result = _runner(tok, pool, engine=FakeEngine(tok), memory=memory).run(_record(request))
    by_id = {m.id: m for m in result.memories}
    assert by_id["m1"].left_out == LeftOut.superseded and not by_id["m1"].used
    assert by_id["m2"].used  # top_k counts current memories only
    assert "Gdansk" not in result.prompt and "Krakow" in result.prompt


def test_a_question_about_someone_unknown_is_answered_i_dont_know_without_the_model(
    tok: Any, pool: ThreadPoolExecutor
) -> None:
    memory = FakeMemory([_hit(1, "Marek drives a red Volvo.", 0.9)])
    engine = FakeEngine(tok)
    request = GenerateJobRequest(
        prompt="What car does Kofi drive?",
        params=GenerationParams(max_new_tokens=3),
        memory=MemoryOptions(namespace="user:1", min_similarity=0.1),
    )
    result = _runner(tok, pool, engine=engine, memory=memory).run(_record(request))
    assert result.text == "I don't know: my notes hold nothing about Kofi."
    assert result.finish_reason == "abstained" and result.citations == []
    assert result.memories[0].left_out == LeftOut.different_subject
    assert engine.requests == []  # the model was not called
    assert result.usage.completion_tokens == 0
