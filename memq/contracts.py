"""The one contract module shared by the gateway, the worker and the memory service.

It imports nothing heavy (no torch, transformers or Qdrant) so every service can use it.
Names follow their role: ``*Create`` (write input), ``*Public`` (what the API returns),
``*Request`` (an operation's input), ``*Response`` (an operation's output).
"""

from __future__ import annotations

import itertools
import json
import math
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    field_validator,
    model_validator,
)

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


# Numbers are never coerced from strings or booleans on the public API: `"8"` and `true`
# are type errors, not 8 and 1.
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
StrictBool = Annotated[bool, Strict()]

_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def has_visible_text(text: str) -> bool:
    """True when `text` has a character a reader would see (not only whitespace, controls,
    zero-width or combining characters)."""
    return any(unicodedata.category(ch) not in _INVISIBLE for ch in text)


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

MAX_MEMORY_TEXT_CHARS = 20_000
MAX_SOURCE_CHARS = 256
MAX_TTL_SECONDS = 10 * 365 * 86400
MAX_HISTORY_VERSIONS = 100
"""Earlier versions one memory keeps; an update past it is refused (never silently dropped)."""
MAX_VERSION = 1_000_000
MEMORY_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

# What a metadata object may hold. The store must be able to read back everything it
# accepts (Qdrant stores payloads nested ~126 levels deep, then fails to read, delete or
# replay them), so every dimension is bounded well inside what it handles.
METADATA_MAX_DEPTH = 8
"""Nested objects/arrays, the metadata object itself counting as 1 (filter keys have at most
8 dotted segments, so nothing deeper could be filtered on anyway)."""
METADATA_MAX_BYTES = 16 * 1024
"""Size of the metadata as compact UTF-8 JSON."""
METADATA_MAX_KEYS = 256
"""Keys at every level together."""
METADATA_MAX_KEY_CHARS = 128
METADATA_MAX_STRING_CHARS = 4096
METADATA_MAX_ITEMS = 256
"""Items of one array."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

RECENCY_HALF_LIFE_MIN_S = 1.0
RECENCY_HALF_LIFE_MAX_S = 100 * 365 * 86400.0
MAX_FILTER_DEPTH = 4
MAX_FILTER_CONDITIONS = 64


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


Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]


def check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` unchanged when every bound holds; else a ValueError naming the first
    offending place (e.g. `metadata.a.b[3]`) and the limit."""
    keys = 0
    stack: list[tuple[Any, int, str]] = [(metadata, 1, "metadata")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, dict | list) and depth > METADATA_MAX_DEPTH:
            raise ValueError(
                f"{where} nests deeper than {METADATA_MAX_DEPTH} levels of objects/arrays; "
                "flatten it"
            )
        if isinstance(node, dict):
            keys += len(node)
            if keys > METADATA_MAX_KEYS:
                raise ValueError(f"metadata has more than {METADATA_MAX_KEYS} keys in all")
            for key, child in node.items():
                if not isinstance(key, str) or not 1 <= len(key) <= METADATA_MAX_KEY_CHARS:
                    raise ValueError(
                        f"{where} has a key of {len(str(key))} characters; keys must have "
                        f"1 to {METADATA_MAX_KEY_CHARS}"
                    )
                stack.append((child, depth + 1, f"{where}.{key[:40]}"))
        elif isinstance(node, list):
            if len(node) > METADATA_MAX_ITEMS:
                raise ValueError(
                    f"{where} has {len(node)} items; arrays may hold {METADATA_MAX_ITEMS}"
                )
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str):
            if len(node) > METADATA_MAX_STRING_CHARS:
                raise ValueError(
                    f"{where} is {len(node):,} characters; strings may have "
                    f"{METADATA_MAX_STRING_CHARS:,}"
                )
        elif isinstance(node, bool) or node is None:
            pass
        elif isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                raise ValueError(f"{where} does not fit a 64-bit integer")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError(
                    f"{where} is {node}: numbers must be finite (no NaN, Infinity or values "
                    "beyond ±1.8e308)"
                )
        else:
            raise ValueError(f"{where} is a {type(node).__name__}, not a JSON value")
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(
            f"metadata is {size:,} bytes as JSON; the limit is {METADATA_MAX_BYTES:,}: keep "
            "large content in the memory's text"
        )
    return metadata


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(check_metadata),
    Field(
        description=f"Free JSON object, filterable in search: at most {METADATA_MAX_DEPTH} levels "
        f"deep, {METADATA_MAX_BYTES:,} bytes as JSON, {METADATA_MAX_KEYS} keys of 1-"
        f"{METADATA_MAX_KEY_CHARS} characters, strings of {METADATA_MAX_STRING_CHARS:,} "
        f"characters, arrays of {METADATA_MAX_ITEMS} items, finite 64-bit numbers."
    ),
]


def _has_visible_text(v: str) -> str:
    if not has_visible_text(v):
        raise ValueError("must contain visible characters (not only whitespace or zero-width)")
    return v


