"""The one contract module shared by the gateway, the worker and the memory service.

It imports nothing heavy (no torch, transformers or Qdrant) so every service can use it.
Names follow their role: ``*Create`` (write input), ``*Public`` (what the API returns),
``*Request`` (an operation's input), ``*Response`` (an operation's output).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_NEW_TOKENS_LIMIT = 1024
MAX_PROMPT_CHARS = 200_000
MAX_SUMMARIZE_CHARS = 1_000_000
NAMESPACE_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"
METADATA_KEY_PATTERN = r"^[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,7}$"
MAX_DOCUMENT_CHARS = 2_000_000

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


class SearchMode(StrEnum):
    dense = "dense"
    keyword = "keyword"
    hybrid = "hybrid"


MetadataKey = Annotated[
    str,
    Field(
        pattern=METADATA_KEY_PATTERN,
        description="Path inside `metadata`, dots for nesting (e.g. `lang`, `doc.page`).",
        examples=["lang"],
    ),
]


Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _non_blank(v: str, field: str) -> str:
    if not v.strip():
        raise ValueError(f"{field} must contain non-whitespace characters")
    return v


class MetadataCondition(StrictModel):
    """One test on a metadata field: exactly one of `eq`, `any` or a range."""

    key: MetadataKey
    eq: Annotated[str, Field(max_length=1024)] | bool | Int64 | None = Field(
        default=None, description="Field equals this value."
    )
    any: list[Annotated[str, Field(max_length=1024)]] | list[Int64] | None = Field(
        default=None, min_length=1, max_length=100, description="Field equals one of these."
    )
    gt: FiniteFloat | None = Field(default=None, description="Field is greater than this.")
    gte: FiniteFloat | None = Field(default=None, description="Field is at least this.")
    lt: FiniteFloat | None = Field(default=None, description="Field is less than this.")
    lte: FiniteFloat | None = Field(default=None, description="Field is at most this.")

    @model_validator(mode="after")
    def _exactly_one_test(self) -> MetadataCondition:
        has_range = any(v is not None for v in (self.gt, self.gte, self.lt, self.lte))
        chosen = sum([self.eq is not None, self.any is not None, has_range])
        if chosen != 1:
            raise ValueError(
                f"condition on {self.key!r} needs exactly one of `eq`, `any` or a range "
                "(`gt`/`gte`/`lt`/`lte`)"
            )
        return self


class MemoryFilter(StrictModel):
    """Boolean combination of metadata conditions: all of `all_of`, at least one of `any_of`,
    none of `none_of`. Filters nest."""

    all_of: list[MetadataCondition | MemoryFilter] = Field(
        default_factory=list, max_length=32, description="Every one of these holds (AND)."
    )
    any_of: list[MetadataCondition | MemoryFilter] = Field(
        default_factory=list, max_length=32, description="At least one of these holds (OR)."
    )
    none_of: list[MetadataCondition | MemoryFilter] = Field(
        default_factory=list, max_length=32, description="None of these holds (NOT)."
    )

    @model_validator(mode="after")
    def _not_empty(self) -> MemoryFilter:
        if not (self.all_of or self.any_of or self.none_of):
            raise ValueError("a filter needs at least one of `all_of`, `any_of`, `none_of`")
        return self


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
        return _non_blank(v, "text")


class MemoryBatchCreate(StrictModel):
    items: list[MemoryCreate] = Field(
        min_length=1, max_length=1000, description="Up to 1,000 memories, embedded as one batch."
    )


class MemoryUpdate(StrictModel):
    """Fields to change; omitted fields keep their value. The previous version goes to history."""

    text: str | None = Field(
        default=None, min_length=1, max_length=20_000, description="New text (re-embedded)."
    )
    kind: MemoryKind | None = Field(default=None, description="New kind.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="Replaces the whole metadata object."
    )
    source: str | None = Field(default=None, max_length=256, description="New source; null clears.")
    ttl_seconds: int | None = Field(
        default=None, gt=0, le=10 * 365 * 86400, description="New expiry, counted from now."
    )

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str | None) -> str | None:
        return None if v is None else _non_blank(v, "text")

    @model_validator(mode="after")
    def _something_to_change(self) -> MemoryUpdate:
        if not self.model_fields_set:
            raise ValueError(
                "an update needs at least one of `text`, `kind`, `metadata`, `source`, "
                "`ttl_seconds`"
            )
        return self


class DocumentIngest(StrictModel):
    namespace: Namespace
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS, description="The document.")
    document_id: str | None = Field(
        default=None,
        max_length=128,
        description="Stable id stored in every chunk's metadata; generated when omitted.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Copied into every chunk's metadata."
    )
    source: str | None = Field(
        default=None, max_length=256, description="Stored on every chunk; default the document id."
    )
    chunk_chars: int = Field(default=1000, ge=100, le=20_000, description="Target chunk length.")
    overlap_chars: int = Field(
        default=200, ge=0, le=5_000, description="Characters shared by consecutive chunks."
    )
    ttl_seconds: int | None = Field(
        default=None,
        gt=0,
        le=10 * 365 * 86400,
        description="Chunks expire after this many seconds.",
    )

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        return _non_blank(v, "text")

    @model_validator(mode="after")
    def _overlap_smaller_than_chunk(self) -> DocumentIngest:
        if self.overlap_chars >= self.chunk_chars:
            raise ValueError(
                f"overlap_chars ({self.overlap_chars}) must be smaller than chunk_chars "
                f"({self.chunk_chars})"
            )
        return self


class MemoryVersion(BaseModel):
    """One state of a memory; updates append the previous state to its history."""

    version: int = Field(description="1 for the first version, +1 per update.")
    text: str
    kind: MemoryKind
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    content_hash: str = Field(description="SHA-256 of the whitespace-normalized text.")
    updated_at: datetime = Field(description="When this version was written.")


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


class MemoryRecord(MemoryPublic):
    """A memory with its full history: one line of a namespace export."""

    history: list[MemoryVersion] = Field(
        default_factory=list, description="Earlier versions, oldest first."
    )


class MemoryHistoryResponse(BaseModel):
    id: str
    versions: list[MemoryVersion] = Field(description="Every version, oldest first, current last.")


class MemoryBatchResponse(BaseModel):
    items: list[MemoryPublic]


class DocumentIngestResponse(BaseModel):
    document_id: str = Field(description="Given or generated; in every chunk's metadata.")
    chunks: list[MemoryPublic] = Field(description="In document order.")


class MemoryListResponse(BaseModel):
    items: list[MemoryPublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class MemorySearchRequest(StrictModel):
    namespace: Namespace
    query: str = Field(min_length=1, max_length=20_000, description="Text to search for.")
    top_k: int = Field(default=5, ge=1, le=100, description="Maximum number of hits.")
    min_score: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Drop hits whose cosine similarity to the query is below this (every mode).",
    )
    kinds: list[MemoryKind] | None = Field(default=None, description="Only these kinds.")
    mode: SearchMode = Field(
        default=SearchMode.hybrid,
        description="`dense` (embeddings), `keyword` (BM25) or `hybrid` (both, fused with RRF).",
    )
    filter: MemoryFilter | None = Field(default=None, description="Metadata conditions.")
    created_after: datetime | None = Field(default=None, description="Created at or after.")
    created_before: datetime | None = Field(default=None, description="Created before.")
    mmr_lambda: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Diversify with MMR: 1 = pure relevance, 0 = pure diversity; omit to skip.",
    )
    recency_half_life_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Weight scores by age: a memory this many seconds old counts half.",
    )

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        return _non_blank(v, "query")


class MemoryHit(BaseModel):
    id: str
    score: float = Field(description="Ranking score of the chosen mode (cosine, BM25 or RRF).")
    text: str
    namespace: str
    kind: MemoryKind = MemoryKind.fact
    metadata: dict[str, Any] = Field(default_factory=dict)
    similarity: float | None = Field(
        default=None, description="Cosine similarity between the query and the memory."
    )
    created_at: datetime | None = None


class MemorySearchResponse(BaseModel):
    hits: list[MemoryHit]


class ForgetResponse(BaseModel):
    namespace: str
    deleted: int


class DeleteResponse(BaseModel):
    id: str
    deleted: bool = True


class ImportResponse(BaseModel):
    namespace: str
    imported: int = Field(description="Memories restored from the file.")


# --------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------


RUN_JOB_TASK = "memq.run_job"
"""Celery task name; the gateway dispatches by name so it never imports worker code."""


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
    template_tokens: dict[JobType, int] = Field(
        default_factory=dict,
        description="Tokens each job type's prompt template adds around the user's text.",
    )
