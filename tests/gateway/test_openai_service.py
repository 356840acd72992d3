"""OpenAIService below HTTP, on a real Redis and job store, with the worker's side played by
the job store itself (start, token events, commit: what a worker's task does) and the Celery
producer recording: model names resolve to the served model, a completion or chat answer is
the committed job in OpenAI's shape, a failed job is an error with its cause, and a stream
relays token events as chunks without ever sending text that can still change."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
from celery import Celery
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from gateway.core.config import GatewaySettings
from gateway.services.jobs import JobService
from gateway.services.openai import JobEndedWithoutResult, ModelNotFound, OpenAIService
from memq.broker import job_queues, producer_app, waiting_job_ids
from memq.contracts import (
    ErrorResponse,
    JobResult,
    JobStatus,
    JobTimings,
    ModelInfo,
    TokenUsage,
)
from memq.contracts.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIMessage,
    StreamOptions,
)
from memq.store.jobs import JobRecord, JobStore, TokenUpdate

PREFIX = "memq"
GATEWAY_URL = "https://memq.example"
MODEL = "tiny-gpt2"
T = TypeVar("T")


@pytest.fixture
def settings(redis_server: str) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_server,
        service_token="t",  # type: ignore[arg-type]
        gateway_url=GATEWAY_URL,
        job_timeout_s=30,
    )


@pytest.fixture
def producer(settings: GatewaySettings) -> Celery:
    """The gateway's real producer, on the test Redis: messages land in the job queues."""
    return producer_app(settings)


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, prefix=PREFIX)


@pytest.fixture
def jobs(store: JobStore, producer: Celery, settings: GatewaySettings) -> JobService:
    return JobService(store, producer, settings)


def serve_model(store: JobStore) -> None:
    """What a worker publishes once its model is loaded (one token per word)."""
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    store.publish_model(
        ModelInfo(name=MODEL, context_window=4096, tokenizer_json=tokenizer.to_str())
    )


def run_service(
    jobs: JobService,
    settings: GatewaySettings,
    call: Callable[[OpenAIService], Coroutine[Any, Any, T]],
) -> T:
    async def go() -> T:
        aredis = redis.asyncio.Redis.from_url(settings.redis_url)
        try:
            return await call(OpenAIService(jobs, aredis, settings))
        finally:
            await aredis.aclose()

    return asyncio.run(go())


def result(text: str, finish_reason: str = "stop") -> JobResult:
    return JobResult(
        text=text,
        model=MODEL,
        finish_reason=finish_reason,
        usage=TokenUsage(
            prompt_tokens=3, context_tokens=0, input_tokens=3, completion_tokens=4, total_tokens=7
        ),
        timings=JobTimings(),
        prompt="the prompt",
    )


Worker = Callable[[Callable[[JobRecord], None]], None]


@pytest.fixture
def worker(store: JobStore) -> Iterator[Worker]:
    """Starts a worker that takes acme's first job once it is queued and plays the given
    part on it; joined before the Redis client closes (its end hooks still write)."""
    threads: list[threading.Thread] = []

    def start(play: Callable[[JobRecord], None]) -> None:
        def run() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                active = store.active_jobs(tenant="acme")
                if active:
                    started = store.start("acme", active[0][1], worker="w", engine="test")
                    assert started.record is not None, started.reason
                    play(started.record)
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    for thread in threads:
        thread.join(timeout=20)


def tokens(store: JobStore, record: JobRecord, *steps: tuple[int, str]) -> None:
    """Token events as the progress publisher writes them: (offset, delta) each."""
    text = ""
    for n, (offset, delta) in enumerate(steps, start=1):
        text = text[:offset] + delta
        store.publish_tokens(
            [TokenUpdate(record.tenant, record.id, n, text, offset=offset, delta=delta)]
        )


def succeed_with(
    store: JobStore, text: str, *steps: tuple[int, str]
) -> Callable[[JobRecord], None]:
    def play(record: JobRecord) -> None:
        tokens(store, record, *steps)
        assert store.succeed(record, result(text))

    return play