MemoryText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_MEMORY_TEXT_CHARS),
    AfterValidator(_has_visible_text),
]
Source = Annotated[str, Field(max_length=MAX_SOURCE_CHARS)]
TtlSeconds = Annotated[StrictInt, Field(gt=0, le=MAX_TTL_SECONDS)]
MemoryId = Annotated[
    str,
    Field(
        pattern=MEMORY_ID_PATTERN,
        description="Memory id: a UUID when the service made it (1-128 characters of letters, "
        "digits and `_ . : @ -` on import).",
    ),
]
ContentHash = Annotated[
    str,
    Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whitespace-normalized text."),
]


def _utc(value: datetime) -> datetime:
    # A naive datetime is read as UTC. Converting an instant at the very edge of the
    # calendar (0001-01-01 east of UTC, 9999-12-31 west of it) overflows: refuse it.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
        value.timestamp()
    except (OverflowError, ValueError, OSError) as exc:
        raise ValueError(
            "datetime must lie between 0001-01-01 and 9999-12-31 in UTC (naive = UTC)"
        ) from exc
    return value


def _not_a_number(value: Any) -> Any:
    # Lax pydantic reads a bare number as a Unix timestamp; the API takes ISO 8601 only.
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2024-05-01T12:00:00Z")
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_utc)]
"""A datetime that has a POSIX timestamp; naive values are read as UTC."""


