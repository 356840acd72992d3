"""The OpenAI-compatible wire format (what the official `openai` client sends and expects),
and its translation into memq jobs.

The OpenAI endpoints are an adapter over memq's own job contracts (`jobs`), as in
vLLM: a completion is a `generate` job, a chat completion a `chat` job, on the same queue,
with memq's options as extra body fields (`memory`, `session_id`, `write_back`,
`priority`, `metadata`). Requests are lenient where OpenAI's are (unknown optional fields
are ignored) and strict where memq cannot honour a field: `n > 1`, `logprobs`, `tools`,
images and non-zero penalties are refused with a clear 4xx instead of being ignored.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from memq.contracts.common import Namespace
from memq.contracts.jobs import (
    CHAT_MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_LIMIT,
    SESSION_ID_PATTERN,
    TEMPERATURE_FLOOR,
    CallbackUrl,
    ChatJobRequest,
    ChatMessage,
    ChatRole,
    GenerateJobRequest,
    GenerationParams,
    JobMetadata,
    JobPublic,
    MemoryOptions,
    Priority,
    RetrievedMemory,
    SessionId,
    UserId,
)

OPENAI_PATHS = (
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/v1/files",
    "/v1/batches",
)
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for completions


class _Lenient(BaseModel):
    # The official client sends fields memq has no use for (e.g. `user`, `store`): ignored.
    model_config = ConfigDict(extra="ignore")


class OpenAIMemory(BaseModel):
    """memq's retrieval options as an extra body field."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[Namespace] | None = Field(default=None, min_length=1, max_length=8)
    top_k: int = Field(default=5, ge=0, le=50)
    min_similarity: float | None = Field(default=None, ge=-1.0, le=1.0)


class _Sampling(_Lenient):
    model: str = Field(min_length=1, max_length=256, description="The served model's id.")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported.")
    stream: bool = False
    stop: str | list[Annotated[str, Field(min_length=1, max_length=64)]] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(default=None, max_length=256)
    # memq's extras
    memory: OpenAIMemory | None = None
    session_id: SessionId | None = None
    write_back: bool = True
    remember_facts: bool = False
    priority: Priority = Priority.normal
    metadata: JobMetadata | None = None
    callback_url: CallbackUrl | None = None

    @model_validator(mode="after")
    def _supported(self) -> _Sampling:
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value not in (None, 0, 0.0):
                raise ValueError(f"`{name}` is not supported by memq; omit it or send 0")
        if self.logprobs not in (None, False, 0):
            raise ValueError("`logprobs` is not supported by memq; omit it")
        if self.logit_bias:
            raise ValueError("`logit_bias` is not supported by memq; omit it")
        if isinstance(self.stop, list) and len(self.stop) > 8:
            raise ValueError("`stop` takes at most 8 sequences")
        return self

    def params(self, default_max_tokens: int) -> GenerationParams:
        temperature = 1.0 if self.temperature is None else self.temperature
        if temperature < TEMPERATURE_FLOOR:
            temperature = 0.0  # OpenAI's "as deterministic as possible": greedy
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return GenerationParams(
            max_new_tokens=self.max_tokens or default_max_tokens,
            temperature=temperature,
            top_p=self.top_p if self.top_p is not None else 1.0,
            seed=self.seed,
            stop=stop,
        )

    def user_id(self) -> UserId | None:
        """OpenAI's `user`, when it can name a namespace (`user:{user}`)."""
        return self.user if self.user is not None and _is_id(self.user) else None

    def memory_options(self) -> MemoryOptions:
        """Memory is on by default wherever the scope is known (a `session_id` or a `user`):
        the job searches the session's and the user's namespaces, top 5; `memory:
        {"top_k": 0}` opts out."""
        if self.memory is None:
            scoped = self.session_id is not None or self.user_id() is not None
            return MemoryOptions() if scoped else MemoryOptions(top_k=0)
        return MemoryOptions(
            namespaces=self.memory.namespaces,
            top_k=self.memory.top_k,
            min_similarity=self.memory.min_similarity,
        )


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(description="The text to continue (one prompt).")
    stream_options: StreamOptions | None = None
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1, le=1)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError(
                "memq takes one prompt per completion request; send several requests or use "
                "the batch API for many"
            )
        return v

    @model_validator(mode="after")
    def _no_echo(self) -> CompletionRequest:
        if self.echo or self.suffix:
            raise ValueError("`echo` and `suffix` are not supported by memq; omit them")
        return self

    def to_job(self) -> GenerateJobRequest:
        prompt = self.prompt[0] if isinstance(self.prompt, list) else self.prompt
        return GenerateJobRequest(
            prompt=prompt,
            params=self.params(COMPLETION_DEFAULT_MAX_TOKENS),
            memory=self.memory_options(),
            user_id=self.user_id(),
            metadata=self.metadata or {},
            priority=self.priority,
            callback_url=self.callback_url,
        )


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("memq reads text content only (parts of type `text`)")
            parts.append(part["text"])
        return "\n".join(parts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(_Sampling):
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=256)
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatCompletionRequest:
        if self.tools:
            raise ValueError("`tools` (function calling) is not supported by memq; omit it")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise ValueError("memq returns text only: `response_format` must be `text`")
        return self

    def to_job(self) -> ChatJobRequest:
        params = self.params(CHAT_MAX_NEW_TOKENS)
        if self.max_completion_tokens:
            params = params.model_copy(update={"max_new_tokens": self.max_completion_tokens})
        messages = [
            ChatMessage(
                role=ChatRole.system if m.role in ("system", "developer") else ChatRole(m.role),
                content=m.text(),
            )
            for m in self.messages
        ]
        return ChatJobRequest(
            messages=messages,
            session_id=self.session_id,
            user_id=self.user_id(),
            write_back=self.write_back,
            remember_facts=self.remember_facts,
            params=params,
            memory=self.memory_options(),
            metadata=self.metadata or {},
            priority=self.priority,
            callback_url=self.callback_url,
        )