def fail_with(store: JobStore, code: str, *steps: tuple[int, str]) -> Callable[[JobRecord], None]:
    def play(record: JobRecord) -> None:
        tokens(store, record, *steps)
        assert store.fail(record, ErrorResponse(error=code, message=f"{code} happened"))

    return play


def streamed(service: OpenAIService, request: CompletionRequest | ChatCompletionRequest) -> Any:
    async def collect() -> list[Any]:
        lines = await service.stream("acme", request)
        return [line if line == "[DONE]" else json.loads(line) async for line in lines]

    return collect()


def chunk_text(chunk: dict[str, Any]) -> str:
    [choice] = chunk["choices"]
    if "delta" in choice:
        return str(choice["delta"].get("content") or "")
    return str(choice["text"])


# ------------------------------------------------------------------------------ models


def test_no_model_is_served_before_a_worker_publishes_one(
    jobs: JobService, settings: GatewaySettings
) -> None:
    service = OpenAIService(jobs, redis.asyncio.Redis(), settings)
    assert service.models()["data"] == []
    with pytest.raises(ModelNotFound, match="none yet"):
        service.resolve_model("memq")


def test_the_aliases_and_the_served_name_resolve_to_the_served_model(
    jobs: JobService, store: JobStore, settings: GatewaySettings
) -> None:
    serve_model(store)
    service = OpenAIService(jobs, redis.asyncio.Redis(), settings)
    assert [m["id"] for m in service.models()["data"]] == [MODEL]
    assert [service.resolve_model(name) for name in ("memq", "default", MODEL)] == [MODEL] * 3
    with pytest.raises(ModelNotFound, match="available: tiny-gpt2, memq, default"):
        service.resolve_model("gpt-4o")


def test_an_unknown_model_submits_no_job(
    jobs: JobService, store: JobStore, settings: GatewaySettings, redis_client: redis.Redis
) -> None:
    serve_model(store)
    request = CompletionRequest(model="gpt-4o", prompt="Hi")
    with pytest.raises(ModelNotFound):
        run_service(jobs, settings, lambda s: s.complete("acme", request))
    assert waiting_job_ids(redis_client, job_queues(settings)) == set()
    assert store.active_jobs(tenant="acme") == []


# ------------------------------------------------------------------------------ answers


def test_a_completion_is_the_committed_job_in_openais_shape(
    jobs: JobService,
    store: JobStore,
    settings: GatewaySettings,
    worker: Worker,
    redis_client: redis.Redis,
) -> None:
    serve_model(store)
    worker(succeed_with(store, " there"))
    request = CompletionRequest(model="memq", prompt="Hi")
    body = run_service(jobs, settings, lambda s: s.complete("acme", request))
    job_id = body["memq"]["job_id"]
    assert body["id"] == f"cmpl-{job_id}" and body["model"] == MODEL
    assert body["choices"][0]["text"] == " there"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert body["memq"]["status_url"] == f"{GATEWAY_URL}/v1/jobs/{job_id}"
    # The run-job message (task id = job id) waits in its queue; the fake worker here
    # commits without taking it.
    assert waiting_job_ids(redis_client, job_queues(settings)) == {job_id}
    assert store.status("acme", job_id) == JobStatus.succeeded


def test_a_chat_completion_answers_with_the_assistant_message(
    jobs: JobService, store: JobStore, settings: GatewaySettings, worker: Worker
) -> None:
    serve_model(store)
    worker(succeed_with(store, "Hello!"))
    request = ChatCompletionRequest(
        model="memq", messages=[OpenAIMessage(role="user", content="Hi")]
    )
    body = run_service(jobs, settings, lambda s: s.complete("acme", request))
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello!"}
    record = store.get("acme", body["memq"]["job_id"])
    assert record is not None and record.type == "chat"