class MetadataCondition(StrictModel):
    """One test on a metadata field: exactly one of `eq`, `any` or a range."""

    key: MetadataKey
    eq: Annotated[str, Field(max_length=1024)] | StrictBool | Int64 | None = Field(
        default=None, description="Field equals this value."
    )
    any: list[Annotated[str, Field(max_length=1024)]] | list[Int64] | None = Field(
        default=None, min_length=1, max_length=100, description="Field equals one of these."
    )
    gt: StrictFloat | None = Field(default=None, description="Field is greater than this.")
    gte: StrictFloat | None = Field(default=None, description="Field is at least this.")
    lt: StrictFloat | None = Field(default=None, description="Field is less than this.")
    lte: StrictFloat | None = Field(default=None, description="Field is at most this.")

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
    none of `none_of`. Filters nest, at most 4 levels and 64 conditions in all."""

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
    def _not_empty_and_bounded(self) -> MemoryFilter:
        if not (self.all_of or self.any_of or self.none_of):
            raise ValueError("a filter needs at least one of `all_of`, `any_of`, `none_of`")
        depth, conditions = self.shape()
        if depth > MAX_FILTER_DEPTH:
            raise ValueError(f"filters nest at most {MAX_FILTER_DEPTH} levels deep")
        if conditions > MAX_FILTER_CONDITIONS:
            raise ValueError(
                f"a filter holds at most {MAX_FILTER_CONDITIONS} conditions in all; "
                f"this one has {conditions}"
            )
        return self

    def shape(self) -> tuple[int, int]:
        """(levels of nesting, conditions in all)."""
        depth, conditions = 1, 0
        for child in (*self.all_of, *self.any_of, *self.none_of):
            if isinstance(child, MemoryFilter):
                child_depth, child_conditions = child.shape()
                depth = max(depth, child_depth + 1)
                conditions += child_conditions
            else:
                conditions += 1
        return depth, conditions


class MemoryCreate(StrictModel):
    namespace: Namespace
    text: MemoryText = Field(description="The memory's text.")
    kind: MemoryKind = Field(default=MemoryKind.fact, description="What sort of memory this is.")
    metadata: Metadata = Field(default_factory=dict)
    source: Source | None = Field(
        default=None, description="What produced it (a job id, a document id)."
    )
    ttl_seconds: TtlSeconds | None = Field(
        default=None, description="Expire after this many seconds."
    )


class MemoryBatchCreate(StrictModel):
    items: list[MemoryCreate] = Field(
        min_length=1, max_length=1000, description="Up to 1,000 memories, embedded as one batch."
    )


class MemoryUpdate(StrictModel):
    """Fields to change; omitted fields keep their value. The previous version goes to history
    (a memory keeps at most 100 earlier versions)."""

    text: MemoryText | None = Field(default=None, description="New text (re-embedded).")
    kind: MemoryKind | None = Field(default=None, description="New kind.")
    metadata: Metadata | None = Field(
        default=None, description="Replaces the whole metadata object."
    )
    source: Source | None = Field(default=None, description="New source; null clears.")
    ttl_seconds: TtlSeconds | None = Field(
        default=None, description="New expiry, counted from now."
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> MemoryUpdate:
        if not self.model_fields_set:
            raise ValueError(
                "an update needs at least one of `text`, `kind`, `metadata`, `source`, "
                "`ttl_seconds`"
            )
        return self


# What ingestion adds to every chunk's metadata, at its largest: the document's own
# metadata must leave room for it.
_CHUNK_METADATA_ROOM: dict[str, Any] = {
    "document_id": "x" * 128,
    "chunk_index": MAX_DOCUMENT_CHARS,
    "chunk_count": MAX_DOCUMENT_CHARS,
    "char_start": MAX_DOCUMENT_CHARS,
    "char_end": MAX_DOCUMENT_CHARS,
}


class DocumentIngest(StrictModel):
    namespace: Namespace
    text: Annotated[str, AfterValidator(_has_visible_text)] = Field(
        min_length=1, max_length=MAX_DOCUMENT_CHARS, description="The document."
    )
    document_id: str | None = Field(
        default=None,
        max_length=128,
        description="Stable id stored in every chunk's metadata; generated when omitted.",
    )
    metadata: Metadata = Field(
        default_factory=dict,
        description="Copied into every chunk's metadata, beside `document_id`, `chunk_index`, "
        "`chunk_count`, `char_start` and `char_end` (which must fit within the metadata limits "
        "too).",
    )
    source: Source | None = Field(
        default=None, description="Stored on every chunk; default the document id."
    )
    chunk_chars: StrictInt = Field(
        default=1000, ge=100, le=MAX_MEMORY_TEXT_CHARS, description="Longest chunk."
    )
    overlap_chars: StrictInt = Field(
        default=200,
        ge=0,
        le=5_000,
        description="Most characters consecutive chunks share; less than half of chunk_chars.",
    )
    ttl_seconds: TtlSeconds | None = Field(
        default=None, description="Chunks expire after this many seconds."
    )

    @model_validator(mode="after")
    def _overlap_and_metadata_fit(self) -> DocumentIngest:
        if 2 * self.overlap_chars >= self.chunk_chars:
            raise ValueError(
                f"overlap_chars ({self.overlap_chars}) must be less than half of chunk_chars "
                f"({self.chunk_chars}): at most {(self.chunk_chars - 1) // 2}"
            )
        try:
            check_metadata({**self.metadata, **_CHUNK_METADATA_ROOM})
        except ValueError as exc:
            raise ValueError(f"with the chunk fields ingestion adds, {exc}") from exc
        return self


class MemoryVersion(BaseModel):
    """One state of a memory; updates append the previous state to its history."""

    version: StrictInt = Field(
        ge=1, le=MAX_VERSION, description="1 for the first version, +1 per update."
    )
    text: MemoryText
    kind: MemoryKind
    metadata: Metadata = Field(default_factory=dict)
    source: Source | None = None
    content_hash: ContentHash
    updated_at: UtcDatetime = Field(description="When this version was written.")


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
    """A memory with its full history: one line of a namespace export, validated on import
    with the same bounds as a write."""

    id: MemoryId
    namespace: Namespace
    text: MemoryText
    metadata: Metadata = Field(default_factory=dict)
    source: Source | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    expires_at: UtcDatetime | None = None
    version: StrictInt = Field(default=1, ge=1, le=MAX_VERSION)
    content_hash: ContentHash
    history: list[MemoryVersion] = Field(
        default_factory=list,
        max_length=MAX_HISTORY_VERSIONS,
        description="Earlier versions, oldest first.",
    )

    @model_validator(mode="after")
    def _versions_increase(self) -> MemoryRecord:
        versions = [v.version for v in self.history] + [self.version]
        if any(later <= earlier for earlier, later in itertools.pairwise(versions)):
            raise ValueError(
                f"version numbers must increase from the oldest history entry to the current "
                f"version; got {versions}"
            )
        return self


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
    query: MemoryText = Field(description="Text to search for.")
    top_k: StrictInt = Field(default=5, ge=1, le=100, description="Maximum number of hits.")
    min_score: StrictFloat | None = Field(
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
    created_after: UtcDatetime | None = Field(
        default=None, description="Created at or after (naive = UTC)."
    )
    created_before: UtcDatetime | None = Field(
        default=None, description="Created before (naive = UTC)."
    )
    mmr_lambda: StrictFloat | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Diversify with MMR: 1 = pure relevance, 0 = pure diversity; omit to skip.",
    )
    recency_half_life_s: StrictFloat | None = Field(
        default=None,
        ge=RECENCY_HALF_LIFE_MIN_S,
        le=RECENCY_HALF_LIFE_MAX_S,
        description="Weight scores by age: a memory this many seconds old counts half "
        "(1 second to 100 years).",
    )


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
    version: int | None = Field(default=None, description="The memory's current version.")


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


class JobType(StrEnum):
    generate = "generate"
    summarize = "summarize"
    chat = "chat"
    consolidate = "consolidate"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Priority(StrEnum):
    """Separate queues that workers drain in this order: interactive work stays fast while
    bulk work waits."""

    high = "high"
    normal = "normal"
    low = "low"


SUMMARY_REPETITION_PENALTY = 1.0
"""Summarize's default repetition penalty: off. Hugging Face's penalty also hits every
token of the text being summarized, so the model stops copying names and numbers and
invents them (ROUGE-L 0.3 x lead-3 at 1.3; bench/results/summaries-quick.md)."""
SUMMARY_NO_REPEAT_NGRAM = 3
SUMMARY_NO_REPEAT_NGRAM_SCOPE = "output"
"""Summarize's default loop guard: no 3 tokens in a row twice in the summary, while
phrases of the text may be copied (scope `output`). Greedy decoding of small models loops
on a phrase without a guard; Hugging Face's rule (scope `all`) also forbids copying the
text's phrases and cost a quarter of ROUGE-L; with the output scope, n = 6 let loops
through (bench/results/summaries.md)."""
SUMMARY_PARAMS: dict[str, Any] = {
    "max_new_tokens": 96,
    "repetition_penalty": SUMMARY_REPETITION_PENALTY,
    "no_repeat_ngram_size": SUMMARY_NO_REPEAT_NGRAM,
    "no_repeat_ngram_scope": SUMMARY_NO_REPEAT_NGRAM_SCOPE,
}
"""A summarize job's parameters where its `params` leave them out."""

