"""Memories: what the memory service stores and how it is written, searched, listed,
exported, imported and forgotten (the gateway proxies the same API; docs/memory.md).

The store must be able to read back everything it accepts, so every write is validated
with one rule set shared by every model that carries the data (`Metadata`, `MemoryText`,
`UtcDatetime`, ...).
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    model_validator,
)

from memq.contracts.common import (
    Namespace,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictModel,
    has_visible_text,
)

METADATA_KEY_PATTERN = r"^[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,7}$"
MAX_DOCUMENT_CHARS = 2_000_000

MAX_MEMORY_TEXT_CHARS = 20_000
MAX_SOURCE_CHARS = 256
MAX_TTL_SECONDS = 10 * 365 * 86400
MAX_HISTORY_VERSIONS = 100
"""Earlier versions one memory keeps; an update past it is refused (never silently dropped)."""
MAX_VERSION = 1_000_000
MAX_SUPERSEDES = 16
"""Memories one write may name in `supersedes`."""
MAX_SUPERSEDES_KEPT = 1000
"""Links a memory keeps to what it replaced (a correction chain read back on import)."""
MAX_REASON_CHARS = 512
AS_OF_CLOCK_SKEW = timedelta(minutes=5)
"""How far past the service's clock `as_of` may be (clients' clocks differ a little)."""
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
    valid_from: UtcDatetime | None = Field(
        default=None,
        description="When the fact became true (naive = UTC); default: when it is written.",
    )
    supersedes: list[MemoryId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SUPERSEDES,
        description="Ids of current memories of the same namespace that this one replaces: "
        "they stop being current (`valid_to`, `superseded_by`) but stay readable, searchable "
        "with `include_superseded` or `as_of`, and restorable.",
    )
    auto_supersede: StrictBool = Field(
        default=True,
        description="A fact that contradicts a current fact of its namespace (same subject and "
        "attribute, a new value: a move, a rename, a new password) supersedes it "
        "automatically, with the reason recorded; false stores it beside the old one.",
    )

    @model_validator(mode="after")
    def _supersedes_once(self) -> MemoryCreate:
        if self.supersedes is not None and len(set(self.supersedes)) != len(self.supersedes):
            raise ValueError("`supersedes` names a memory twice")
        return self


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


class SupersessionMethod(StrEnum):
    explicit = "explicit"
    automatic = "automatic"


class Supersession(BaseModel):
    """Why a memory stopped being current."""

    by: MemoryId = Field(description="The memory that replaced it.")
    method: SupersessionMethod = Field(
        description="`explicit` (the write named it in `supersedes`) or `automatic` (memq "
        "judged that the new fact contradicts it)."
    )
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS)] = Field(
        description="What the decision rests on, e.g. `same subject (tomasz), changed "
        "('moved'): Gdansk -> Krakow`."
    )
    at: UtcDatetime = Field(description="When it was superseded.")


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
    valid_from: datetime | None = Field(
        default=None, description="When the fact became true (default: when it was written)."
    )
    valid_to: datetime | None = Field(
        default=None, description="When it stopped being true; null while it is current."
    )
    supersedes: list[str] = Field(
        default_factory=list, description="Memories this one replaced (they are no longer current)."
    )
    superseded_by: str | None = Field(
        default=None, description="The memory that replaced this one; null while it is current."
    )
    supersession: Supersession | None = Field(
        default=None, description="How and why it was superseded; null while it is current."
    )

    @property
    def current(self) -> bool:
        return self.superseded_by is None


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
    valid_from: UtcDatetime | None = None
    valid_to: UtcDatetime | None = None
    supersedes: list[MemoryId] = Field(default_factory=list, max_length=MAX_SUPERSEDES_KEPT)
    superseded_by: MemoryId | None = None

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
        description="`dense` (embeddings), `keyword` (BM25) or `hybrid` (the cosine plus a "
        "bounded keyword bonus: never far from dense, and exact codes and names count).",
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
    as_of: UtcDatetime | None = Field(
        default=None,
        description="Search what was current at this time (naive = UTC; not in the future): "
        "memories valid then, including ones superseded since.",
    )
    include_superseded: StrictBool = Field(
        default=False,
        description="Also return memories that are no longer current (each hit says "
        "`superseded_by`); by default only current memories are searched.",
    )

    @model_validator(mode="after")
    def _as_of_not_in_future(self) -> MemorySearchRequest:
        if self.as_of is not None and self.as_of > datetime.now(UTC) + AS_OF_CLOCK_SKEW:
            raise ValueError(
                "as_of is in the future; give a past time (or omit it to search what is "
                "current now)"
            )
        if self.as_of is not None and self.include_superseded:
            raise ValueError("give `as_of` or `include_superseded`, not both")
        return self


class MemoryHit(BaseModel):
    id: str
    score: float = Field(
        description="Ranking score of the chosen mode (cosine, BM25, or cosine + keyword bonus)."
    )
    text: str
    namespace: str
    kind: MemoryKind = MemoryKind.fact
    metadata: dict[str, Any] = Field(default_factory=dict)
    similarity: float | None = Field(
        default=None, description="Cosine similarity between the query and the memory."
    )
    created_at: datetime | None = None
    version: int | None = Field(default=None, description="The memory's current version.")
    valid_from: datetime | None = Field(default=None, description="When the fact became true.")
    valid_to: datetime | None = Field(
        default=None, description="When it stopped being true; null while current."
    )
    superseded_by: str | None = Field(
        default=None, description="Set when the memory is no longer current (see `as_of`)."
    )


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


class NamespaceForgotten(ForgetResponse):
    """The gateway's answer to forgetting a namespace: the memories deleted, and the
    tenant's queued jobs that would have read it, cancelled."""

    cancelled_jobs: int = Field(default=0, description="Queued jobs cancelled.")
    stale_adapters: int = Field(
        default=0, description="Adapter versions trained on it, now marked stale."
    )