@pytest.mark.parametrize(
    ("code", "status_code", "answer_code"),
    [("prompt_too_long", 422, "prompt_too_long"), ("engine_error", 500, "job_failed")],
)
def test_a_failed_job_is_an_error_that_names_its_cause(
    jobs: JobService,
    store: JobStore,
    settings: GatewaySettings,
    worker: Worker,
    code: str,
    status_code: int,
    answer_code: str,
) -> None:
    serve_model(store)
    worker(fail_with(store, code))
    request = CompletionRequest(model="memq", prompt="Hi")
    with pytest.raises(JobEndedWithoutResult, match=f"{code}: {code} happened") as failed:
        run_service(jobs, settings, lambda s: s.complete("acme", request))
    assert (failed.value.status_code, failed.value.code) == (status_code, answer_code)


# ------------------------------------------------------------------------------ streams


def test_a_stream_relays_the_text_and_ends_with_usage_and_done(
    jobs: JobService, store: JobStore, settings: GatewaySettings, worker: Worker
) -> None:
    serve_model(store)
    worker(succeed_with(store, "Hello world", (0, "Hel"), (3, "lo world")))
    request = CompletionRequest(
        model="memq", prompt="Hi", stream=True, stream_options=StreamOptions(include_usage=True)
    )
    lines = run_service(jobs, settings, lambda s: streamed(s, request))
    assert lines[-1] == "[DONE]"
    usage = lines[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4
    last = lines[-3]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert "".join(chunk_text(c) for c in lines[:-2]) == "Hello world"


def test_a_chat_stream_opens_with_the_assistant_role(
    jobs: JobService, store: JobStore, settings: GatewaySettings, worker: Worker
) -> None:
    serve_model(store)
    worker(succeed_with(store, "Hi!", (0, "Hi!")))
    request = ChatCompletionRequest(
        model="memq", messages=[OpenAIMessage(role="user", content="Hi")], stream=True
    )
    lines = run_service(jobs, settings, lambda s: streamed(s, request))
    assert lines[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(line["object"] == "chat.completion.chunk" for line in lines[:-1])
    assert "".join(chunk_text(c) for c in lines[:-1]) == "Hi!"


def test_a_stream_never_sends_the_start_of_a_stop_sequence_the_result_drops(
    jobs: JobService, store: JobStore, settings: GatewaySettings, worker: Worker
) -> None:
    serve_model(store)
    # The engine's text ended in "EN", the start of the stop sequence; the committed result
    # cut it: the client must never have seen it.
    worker(succeed_with(store, "Hello ", (0, "Hello EN")))
    request = CompletionRequest(model="memq", prompt="Hi", stream=True, stop="END")
    lines = run_service(jobs, settings, lambda s: streamed(s, request))
    assert "".join(chunk_text(c) for c in lines[:-1]) == "Hello "


def test_a_stream_holds_back_a_half_decoded_character(
    jobs: JobService, store: JobStore, settings: GatewaySettings, worker: Worker
) -> None:
    serve_model(store)
    worker(succeed_with(store, "café", (0, "caf\ufffd")))
    request = CompletionRequest(model="memq", prompt="Hi", stream=True)
    lines = run_service(jobs, settings, lambda s: streamed(s, request))
    texts = [chunk_text(c) for c in lines[:-1]]
    assert "".join(texts) == "café" and not any("\ufffd" in t for t in texts)


def test_a_failed_stream_ends_with_the_jobs_error(
    jobs: JobService, store: JobStore, settings: GatewaySettings, worker: Worker
) -> None:
    serve_model(store)
    worker(fail_with(store, "engine_error", (0, "Hel")))
    request = CompletionRequest(model="memq", prompt="Hi", stream=True)
    lines = run_service(jobs, settings, lambda s: streamed(s, request))
    assert lines[-1] == "[DONE]"
    last = lines[-2]
    assert last["memq"]["error"]["error"] == "engine_error"
    assert "".join(chunk_text(c) for c in lines[:-1]) == "Hel"