TEMPERATURE_FLOOR = 0.01
"""Below this a softmax over float32 logits under- or overflows: such temperatures are
refused (use 0 for greedy decoding)."""

JobMetadataKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
JobMetadataValue = Annotated[str, Field(max_length=1024)]


class GenerationParams(StrictModel):
    """Sampling parameters; `temperature=0` means greedy decoding."""

    max_new_tokens: StrictInt = Field(
        default=64, ge=1, le=MAX_NEW_TOKENS_LIMIT, description="Tokens to generate (1..1024)."
    )
    temperature: StrictFloat = Field(
        default=0.0,
        ge=0.0,
        le=5.0,
        description=f"0 = greedy; otherwise {TEMPERATURE_FLOOR}..5.",
    )
    top_p: StrictFloat = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: StrictInt = Field(default=0, ge=0, le=1000, description="0 = disabled.")
    repetition_penalty: StrictFloat = Field(
        default=1.0, ge=0.5, le=3.0, description="1 = off; > 1 discourages repeats."
    )
    no_repeat_ngram_size: StrictInt = Field(
        default=0,
        ge=0,
        le=10,
        description="0 = off; n > 0: no n tokens in a row occur twice in prompt + output "
        "(Hugging Face's no_repeat_ngram_size).",
    )
    no_repeat_ngram_scope: Literal["all", "output"] = Field(
        default="all",
        description="What `no_repeat_ngram_size` covers: `all` = prompt + output (Hugging "
        "Face's rule), `output` = the generated tokens only, so phrases of the prompt may be "
        "copied once but the output never repeats itself.",
    )
    seed: StrictInt | None = Field(
        default=None, ge=0, le=2**32 - 1, description="Seed of a sampled job (reproducible)."
    )
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=8, description="Stop sequences (not included in output)."
    )

    @field_validator("temperature")
    @classmethod
    def _temperature_floor(cls, v: float) -> float:
        if 0.0 < v < TEMPERATURE_FLOOR:
            raise ValueError(
                f"temperature must be 0 (greedy) or at least {TEMPERATURE_FLOOR}; got {v}"
            )
        return v

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face `generate` (stop sequences handled by memq)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        # The output-only scope has no Hugging Face switch: memq's engines apply it
        # (worker.engine.sampling.OutputNGramProcessor in the simple engine).
        if self.no_repeat_ngram_size and self.no_repeat_ngram_scope == "all":
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            kwargs["top_k"] = self.top_k if self.top_k > 0 else None
        return kwargs


class PinnedMemory(StrictModel):
    """A memory given with the job instead of searched for (what a replay uses)."""

    id: Annotated[str, Field(min_length=1, max_length=128)]
    text: Annotated[str, Field(min_length=1, max_length=MAX_MEMORY_TEXT_CHARS)]
    score: StrictFloat = Field(default=1.0, description="Rank: higher goes first.")
    version: StrictInt | None = Field(default=None, ge=1)
    similarity: StrictFloat | None = None


class MemoryOptions(StrictModel):
    namespace: Namespace | None = Field(
        default=None, description="Namespace to retrieve from; omit to skip retrieval."
    )
    namespaces: list[Namespace] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Several namespaces to retrieve from (merged best first); chat jobs "
        "default to the session's and the user's.",
    )
    pinned: list[PinnedMemory] | None = Field(
        default=None,
        max_length=50,
        description="Use exactly these memories instead of searching (a replay pins the "
        "memories its original job saw).",
    )
    top_k: StrictInt = Field(default=5, ge=0, le=50, description="Memories to retrieve (0 = none).")
    min_similarity: StrictFloat | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Memories whose cosine similarity to the query is below this are left "
        "out of the prompt (and reported as such); default MEMQ_MIN_SIMILARITY.",
    )

    @model_validator(mode="after")
    def _one_way_to_name_namespaces(self) -> MemoryOptions:
        if self.namespace is not None and self.namespaces is not None:
            raise ValueError("give `namespace` or `namespaces`, not both")
        return self

    def search_namespaces(self) -> list[str]:
        if self.namespaces is not None:
            return list(self.namespaces)
        return [self.namespace] if self.namespace is not None else []


JobMetadata = Annotated[
    dict[JobMetadataKey, JobMetadataValue],
    Field(
        max_length=32,
        description="Up to 32 string labels (keys: 1-64 chars of letters, digits, `_ . : -`; "
        "values: up to 1,024 chars), echoed back on the job.",
    ),
]


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the body is signed instead")
    return v