def _is_id(value: str) -> bool:
    return re.fullmatch(SESSION_ID_PATTERN, value) is not None


# --------------------------------------------------------------------------------- answers


def finish_reason(memq_reason: str) -> str:
    return "length" if memq_reason == "length" else "stop"


class MemqExtras(BaseModel):
    """memq's part of an OpenAI-style answer: the job behind it and what it retrieved."""

    job_id: str
    status_url: str
    memories: list[RetrievedMemory] = Field(default_factory=list)
    finish_reason: str | None = None


def usage_of(job: JobPublic) -> dict[str, int]:
    if job.result is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    usage = job.result.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_body(job: JobPublic, model: str, status_url: str) -> dict[str, Any]:
    assert job.result is not None
    return {
        "id": f"cmpl-{job.id}",
        "object": "text_completion",
        "created": int(job.created_at.timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": job.result.text,
                "logprobs": None,
                "finish_reason": finish_reason(job.result.finish_reason),
            }
        ],
        "usage": usage_of(job),
        "memq": _extras(job, status_url),
    }


def chat_body(job: JobPublic, model: str, status_url: str) -> dict[str, Any]:
    assert job.result is not None
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": int(job.created_at.timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": job.result.text},
                "logprobs": None,
                "finish_reason": finish_reason(job.result.finish_reason),
            }
        ],
        "usage": usage_of(job),
        "memq": _extras(job, status_url),
    }


def _extras(job: JobPublic, status_url: str) -> dict[str, Any]:
    return MemqExtras(
        job_id=job.id,
        status_url=status_url,
        memories=job.result.memories if job.result else [],
        finish_reason=job.result.finish_reason if job.result else None,
    ).model_dump(mode="json")


def chunk(
    job_id: str,
    created: int,
    model: str,
    *,
    chat: bool,
    text: str | None = None,
    role: bool = False,
    finish: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk in OpenAI's format."""
    if chat:
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": f"chatcmpl-{job_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
    return {
        "id": f"cmpl-{job_id}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}],
    }


def models_body(names: list[str]) -> dict[str, Any]:
    now = int(time.time())
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": now, "owned_by": "memq"} for n in names],
    }


def openai_error(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    kind = {
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
