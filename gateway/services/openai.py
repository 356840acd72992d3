"""The OpenAI-compatible endpoints over memq jobs: submit the translated job, then either
wait for it (non-streaming) or relay its token events as OpenAI chunks (streaming).

Either way the work is an ordinary job: it is in the tenant's job list, it can be
cancelled by id (`memq.job_id` in every answer), and it counts against quotas and rate
limits. A client that disconnects does not cancel it: its result stays readable by id.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
from starlette.concurrency import run_in_threadpool

from gateway.core.config import GatewaySettings
from gateway.services.jobs import JobService
from memq.contracts import JobPublic, JobStatus
from memq.contracts.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    chat_body,
    chunk,
    completion_body,
    finish_reason,
    models_body,
    usage_of,
)
from memq.errors import GatewayError, NotFound
from memq.webhooks import status_url

MODEL_ALIASES = ("memq", "default")
REPLACEMENT_CHARACTER = "\ufffd"


class ModelNotFound(NotFound):
    code = "model_not_found"


class JobEndedWithoutResult(GatewayError):
    status_code = 500
    code = "job_failed"

    def __init__(self, job: JobPublic) -> None:
        error = job.error
        detail = f"{error.error}: {error.message}" if error else job.status.value
        super().__init__(f"job {job.id} ended without a result ({detail})")
        if error is not None and error.error in ("prompt_too_long", "validation_error"):
            self.status_code = 422
            self.code = error.error


class OpenAIService:
    def __init__(
        self, jobs: JobService, aredis: redis.asyncio.Redis, settings: GatewaySettings
    ) -> None:
        self.jobs = jobs
        self.aredis = aredis
        self.settings = settings

    def served_models(self) -> list[str]:
        served = self.jobs.tokens.model()  # cached: the model info is megabytes of JSON
        return [served[1].name] if served else []

    def resolve_model(self, requested: str) -> str:
        served = self.served_models()
        if requested in served:
            return requested
        if served and requested in MODEL_ALIASES:
            return served[0]
        available = ", ".join([*served, *MODEL_ALIASES]) if served else "none yet (no worker)"
        raise ModelNotFound(
            f"the model {requested!r} is not served here; available: {available} (GET /v1/models)"
        )

    def models(self) -> dict[str, Any]:
        return models_body(self.served_models())

    async def complete(
        self, tenant: str, request: CompletionRequest | ChatCompletionRequest
    ) -> dict[str, Any]:
        model = await run_in_threadpool(self.resolve_model, request.model)
        created = await run_in_threadpool(self.jobs.submit, tenant, request.to_job())
        job = await self._wait(tenant, created.record.id)
        if job.result is None or job.status == JobStatus.failed:
            raise JobEndedWithoutResult(job)
        url = status_url(self.settings.gateway_url, job.id)
        if isinstance(request, ChatCompletionRequest):
            return chat_body(job, model, url)
        return completion_body(job, model, url)

    async def stream(
        self, tenant: str, request: CompletionRequest | ChatCompletionRequest
    ) -> AsyncIterator[str]:
        """Submit the job (errors surface before the stream starts), then the SSE lines."""
        model = await run_in_threadpool(self.resolve_model, request.model)
        created = await run_in_threadpool(self.jobs.submit, tenant, request.to_job())
        return self._chunks(tenant, created.record.id, model, request)

    async def _chunks(
        self,
        tenant: str,
        job_id: str,
        model: str,
        request: CompletionRequest | ChatCompletionRequest,
    ) -> AsyncIterator[str]:
        chat = isinstance(request, ChatCompletionRequest)
        now = int(time.time())
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        hold = max((len(s) for s in stops), default=1) - 1
        if chat:
            yield _sse(chunk(job_id, now, model, chat=True, role=True, text=""))
        text, sent, position = "", 0, "0"
        while True:
            events = await self.jobs.store.read_events_async(
                self.aredis, tenant, job_id, position, block_ms=15_000
            )
            done = False
            for event_id, event in events:
                position = event_id
                if event["event"] == "token":
                    text = text[: event["offset"]] + event["delta"]
                elif event["event"] == "status" and JobStatus(event["status"]).terminal:
                    done = True
            safe = _safe_prefix(text, hold)
            if safe > sent:
                yield _sse(chunk(job_id, now, model, chat=chat, text=text[sent:safe]))
                sent = safe
            if done or (not events and await self._ended(tenant, job_id)):
                break
        job = await self._wait(tenant, job_id)
        final = job.result.text if job.result else text
        if len(final) > sent and final.startswith(text[:sent]):
            yield _sse(chunk(job_id, now, model, chat=chat, text=final[sent:]))
        reason = finish_reason(job.result.finish_reason) if job.result else "stop"
        last = chunk(job_id, now, model, chat=chat, finish=reason)
        if job.status == JobStatus.failed:
            last["memq"] = {
                "job_id": job_id,
                "error": job.error.model_dump() if job.error else None,
            }
        yield _sse(last)
        options = request.stream_options
        if options is not None and options.include_usage:
            usage = {**chunk(job_id, now, model, chat=chat), "choices": [], "usage": usage_of(job)}
            yield _sse(usage)
        yield "[DONE]"

    async def _ended(self, tenant: str, job_id: str) -> bool:
        status = await run_in_threadpool(self.jobs.store.status, tenant, job_id)
        return status is None or status.terminal

    async def _wait(self, tenant: str, job_id: str) -> JobPublic:
        """The job once it is terminal (a cancelled one with its partial result, if any)."""
        deadline = time.monotonic() + self.settings.job_timeout_s
        position = "0"
        while time.monotonic() < deadline:
            record = await run_in_threadpool(self.jobs.get, tenant, job_id)
            if record.status.terminal and (
                record.status != JobStatus.cancelled or record.result is not None
            ):
                return record.public()
            events = await self.jobs.store.read_events_async(
                self.aredis, tenant, job_id, position, block_ms=2_000
            )
            if events:
                position = events[-1][0]
            elif record.status.terminal:  # cancelled, no partial result coming
                return record.public()
        return (await run_in_threadpool(self.jobs.get, tenant, job_id)).public()


def _safe_prefix(text: str, hold: int) -> int:
    """How much of the partial text cannot change any more: not a trailing half-decoded
    character, and not the last characters a stop sequence could still claim."""
    end = len(text)
    while end and text[end - 1] == REPLACEMENT_CHARACTER:
        end -= 1
    return max(end - hold, 0)


def _sse(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))