CallbackUrl = Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(_http_url)]

ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MAX_ADAPTER_VERSION = 1_000_000
AdapterName = Annotated[
    str,
    Field(
        pattern=ADAPTER_NAME_PATTERN,
        description="An adapter's name, unique per tenant (1-64 letters, digits and `_ . -`, "
        "starting with a letter or digit).",
        examples=["alice-facts"],
    ),
]


class AdapterRef(StrictModel):
    """Which adapter serves a job: a name and, optionally, a version (default the latest)."""

    name: AdapterName
    version: StrictInt | None = Field(
        default=None, ge=1, le=MAX_ADAPTER_VERSION, description="Default: the latest version."
    )


def _adapter_ref(v: Any) -> Any:
    return {"name": v} if isinstance(v, str) else v


AdapterChoice = Annotated[
    AdapterRef | None,
    BeforeValidator(_adapter_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": ADAPTER_NAME_PATTERN},
                AdapterRef.model_json_schema(),
                {"type": "null"},
            ],
            "description": "Serve the job with a LoRA adapter consolidated from memories "
            '(implicit memory): `"name"` (its latest version) or `{"name", "version"}`; '
            "null: the base model. An unknown adapter is a 404 `adapter_not_found`.",
        }
    ),
]


class TrainingOptions(StrictModel):
    """How a consolidation job trains its LoRA adapter (see docs/adapters.md)."""

    steps: StrictInt | None = Field(
        default=None, ge=1, le=5000, description="Optimizer steps; give `steps` or `epochs`."
    )
    epochs: StrictInt | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Passes over the training examples (default 5 when `steps` is not given).",
    )
    batch_size: StrictInt = Field(default=8, ge=1, le=64, description="Examples per step.")
    learning_rate: StrictFloat = Field(default=1e-3, gt=0.0, le=0.1, description="AdamW's.")
    rank: StrictInt = Field(default=16, ge=1, le=256, description="LoRA rank r.")
    alpha: StrictInt | None = Field(
        default=None, ge=1, le=4096, description="LoRA alpha; default 2 × rank."
    )
    dropout: StrictFloat = Field(default=0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: (
        list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")]] | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Module names LoRA adapts; default per architecture: GPT-2 `c_attn`, "
        "`c_proj`; Llama-style models `q_proj`, `k_proj`, `v_proj`, `o_proj`.",
    )
    max_tokens: StrictInt = Field(
        default=128,
        ge=16,
        le=1024,
        description="Longest training example in tokens: a longer memory is split into "
        "windows of this many tokens (never cut).",
    )
    qa_variants: StrictBool = Field(
        default=True,
        description="Besides each memory's text, train question/answer variants of `fact` "
        "memories (with the model's chat template when it has one).",
    )
    seed: StrictInt = Field(
        default=0, ge=0, le=2**32 - 1, description="Seeds LoRA's init and the example order."
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingOptions:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give `steps` or `epochs`, not both")
        return self


MAX_CONSOLIDATE_MEMORIES = 1000


class ConsolidateJobRequest(StrictModel):
    """Train a LoRA adapter on a namespace's memories (implicit memory); the result is a new
    version of the named adapter that generate, summarize and chat jobs can use."""

    type: Literal["consolidate"] = "consolidate"
    adapter: AdapterName = Field(
        description="The adapter to make: a new name starts at version 1, an existing one "
        "gets its next version."
    )
    namespace: Namespace = Field(description="Whose memories to consolidate.")
    memory_ids: list[MemoryId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CONSOLIDATE_MEMORIES,
        description="Only these memories of the namespace (an id not in it fails the job).",
    )
    kinds: list[MemoryKind] | None = Field(
        default=None, min_length=1, max_length=4, description="Only memories of these kinds."
    )
    where: MemoryFilter | None = Field(
        default=None, description="Only memories whose metadata matches this filter."
    )
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(
        default=Priority.normal,
        description="Recorded for listings: consolidation jobs wait in the training queue.",
    )
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )


def _visible(v: str, field: str) -> str:
    if not has_visible_text(v):
        raise ValueError(
            f"{field} must contain visible characters (not only whitespace, control or "
            "zero-width characters)"
        )
    return v


SESSION_ID_PATTERN = r"^[A-Za-z0-9_.@\-]{1,100}$"
SessionId = Annotated[
    str,
    Field(
        pattern=SESSION_ID_PATTERN,
        description="A conversation's id (1-100 letters, digits, `_ . @ -`); its turns live in "
        "the namespace `session:{id}`.",
        examples=["chat-2024-alice"],
    ),
]
UserId = Annotated[
    str,
    Field(
        pattern=SESSION_ID_PATTERN,
        description="The end user's id; long-term memories live in `user:{id}`.",
        examples=["alice"],
    ),
]


def session_namespace(session_id: str) -> str:
    return f"session:{session_id}"


def user_namespace(user_id: str) -> str:
    return f"user:{user_id}"


class ChatRole(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"


class ChatMessage(StrictModel):
    role: ChatRole
    content: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)

    @field_validator("content")
    @classmethod
    def _content_visible(cls, v: str) -> str:
        return _visible(v, "content")


CHAT_MAX_NEW_TOKENS = 256


class ChatJobRequest(StrictModel):
    """One turn of a conversation: the new message(s), with the session's recent turns, its
    rolling summary and long-term memories put in front of the model by memq."""

    type: Literal["chat"] = "chat"
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=256,
        description="The conversation so far as the client has it, ending with a user "
        "message. With a `session_id`, sending only the new user message is enough: memq "
        "adds the session's earlier turns.",
    )
    session_id: SessionId | None = None
    user_id: UserId | None = None
    write_back: bool = Field(
        default=True,
        description="With a session: store the user's message and the reply as `message` "
        "memories of the session once the job succeeds (exactly once).",
    )
    remember_facts: bool = Field(
        default=False,
        description="With a `user_id`: keep the first-person statements of the user's message "
        '("I live in …", "My sister is …") as `fact` memories of `user:{id}`, so new '
        "sessions of the user find them (a documented heuristic, no model call).",
    )
    params: GenerationParams = Field(
        default_factory=lambda: GenerationParams(max_new_tokens=CHAT_MAX_NEW_TOKENS)
    )
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    adapter: AdapterChoice = None
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(default=Priority.normal, description="Which queue it waits in.")
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )

    @model_validator(mode="after")
    def _ends_with_the_user(self) -> ChatJobRequest:
        if self.messages[-1].role != ChatRole.user:
            raise ValueError("the last message must be the user's (role `user`)")
        if self.session_id and self.write_back and len(self.prompt) > MAX_MEMORY_TEXT_CHARS:
            raise ValueError(
                f"the last user message is {len(self.prompt):,} characters; a session stores "
                f"at most {MAX_MEMORY_TEXT_CHARS:,} per turn: shorten it or set write_back to false"
            )
        return self

    @property
    def prompt(self) -> str:
        """The newest user message: the retrieval query and the text never cut."""
        return self.messages[-1].content

    def memory_namespaces(self) -> list[str]:
        """Where long-term memories are searched: as given, else the session's and the
        user's namespaces."""
        given = self.memory.search_namespaces()
        if given or self.memory.pinned is not None:
            return given
        found = [session_namespace(self.session_id)] if self.session_id else []
        return found + ([user_namespace(self.user_id)] if self.user_id else [])


