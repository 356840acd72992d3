"""The one contract module shared by the gateway, the worker and the memory service.

It imports nothing heavy (no torch, transformers or Qdrant) so every service can use it.
Names follow their role: ``*Create`` (write input), ``*Public`` (what the API returns),
``*Request`` (an operation's input), ``*Response`` (an operation's output).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_NEW_TOKENS_LIMIT = 1024
MAX_PROMPT_CHARS = 200_000
MAX_SUMMARIZE_CHARS = 1_000_000
NAMESPACE_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

Namespace = Annotated[
    str,
    Field(
        pattern=NAMESPACE_PATTERN,
        description="Memory scope, e.g. `user:42`, `agent:support`, `session:abc` "
        "(1-128 chars of letters, digits and `_ . : @ -`).",
        examples=["user:42"],
    ),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body of every memq service."""

    error: str = Field(description="Machine-readable error code, e.g. `job_not_found`.")
    message: str = Field(description="What went wrong and what to change.")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems for validation errors."
    )


# --------------------------------------------------------------------------------------
# Memories
# --------------------------------------------------------------------------------------


class MemoryKind(StrEnum):
    fact = "fact"
    message = "message"
    document_chunk = "document_chunk"
    summary = "summary"


class MemoryCreate(StrictModel):
    namespace: Namespace
    text: str = Field(min_length=1, max_length=20_000, description="The memory's text.")
    kind: MemoryKind = Field(default=MemoryKind.fact, description="What sort of memory this is.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free JSON object, filterable in search."
    )
    source: str | None = Field(
        default=None, max_length=256, description="What produced it (a job id, a document id)."
    )
    ttl_seconds: int | None = Field(
        default=None, gt=0, le=10 * 365 * 86400, description="Expire after this many seconds."
    )

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must contain non-whitespace characters")
        return v


class MemoryBatchCreate(StrictModel):
    items: list[MemoryCreate] = Field(
        min_length=1, max_length=1000, description="Up to 1,000 memories, embedded as one batch."
    )


class MemoryPublic(BaseModel):
    id: str = Field(description="Memory id (UUID).")
    tenant: str
    namespace: str
    kind: MemoryKind
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    version: int = 1
    content_hash: str
    deduplicated: bool = Field(
        default=False, description="True when the write matched an existing memory instead."
    )


class MemoryBatchResponse(BaseModel):
    items: list[MemoryPublic]


class MemorySearchRequest(StrictModel):
    namespace: Namespace
    query: str = Field(min_length=1, max_length=20_000, description="Text to search for.")
    top_k: int = Field(default=5, ge=1, le=100, description="Maximum number of hits.")
    min_score: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Drop hits scoring below this."
    )
    kinds: list[MemoryKind] | None = Field(default=None, description="Only these kinds.")


class MemoryHit(BaseModel):
    id: str
    score: float
    text: str
    namespace: str
    kind: MemoryKind = MemoryKind.fact
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemorySearchResponse(BaseModel):
    hits: list[MemoryHit]


class ForgetResponse(BaseModel):
    namespace: str
    deleted: int


# --------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------


class JobType(StrEnum):
    generate = "generate"
    summarize = "summarize"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class GenerationParams(StrictModel):
    """Sampling parameters; `temperature=0` means greedy decoding."""

    max_new_tokens: int = Field(
        default=64, ge=1, le=MAX_NEW_TOKENS_LIMIT, description="Tokens to generate (1..1024)."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, le=1000, description="0 = disabled.")
    repetition_penalty: float = Field(default=1.0, ge=0.5, le=3.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=8, description="Stop sequences (not included in output)."
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face `generate` (stop sequences handled by memq)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            kwargs["top_k"] = self.top_k if self.top_k > 0 else None
        return kwargs


class MemoryOptions(StrictModel):
    namespace: Namespace | None = Field(
        default=None, description="Namespace to retrieve from; omit to skip retrieval."
    )
    top_k: int = Field(default=5, ge=0, le=50, description="Memories to retrieve (0 = none).")
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)


class GenerateJobRequest(StrictModel):
    type: Literal["generate"] = "generate"
    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="The text to continue."
    )
    params: GenerationParams = Field(default_factory=GenerationParams)
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must contain non-whitespace characters")
        return v


class SummarizeJobRequest(StrictModel):
    type: Literal["summarize"] = "summarize"
    text: str = Field(
        min_length=1,
        max_length=MAX_SUMMARIZE_CHARS,
        description="Text to summarize; longer than the context is map-reduced over chunks.",
    )
    params: GenerationParams = Field(default_factory=lambda: GenerationParams(max_new_tokens=96))
    memory: MemoryOptions = Field(default_factory=lambda: MemoryOptions(top_k=0))
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must contain non-whitespace characters")
        return v


JobRequest = Annotated[GenerateJobRequest | SummarizeJobRequest, Field(discriminator="type")]


class RetrievedMemory(BaseModel):
    id: str
    score: float
    text: str
    used: bool = Field(description="Whether it fit in the context and was put in the prompt.")


class TokenUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the user's own text.")
    context_tokens: int = Field(description="Tokens of retrieved memories plus template.")
    input_tokens: int = Field(description="prompt_tokens + context_tokens: the model's input.")
    completion_tokens: int
    total_tokens: int = Field(description="input_tokens + completion_tokens.")


class JobTimings(BaseModel):
    queue_wait_s: float | None = None
    retrieval_s: float | None = None
    generation_s: float | None = None
    total_s: float | None = None


class JobResult(BaseModel):
    text: str
    model: str = Field(description="The model that produced the text.")
    finish_reason: str = Field(description="`length`, `stop` (stop sequence) or `eos`.")
    memories: list[RetrievedMemory] = Field(default_factory=list)
    usage: TokenUsage
    timings: JobTimings
    prompt: str = Field(description="The exact assembled model input (memories + user text).")
    chunks: int = Field(default=1, description="Summarize: number of map chunks.")


class JobProgress(BaseModel):
    tokens: int = 0
    text: str = ""


class JobPublic(BaseModel):
    id: str
    type: JobType
    status: JobStatus
    tenant: str
    created_at: datetime
    status_url: str | None = None
    timestamps: dict[JobStatus, datetime] = Field(
        default_factory=dict, description="When the job entered each state."
    )
    request: GenerateJobRequest | SummarizeJobRequest
    progress: JobProgress | None = None
    result: JobResult | None = None
    error: ErrorResponse | None = None


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    status_url: str


class ModelInfo(BaseModel):
    """What a worker publishes about the model it serves (read by the gateway to validate)."""

    name: str
    context_window: int
    tokenizer_json: str = Field(description="Serialized fast tokenizer (tokenizers JSON).")