class SessionSummaryTarget(StrictModel):
    session_id: SessionId
    through_turn: StrictInt = Field(ge=1, le=10**9)


class GenerateJobRequest(StrictModel):
    type: Literal["generate"] = "generate"
    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="The text to continue."
    )
    params: GenerationParams = Field(default_factory=GenerationParams)
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    adapter: AdapterChoice = None
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(default=Priority.normal, description="Which queue it waits in.")
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_visible(cls, v: str) -> str:
        return _visible(v, "prompt")


class SummarizeJobRequest(StrictModel):
    type: Literal["summarize"] = "summarize"
    text: str = Field(
        min_length=1,
        max_length=MAX_SUMMARIZE_CHARS,
        description="Text to summarize; longer than the context is map-reduced over chunks.",
    )
    params: GenerationParams = Field(
        default_factory=lambda: GenerationParams(**SUMMARY_PARAMS),
        description="Sampling parameters; those left out take summarize's defaults "
        f"({', '.join(f'{k}={v}' for k, v in SUMMARY_PARAMS.items())}).",
    )
    sentences: StrictInt = Field(
        default=3, ge=1, le=20, description="Instruct models: how many sentences to write."
    )
    session_summary: SessionSummaryTarget | None = Field(
        default=None,
        description="Make the summary the session's rolling summary, covering its turns up "
        "to `through_turn` (memq schedules these itself as a session grows).",
    )
    memory: MemoryOptions = Field(default_factory=lambda: MemoryOptions(top_k=0))
    adapter: AdapterChoice = None
    metadata: JobMetadata = Field(default_factory=dict)
    priority: Priority = Field(default=Priority.normal, description="Which queue it waits in.")
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="POSTed the finished job (signed, see the README) when it ends.",
    )

    @field_validator("text")
    @classmethod
    def _text_visible(cls, v: str) -> str:
        return _visible(v, "text")

    @field_validator("params", mode="before")
    @classmethod
    def _summary_defaults(cls, v: Any) -> Any:
        # `{"max_new_tokens": 200}` must not switch the loop guards off.
        if isinstance(v, GenerationParams):
            unset = {k: d for k, d in SUMMARY_PARAMS.items() if k not in v.model_fields_set}
            return v.model_copy(update=unset) if unset else v
        if isinstance(v, dict):
            return {**SUMMARY_PARAMS, **v}
        return v


JobRequest = Annotated[
    GenerateJobRequest | SummarizeJobRequest | ChatJobRequest | ConsolidateJobRequest,
    Field(discriminator="type"),
]
GenerationJobRequest = GenerateJobRequest | SummarizeJobRequest | ChatJobRequest
"""The job types that run the model (and may name an adapter)."""


class LeftOut(StrEnum):
    below_similarity_floor = "below_similarity_floor"
    did_not_fit = "did_not_fit"


class RetrievedMemory(BaseModel):
    id: str
    score: float = Field(description="Rank score of the search (fusion score in hybrid mode).")
    text: str
    namespace: str | None = None
    version: int | None = Field(default=None, description="The version the job saw.")
    similarity: float | None = Field(default=None, description="Cosine similarity to the query.")
    used: bool = Field(description="Whether it was put in the prompt.")
    left_out: LeftOut | None = Field(
        default=None, description="Why it was not used: below the similarity floor, or no room."
    )


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
    engine_first_token_s: float | None = Field(
        default=None,
        description="From the first model call's submission to the engine until its first "
        "token (engine queueing and prefill); None when no token was generated.",
    )
    total_s: float | None = None


class AdapterServed(BaseModel):
    """The adapter version that served a job."""

    name: str
    version: int
    stale: bool = Field(
        default=False, description="Its memories were forgotten since it was trained."
    )


class TrainedMemory(BaseModel):
    id: str
    version: int = Field(description="The version of the memory the adapter was trained on.")


class AdapterVersionPublic(BaseModel):
    """One trained version of an adapter: what it learned from, how, and whether its
    memories were forgotten since."""

    version: int
    created_at: datetime
    job_id: str = Field(description="The consolidation job that trained it.")
    base_model: str = Field(description="The model it adapts; only that model can serve it.")
    namespace: str
    memories: list[TrainedMemory] = Field(description="The memories (and versions) it learned.")
    training: TrainingOptions = Field(
        description="The options applied (steps, alpha and target modules resolved)."
    )
    examples: int = Field(description="Training examples built from the memories.")
    tokens: int = Field(description="Tokens in those examples.")
    steps: int
    loss: list[float] = Field(description="Training loss at each step.")
    train_s: float = Field(description="Seconds spent training (not loading or saving).")
    size_bytes: int = Field(description="Size of the stored adapter weights.")
    stale: bool = Field(default=False, description="Its namespace was forgotten since.")
    stale_at: datetime | None = None
    stale_reason: str | None = None


class AdapterPublic(BaseModel):
    name: str
    latest: int = Field(description="The version a job naming only the adapter gets.")
    stale: bool = Field(description="Whether the latest version is stale.")
    versions: list[AdapterVersionPublic] = Field(description="Newest first.")


class AdapterListResponse(BaseModel):
    items: list[AdapterPublic] = Field(description="The tenant's adapters, by name.")


class AdapterDeleted(BaseModel):
    name: str
    deleted_versions: list[int]


class JobResult(BaseModel):
    text: str
    model: str = Field(description="The model that produced the text.")
    finish_reason: str = Field(
        description="`length`, `stop` (stop sequence), `eos`, `cancelled` (partial text), or "
        "`trained` (a consolidate job)."
    )
    memories: list[RetrievedMemory] = Field(default_factory=list)
    usage: TokenUsage
    timings: JobTimings
    prompt: str = Field(description="The exact assembled model input (memories + user text).")
    prompt_token_ids: list[int] = Field(
        default_factory=list, description="The model input as token ids (the final call's)."
    )
    params: GenerationParams | None = Field(
        default=None,
        description="The sampling parameters applied, with the seed drawn for a sampled job "
        "that gave none: a replay with them reproduces the output.",
    )
    chunks: int = Field(default=1, description="Summarize: number of map chunks.")
    adapter: AdapterServed | None = Field(
        default=None, description="The adapter that served the job; null: the base model."
    )
    consolidation: AdapterVersionPublic | None = Field(
        default=None, description="Consolidate jobs: the adapter version trained."
    )


class WebhookAttempt(BaseModel):
    at: datetime
    status_code: int | None = Field(default=None, description="The receiver's answer, if any.")
    error: str | None = None


class WebhookDelivery(BaseModel):
    url: str
    delivered_at: datetime | None = None
    attempts: list[WebhookAttempt] = Field(default_factory=list)
    gave_up: bool = False


class JobProgress(BaseModel):
    tokens: int = 0
    text: str = ""
    step: int | None = Field(default=None, description="Consolidate jobs: steps done.")
    total_steps: int | None = Field(default=None, description="Consolidate jobs: steps in all.")
    loss: float | None = Field(default=None, description="Consolidate jobs: the latest loss.")


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
    request: JobRequest
    attempts: int = Field(
        default=0, description="How many times a worker started it (> 1: a worker was lost)."
    )
    worker: str | None = Field(default=None, description="The worker that ran it last.")
    replay_of: str | None = Field(default=None, description="The job this one replays.")
    progress: JobProgress | None = None
    result: JobResult | None = None
    error: ErrorResponse | None = None
    webhook: WebhookDelivery | None = None


class JobSummary(BaseModel):
    """A job in a listing (without its request text or result)."""

    id: str
    type: JobType
    status: JobStatus
    priority: Priority = Priority.normal
    created_at: datetime
    timestamps: dict[JobStatus, datetime] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    replay_of: str | None = None
    error: str | None = Field(default=None, description="Error code of a failed job.")


class JobListResponse(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class NamespaceForgotten(ForgetResponse):
    """The gateway's answer to forgetting a namespace: the memories deleted, and the
    tenant's queued jobs that would have read it, cancelled."""

    cancelled_jobs: int = Field(default=0, description="Queued jobs cancelled.")
    stale_adapters: int = Field(
        default=0, description="Adapter versions trained on it, now marked stale."
    )


class SessionTurn(BaseModel):
    turn: int
    role: ChatRole
    content: str
    memory_id: str
    created_at: datetime


class SessionSummary(BaseModel):
    text: str
    version: int = Field(description="Each time the summary grows it gets a new version.")
    through_turn: int = Field(description="The turns it covers: 1 through this one.")


class SessionPublic(BaseModel):
    session_id: str
    turns: list[SessionTurn] = Field(description="Every stored turn, oldest first.")
    summary: SessionSummary | None = None


class SessionForgotten(BaseModel):
    session_id: str
    deleted_memories: int
    cancelled_jobs: int = Field(description="Its queued or running chat jobs, cancelled.")


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
    chat_template: bool = Field(
        default=False, description="Whether prompts use the model's chat template."
    )


# --------------------------------------------------------------------------------------
# Files and batches (the OpenAI Batch API: field names and shapes as the `openai` client
# parses them; times are Unix seconds there, as in OpenAI's API)
# --------------------------------------------------------------------------------------

BATCH_ID_KEY = "batch_id"
"""Job metadata of a batch line's job: the batch it belongs to."""
CUSTOM_ID_KEY = "custom_id"
"""Job metadata of a batch line's job: the line's `custom_id`."""
MAX_CUSTOM_ID_CHARS = 512
MAX_COMPLETION_WINDOW_S = 7 * 86400


class FilePurpose(StrEnum):
    batch = "batch"
    batch_output = "batch_output"


class FilePublic(BaseModel):
    """OpenAI's File object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int = Field(description="Size; of a batch's output file, the lines written so far.")
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[FilePublic]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class BatchEndpoint(StrEnum):
    """What every line of a batch is sent to."""

    completions = "/v1/completions"
    chat_completions = "/v1/chat/completions"
    jobs = "/v1/jobs"


class BatchStatus(StrEnum):
    validating = "validating"
    failed = "failed"
    in_progress = "in_progress"
    finalizing = "finalizing"
    completed = "completed"
    expired = "expired"
    cancelling = "cancelling"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (
            BatchStatus.failed,
            BatchStatus.completed,
            BatchStatus.expired,
            BatchStatus.cancelled,
        )


def completion_window_seconds(window: str) -> int:
    """`24h`, `90m`, `30s` → seconds; ValueError for anything else or out of bounds."""
    unit = {"s": 1, "m": 60, "h": 3600}.get(window[-1:])
    if unit is None or not window[:-1].isdigit() or len(window) > 10:
        raise ValueError(
            f"completion_window {window[:20]!r} is not a duration: write `24h` (OpenAI's value) "
            "or a number of hours, minutes or seconds such as `2h`, `90m`, `30s`"
        )
    seconds = int(window[:-1]) * unit
    if not 1 <= seconds <= MAX_COMPLETION_WINDOW_S:
        raise ValueError(
            f"completion_window {window!r} is {seconds:,} s; it must be 1 s to 7 days "
            f"({MAX_COMPLETION_WINDOW_S:,} s)"
        )
    return seconds


def _valid_window(v: str) -> str:
    completion_window_seconds(v)
    return v


BatchMetadata = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(
        max_length=16,
        description="Up to 16 labels (keys up to 64 characters, values up to 512), as OpenAI.",
    ),
]


class BatchCreate(StrictModel):
    input_file_id: str = Field(
        min_length=1, max_length=64, description="A file uploaded with purpose `batch`."
    )
    endpoint: BatchEndpoint = Field(description="Where every line of the file is sent.")
    completion_window: Annotated[str, AfterValidator(_valid_window)] = Field(
        default="24h",
        max_length=10,
        description="Lines not finished this long after the batch was created are expired: "
        "`24h` (OpenAI's only value) or any `<n>h`, `<n>m`, `<n>s` up to 7 days.",
    )
    metadata: BatchMetadata | None = None


class BatchRequestCounts(BaseModel):
    total: int = Field(description="Lines in the input file (refused ones included).")
    completed: int = Field(description="Lines in the output file.")
    failed: int = Field(
        description="Lines in the error file (refused, failed, cancelled, expired)."
    )


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = Field(default=None, description="1-based line of the input file.")


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchInputTokensDetails(BaseModel):
    cached_tokens: int = 0


class BatchOutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: BatchInputTokensDetails = Field(default_factory=BatchInputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: BatchOutputTokensDetails = Field(
        default_factory=BatchOutputTokensDetails
    )
    total_tokens: int = 0


class BatchPublic(BaseModel):
    """OpenAI's Batch object."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: BatchEndpoint
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = Field(
        default=None, description="Readable while the batch runs: the lines finished so far."
    )
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: BatchUsage | None = None


class BatchListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchPublic]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
