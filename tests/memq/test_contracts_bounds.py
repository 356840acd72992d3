"""Every numeric bound of the public contracts, pinned at its edge: the limit itself is
accepted, one past it is refused, with the message checked.

The numbers are written out here from reading memq/contracts/, never read from the
models at test time: a test that took the bound from the model could not notice that
the bound changed. One table per model; `Edge.path` is the payload field the value goes
in (a whole value: a string of n characters, a list of n items).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from memq.contracts import (
    MAX_CUSTOM_ID_CHARS,
    AdapterRef,
    BatchCreate,
    BatchInputTokensDetails,
    BatchOutputTokensDetails,
    BatchUsage,
    ChatJobRequest,
    ChatMessage,
    ConsolidateJobRequest,
    DocumentIngest,
    GenerateJobRequest,
    GenerationParams,
    JobProgress,
    JobPublic,
    JobResult,
    JobTimings,
    MemoryBatchCreate,
    MemoryCreate,
    MemoryFilter,
    MemoryOptions,
    MemoryPublic,
    MemoryRecord,
    MemorySearchRequest,
    MemoryUpdate,
    MemoryVersion,
    MetadataCondition,
    NamespaceForgotten,
    PinnedMemory,
    SessionSummaryTarget,
    SummarizeJobRequest,
    TokenUsage,
    TrainingOptions,
    completion_window_seconds,
)


@dataclass(frozen=True)
class Edge:
    path: str
    accepted: Any
    refused: Any
    message: str
    loc: str = ""
    """Where the error is reported, when not at `path` (a list item, a union member)."""


def _errors(model: type[BaseModel], data: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
    return []


def _check(model: type[BaseModel], base: dict[str, Any], edge: Edge) -> None:
    assert _errors(model, {**base, edge.path: edge.accepted}) == []
    errors = _errors(model, {**base, edge.path: edge.refused})
    assert (edge.loc or edge.path, edge.message) in errors
    assert all(loc.startswith(edge.path) for loc, _ in errors), errors


def _id(edge: Edge) -> str:
    return f"{edge.path}:{edge.message[:40]}"


def _s(n: int) -> str:
    return "x" * n


def _at_least(n: int | float) -> str:
    return f"Input should be greater than or equal to {n}"


def _at_most(n: int | float) -> str:
    return f"Input should be less than or equal to {n}"


def _chars_at_most(n: int) -> str:
    return f"String should have at most {n} characters"


def _items_at_most(n: int) -> str:
    return f"List should have at most {n} items after validation, not {n + 1}"


ONE_CHAR = "String should have at least 1 character"
NO_ITEMS = "List should have at least 1 item after validation, not 0"
INT64_MAX = 9_223_372_036_854_775_807
UINT32_MAX = 4_294_967_295

# ---------------------------------------------------------------------------- job requests

GENERATION_PARAMS = [
    Edge("max_new_tokens", 1, 0, _at_least(1)),
    Edge("max_new_tokens", 1024, 1025, _at_most(1024)),
    Edge("temperature", 0.0, -1e-9, _at_least(0)),
    Edge("temperature", 5.0, 5.000001, _at_most(5)),
    Edge(
        "temperature",
        0.01,
        0.0099,
        "Value error, temperature must be 0 (greedy) or at least 0.01; got 0.0099",
    ),
    Edge("top_p", 1e-9, 0.0, "Input should be greater than 0"),
    Edge("top_p", 1.0, 1.000001, _at_most(1)),
    Edge("top_k", 0, -1, _at_least(0)),
    Edge("top_k", 1000, 1001, _at_most(1000)),
    Edge("repetition_penalty", 0.5, 0.4999999, _at_least(0.5)),
    Edge("repetition_penalty", 3.0, 3.000001, _at_most(3)),
    Edge("no_repeat_ngram_size", 0, -1, _at_least(0)),
    Edge("no_repeat_ngram_size", 10, 11, _at_most(10)),
    Edge("seed", 0, -1, _at_least(0)),
    Edge("seed", UINT32_MAX, UINT32_MAX + 1, _at_most(UINT32_MAX)),
    Edge("stop", ["s"] * 8, ["s"] * 9, _items_at_most(8)),
    Edge("stop", ["x"], [""], ONE_CHAR, loc="stop.0"),
    Edge("stop", [_s(64)], [_s(65)], _chars_at_most(64), loc="stop.0"),
]


@pytest.mark.parametrize("edge", GENERATION_PARAMS, ids=_id)
def test_generation_params_bounds(edge: Edge) -> None:
    _check(GenerationParams, {}, edge)


PINNED_MEMORY = [
    Edge("id", "m", "", ONE_CHAR),
    Edge("id", _s(128), _s(129), _chars_at_most(128)),
    Edge("text", "t", "", ONE_CHAR),
    Edge("text", _s(20_000), _s(20_001), _chars_at_most(20_000)),
    Edge("version", 1, 0, _at_least(1)),
]


@pytest.mark.parametrize("edge", PINNED_MEMORY, ids=_id)
def test_pinned_memory_bounds(edge: Edge) -> None:
    _check(PinnedMemory, {"id": "m", "text": "t"}, edge)


MEMORY_OPTIONS = [
    Edge("namespaces", ["ns"], [], NO_ITEMS),
    Edge("namespaces", ["ns"] * 8, ["ns"] * 9, _items_at_most(8)),
    Edge(
        "pinned",
        [{"id": "m", "text": "t"}] * 50,
        [{"id": "m", "text": "t"}] * 51,
        _items_at_most(50),
    ),
    Edge("top_k", 0, -1, _at_least(0)),
    Edge("top_k", 50, 51, _at_most(50)),
    Edge("min_similarity", -1.0, -1.000001, _at_least(-1)),
    Edge("min_similarity", 1.0, 1.000001, _at_most(1)),
]


@pytest.mark.parametrize("edge", MEMORY_OPTIONS, ids=_id)
def test_memory_options_bounds(edge: Edge) -> None:
    _check(MemoryOptions, {}, edge)


def _labels(n: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(n)}


GENERATE_JOB = [
    Edge("prompt", "p", "", ONE_CHAR),
    Edge("prompt", _s(200_000), _s(200_001), _chars_at_most(200_000)),
    Edge(
        "metadata",
        _labels(32),
        _labels(33),
        "Dictionary should have at most 32 items after validation, not more",
    ),
    Edge("metadata", {"k": _s(1024)}, {"k": _s(1025)}, _chars_at_most(1024), loc="metadata.k"),
    Edge("callback_url", "http://a", "http://", "String should have at least 8 characters"),
    Edge(
        "callback_url",
        "http://a.example/" + _s(2048 - 17),
        "http://a.example/" + _s(2048 - 16),
        _chars_at_most(2048),
    ),
]


@pytest.mark.parametrize("edge", GENERATE_JOB, ids=_id)
def test_generate_job_request_bounds(edge: Edge) -> None:
    _check(GenerateJobRequest, {"prompt": "p"}, edge)


ADAPTER_REF = [
    Edge("version", 1, 0, _at_least(1)),
    Edge("version", 1_000_000, 1_000_001, _at_most(1_000_000)),
]


@pytest.mark.parametrize("edge", ADAPTER_REF, ids=_id)
def test_adapter_ref_bounds(edge: Edge) -> None:
    _check(AdapterRef, {"name": "a"}, edge)


TRAINING_OPTIONS = [
    Edge("steps", 1, 0, _at_least(1)),
    Edge("steps", 5000, 5001, _at_most(5000)),
    Edge("epochs", 1, 0, _at_least(1)),
    Edge("epochs", 100, 101, _at_most(100)),
    Edge("batch_size", 1, 0, _at_least(1)),
    Edge("batch_size", 64, 65, _at_most(64)),
    Edge("learning_rate", 1e-12, 0.0, "Input should be greater than 0"),
    Edge("learning_rate", 0.1, 0.1000001, _at_most(0.1)),
    Edge("rank", 1, 0, _at_least(1)),
    Edge("rank", 256, 257, _at_most(256)),
    Edge("alpha", 1, 0, _at_least(1)),
    Edge("alpha", 4096, 4097, _at_most(4096)),
    Edge("dropout", 0.0, -1e-9, _at_least(0)),
    Edge("dropout", 0.999999, 1.0, "Input should be less than 1"),
    Edge("target_modules", ["c_attn"], [], NO_ITEMS),
    Edge("target_modules", ["c_attn"] * 16, ["c_attn"] * 17, _items_at_most(16)),
    Edge("max_tokens", 16, 15, _at_least(16)),
    Edge("max_tokens", 1024, 1025, _at_most(1024)),
    Edge("seed", 0, -1, _at_least(0)),
    Edge("seed", UINT32_MAX, UINT32_MAX + 1, _at_most(UINT32_MAX)),
]


@pytest.mark.parametrize("edge", TRAINING_OPTIONS, ids=_id)
def test_training_options_bounds(edge: Edge) -> None:
    _check(TrainingOptions, {}, edge)


CONSOLIDATE_JOB = [
    Edge("memory_ids", ["m"], [], NO_ITEMS),
    Edge(
        "memory_ids",
        [f"m{i}" for i in range(1000)],
        [f"m{i}" for i in range(1001)],
        _items_at_most(1000),
    ),
    Edge("kinds", ["fact"], [], NO_ITEMS),
    Edge("kinds", ["fact"] * 4, ["fact"] * 5, _items_at_most(4)),
]


@pytest.mark.parametrize("edge", CONSOLIDATE_JOB, ids=_id)
def test_consolidate_job_request_bounds(edge: Edge) -> None:
    _check(ConsolidateJobRequest, {"adapter": "a", "namespace": "ns"}, edge)


CHAT_MESSAGE = [
    Edge("content", "c", "", ONE_CHAR),
    Edge("content", _s(200_000), _s(200_001), _chars_at_most(200_000)),
]


@pytest.mark.parametrize("edge", CHAT_MESSAGE, ids=_id)
def test_chat_message_bounds(edge: Edge) -> None:
    _check(ChatMessage, {"role": "user", "content": "c"}, edge)


USER = {"role": "user", "content": "hi"}
CHAT_JOB = [
    Edge("messages", [USER], [], NO_ITEMS),
    Edge("messages", [USER] * 256, [USER] * 257, _items_at_most(256)),
]


@pytest.mark.parametrize("edge", CHAT_JOB, ids=_id)
def test_chat_job_request_bounds(edge: Edge) -> None:
    _check(ChatJobRequest, {"messages": [USER]}, edge)


def test_a_session_turn_is_at_most_one_memorys_text() -> None:
    base = {"session_id": "s"}
    ok = {**base, "messages": [{"role": "user", "content": _s(20_000)}]}
    too_long = {**base, "messages": [{"role": "user", "content": _s(20_001)}]}
    assert _errors(ChatJobRequest, ok) == []
    assert _errors(ChatJobRequest, too_long) == [
        (
            "",
            "Value error, the last user message is 20,001 characters; a session stores at "
            "most 20,000 per turn: shorten it or set write_back to false",
        )
    ]
    assert _errors(ChatJobRequest, {**too_long, "write_back": False}) == []


def test_the_last_of_several_messages_is_the_users_prompt() -> None:
    said = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert ChatJobRequest.model_validate({"messages": said}).prompt == "c"
    refused = [
        (
            "",
            "Value error, the last message must be the user's (role `user`)",
        )
    ]
    assert _errors(ChatJobRequest, {"messages": said[:2]}) == refused
    assert _errors(ChatJobRequest, {"messages": said[1:]}) == []


SESSION_SUMMARY = [
    Edge("through_turn", 1, 0, _at_least(1)),
    Edge("through_turn", 1_000_000_000, 1_000_000_001, _at_most(1_000_000_000)),
]


@pytest.mark.parametrize("edge", SESSION_SUMMARY, ids=_id)
def test_session_summary_target_bounds(edge: Edge) -> None:
    _check(SessionSummaryTarget, {"session_id": "s", "through_turn": 1}, edge)


SUMMARIZE_JOB = [
    Edge("text", "t", "", ONE_CHAR),
    Edge("text", _s(1_000_000), _s(1_000_001), _chars_at_most(1_000_000)),
    Edge("sentences", 1, 0, _at_least(1)),
    Edge("sentences", 20, 21, _at_most(20)),
]


@pytest.mark.parametrize("edge", SUMMARIZE_JOB, ids=_id)
def test_summarize_job_request_bounds(edge: Edge) -> None:
    _check(SummarizeJobRequest, {"text": "t"}, edge)


# ------------------------------------------------------------------------------- memories

MEMORY_CREATE = [
    Edge("text", "t", "", ONE_CHAR),
    Edge("text", _s(20_000), _s(20_001), _chars_at_most(20_000)),
    Edge("source", _s(256), _s(257), _chars_at_most(256)),
    Edge("ttl_seconds", 1, 0, "Input should be greater than 0"),
    Edge("ttl_seconds", 315_360_000, 315_360_001, _at_most(315_360_000)),
]


@pytest.mark.parametrize("edge", MEMORY_CREATE, ids=_id)
def test_memory_create_bounds(edge: Edge) -> None:
    _check(MemoryCreate, {"namespace": "ns", "text": "t"}, edge)


@pytest.mark.parametrize("edge", MEMORY_CREATE, ids=_id)
def test_memory_update_bounds(edge: Edge) -> None:
    _check(MemoryUpdate, {"kind": "fact"}, edge)


def test_memory_batch_create_bounds() -> None:
    item = {"namespace": "ns", "text": "t"}
    _check(MemoryBatchCreate, {}, Edge("items", [item], [], NO_ITEMS))
    _check(MemoryBatchCreate, {}, Edge("items", [item] * 1000, [item] * 1001, _items_at_most(1000)))


DOCUMENT_INGEST = [
    Edge("text", "t", "", ONE_CHAR),
    Edge("text", _s(2_000_000), _s(2_000_001), _chars_at_most(2_000_000)),
    Edge("document_id", _s(128), _s(129), _chars_at_most(128)),
    Edge("chunk_chars", 100, 99, _at_least(100)),
    Edge("chunk_chars", 20_000, 20_001, _at_most(20_000)),
    Edge("overlap_chars", 0, -1, _at_least(0)),
]


@pytest.mark.parametrize("edge", DOCUMENT_INGEST, ids=_id)
def test_document_ingest_bounds(edge: Edge) -> None:
    _check(DocumentIngest, {"namespace": "ns", "text": "doc", "overlap_chars": 0}, edge)


@pytest.mark.parametrize(("chunk", "most"), [(1000, 499), (101, 50), (20_000, 5_000)])
def test_document_overlap_is_less_than_half_a_chunk_and_at_most_5000(chunk: int, most: int) -> None:
    base = {"namespace": "ns", "text": "doc", "chunk_chars": chunk}
    assert _errors(DocumentIngest, {**base, "overlap_chars": most}) == []
    refused = _errors(DocumentIngest, {**base, "overlap_chars": most + 1})
    if most == 5_000:
        assert refused == [("overlap_chars", _at_most(5000))]
    else:
        assert refused == [
            (
                "",
                f"Value error, overlap_chars ({most + 1}) must be less than half of chunk_chars "
                f"({chunk}): at most {most}",
            )
        ]


MEMORY_VERSION_BASE = {
    "version": 1,
    "text": "t",
    "kind": "fact",
    "content_hash": "0" * 64,
    "updated_at": "2024-05-01T00:00:00Z",
}
MEMORY_VERSION = [
    Edge("version", 1, 0, _at_least(1)),
    Edge("version", 1_000_000, 1_000_001, _at_most(1_000_000)),
]


@pytest.mark.parametrize("edge", MEMORY_VERSION, ids=_id)
def test_memory_version_bounds(edge: Edge) -> None:
    _check(MemoryVersion, MEMORY_VERSION_BASE, edge)


MEMORY_RECORD_BASE = {
    "id": "m",
    "tenant": "t",
    "namespace": "ns",
    "kind": "fact",
    "text": "t",
    "created_at": "2024-05-01T00:00:00Z",
    "updated_at": "2024-05-01T00:00:00Z",
    "content_hash": "0" * 64,
}


def _history(n: int) -> list[dict[str, Any]]:
    return [{**MEMORY_VERSION_BASE, "version": v} for v in range(1, n + 1)]


MEMORY_RECORD = [
    Edge("version", 1, 0, _at_least(1)),
    Edge("version", 1_000_000, 1_000_001, _at_most(1_000_000)),
    Edge("source", _s(256), _s(257), _chars_at_most(256)),
]


@pytest.mark.parametrize("edge", MEMORY_RECORD, ids=_id)
def test_memory_record_bounds(edge: Edge) -> None:
    _check(MemoryRecord, MEMORY_RECORD_BASE, edge)


def test_a_memory_record_keeps_at_most_100_earlier_versions() -> None:
    kept = {**MEMORY_RECORD_BASE, "version": 101, "history": _history(100)}
    assert _errors(MemoryRecord, kept) == []
    past = {**MEMORY_RECORD_BASE, "version": 102, "history": _history(101)}
    assert _errors(MemoryRecord, past) == [("history", _items_at_most(100))]


MEMORY_SEARCH = [
    Edge("query", "q", "", ONE_CHAR),
    Edge("query", _s(20_000), _s(20_001), _chars_at_most(20_000)),
    Edge("top_k", 1, 0, _at_least(1)),
    Edge("top_k", 100, 101, _at_most(100)),
    Edge("min_score", -1.0, -1.000001, _at_least(-1)),
    Edge("min_score", 1.0, 1.000001, _at_most(1)),
    Edge("mmr_lambda", 0.0, -1e-9, _at_least(0)),
    Edge("mmr_lambda", 1.0, 1.000001, _at_most(1)),
    Edge("recency_half_life_s", 1.0, 0.9999999, _at_least(1)),
    Edge("recency_half_life_s", 3_153_600_000.0, 3_153_600_000.5, _at_most(3153600000)),
]


@pytest.mark.parametrize("edge", MEMORY_SEARCH, ids=_id)
def test_memory_search_request_bounds(edge: Edge) -> None:
    _check(MemorySearchRequest, {"namespace": "ns", "query": "q"}, edge)


METADATA_CONDITION = [
    Edge("eq", _s(1024), _s(1025), _chars_at_most(1024), loc="eq.constrained-str"),
    Edge("eq", INT64_MAX, INT64_MAX + 1, _at_most(INT64_MAX), loc="eq.constrained-int"),
    Edge("eq", -INT64_MAX - 1, -INT64_MAX - 2, _at_least(-INT64_MAX - 1), loc="eq.constrained-int"),
    Edge("any", ["a"], [], "Value should have at least 1 item after validation, not 0"),
    Edge(
        "any",
        ["a"] * 100,
        ["a"] * 101,
        "Value should have at most 100 items after validation, not 101",
    ),
    Edge("any", [_s(1024)], [_s(1025)], _chars_at_most(1024), loc="any.list[constrained-str].0"),
]


@pytest.mark.parametrize("edge", METADATA_CONDITION, ids=_id)
def test_metadata_condition_bounds(edge: Edge) -> None:
    _check(MetadataCondition, {"key": "k"}, edge)


def test_a_condition_holds_exactly_one_test() -> None:
    refused = (
        "Value error, condition on 'k' needs exactly one of `eq`, `any` or a range "
        "(`gt`/`gte`/`lt`/`lte`)"
    )
    assert _errors(MetadataCondition, {"key": "k"}) == [("", refused)]
    assert _errors(MetadataCondition, {"key": "k", "eq": "a", "gt": 1.0}) == [("", refused)]
    assert _errors(MetadataCondition, {"key": "k", "eq": "a", "any": ["b"]}) == [("", refused)]
    assert _errors(MetadataCondition, {"key": "k", "gt": 1.0, "lt": 2.0}) == []
    assert _errors(MetadataCondition, {"key": "k", "any": [1, 2]}) == []


COND = {"key": "k", "eq": "v"}


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"all_of": [COND]}
    for _ in range(levels - 1):
        node = {"all_of": [node]}
    return node


@pytest.mark.parametrize("field", ["all_of", "any_of", "none_of"])
def test_a_filter_list_holds_at_most_32(field: str) -> None:
    _check(MemoryFilter, {}, Edge(field, [COND] * 32, [COND] * 33, _items_at_most(32)))


def test_filters_nest_at_most_4_levels_and_64_conditions() -> None:
    assert _errors(MemoryFilter, _nested(4)) == []
    assert _errors(MemoryFilter, _nested(5)) == [
        ("", "Value error, filters nest at most 4 levels deep")
    ]
    assert MemoryFilter.model_validate(_nested(4)).shape() == (4, 1)
    flat = {"all_of": [COND] * 32, "any_of": [COND] * 32}
    assert _errors(MemoryFilter, flat) == []
    too_many = "Value error, a filter holds at most 64 conditions in all; this one has 65"
    assert _errors(MemoryFilter, {**flat, "none_of": [COND]}) == [("", too_many)]
    halves = {"all_of": [{"all_of": [COND] * 32}, {"any_of": [COND] * 32}]}
    assert _errors(MemoryFilter, halves) == []
    assert MemoryFilter.model_validate(halves).shape() == (2, 64)
    assert _errors(MemoryFilter, {**halves, "none_of": [COND]}) == [("", too_many)]


# ------------------------------------------------------------------------------- metadata


def _exactly_bytes(n: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metadata whose compact UTF-8 JSON, merged with `extra`, is exactly `n` bytes."""
    metadata: dict[str, Any] = {}
    i = 0
    while True:
        size = len(
            json.dumps({**metadata, **(extra or {})}, ensure_ascii=False, separators=(",", ":"))
        )
        room = n - size - len(f',"f{i:02}":""')
        if room <= 4000:
            metadata[f"f{i:02}"] = "é" * (room // 2) + "x" * (room % 2)
            return metadata
        metadata[f"f{i:02}"] = _s(4000)
        i += 1


def _deep(levels: int, array: bool) -> dict[str, Any]:
    """Metadata nested `levels` deep, the metadata object itself counting as 1: objects in
    objects, or arrays in arrays under one key."""
    if array:
        inner: Any = 1
        for _ in range(levels - 1):
            inner = [inner]
        return {"a": inner}
    node: dict[str, Any] = {"a": 1}
    for _ in range(levels - 1):
        node = {"a": node}
    return node


METADATA = [
    Edge(
        "metadata",
        _deep(8, array=False),
        _deep(9, array=False),
        "Value error, metadata.a.a.a.a.a.a.a.a nests deeper than 8 levels of objects/arrays; "
        "flatten it",
    ),
    Edge(
        "metadata",
        _deep(8, array=True),
        _deep(9, array=True),
        "Value error, metadata.a[0][0][0][0][0][0][0] nests deeper than 8 levels of "
        "objects/arrays; flatten it",
    ),
    Edge(
        "metadata",
        _exactly_bytes(16_384),
        _exactly_bytes(16_385),
        "Value error, metadata is 16,385 bytes as JSON; the limit is 16,384: keep large "
        "content in the memory's text",
    ),
    Edge(
        "metadata",
        {f"k{i}": 0 for i in range(256)},
        {f"k{i}": 0 for i in range(257)},
        "Value error, metadata has more than 256 keys in all",
    ),
    Edge(
        "metadata",
        {"a": {f"k{i}": 0 for i in range(255)}},
        {"a": {f"k{i}": 0 for i in range(256)}},
        "Value error, metadata has more than 256 keys in all",
    ),
    Edge(
        "metadata",
        {_s(128): 0},
        {_s(129): 0},
        "Value error, metadata has a key of 129 characters; keys must have 1 to 128",
    ),
    Edge(
        "metadata",
        {"a": 0},
        {"": 0},
        "Value error, metadata has a key of 0 characters; keys must have 1 to 128",
    ),
    Edge(
        "metadata",
        {"s": _s(4096)},
        {"s": _s(4097)},
        "Value error, metadata.s is 4,097 characters; strings may have 4,096",
    ),
    Edge(
        "metadata",
        {"a": [0] * 256},
        {"a": [0] * 257},
        "Value error, metadata.a has 257 items; arrays may hold 256",
    ),
    Edge(
        "metadata",
        {"n": INT64_MAX},
        {"n": INT64_MAX + 1},
        "Value error, metadata.n does not fit a 64-bit integer",
    ),
    Edge(
        "metadata",
        {"n": -INT64_MAX - 1},
        {"n": -INT64_MAX - 2},
        "Value error, metadata.n does not fit a 64-bit integer",
    ),
    Edge(
        "metadata",
        {_s(50): {"s": "v"}},
        {_s(50): {"s": _s(4097)}},
        f"Value error, metadata.{_s(40)}.s is 4,097 characters; strings may have 4,096",
    ),
]


@pytest.mark.parametrize("edge", METADATA, ids=_id)
def test_metadata_bounds(edge: Edge) -> None:
    _check(MemoryCreate, {"namespace": "ns", "text": "t"}, edge)


# What ingestion adds to every chunk's metadata, at its largest (read off contracts/memories.py).
CHUNK_FIELDS = {
    "document_id": _s(128),
    "chunk_index": 2_000_000,
    "chunk_count": 2_000_000,
    "char_start": 2_000_000,
    "char_end": 2_000_000,
}


def test_a_documents_metadata_leaves_room_for_the_chunk_fields() -> None:
    base = {"namespace": "ns", "text": "doc"}
    prefix = "Value error, with the chunk fields ingestion adds, "
    keys = Edge(
        "metadata",
        {f"k{i}": 0 for i in range(251)},
        {f"k{i}": 0 for i in range(252)},
        prefix + "metadata has more than 256 keys in all",
    )
    size = Edge(
        "metadata",
        _exactly_bytes(16_384, CHUNK_FIELDS),
        _exactly_bytes(16_385, CHUNK_FIELDS),
        prefix + "metadata is 16,385 bytes as JSON; the limit is 16,384: keep large content in "
        "the memory's text",
    )
    for edge in (keys, size):
        assert _errors(DocumentIngest, {**base, "metadata": edge.accepted}) == []
        assert _errors(DocumentIngest, {**base, "metadata": edge.refused}) == [("", edge.message)]


# -------------------------------------------------------------------------------- batches

BATCH_CREATE = [
    Edge("input_file_id", "f", "", ONE_CHAR),
    Edge("input_file_id", _s(64), _s(65), _chars_at_most(64)),
    Edge("completion_window", "000000030s", "0000000030s", _chars_at_most(10)),
    Edge("metadata", {"k": "v"}, {"": "v"}, ONE_CHAR, loc="metadata..[key]"),
    Edge(
        "metadata", {_s(64): "v"}, {_s(65): "v"}, _chars_at_most(64), loc=f"metadata.{_s(65)}.[key]"
    ),
    Edge("metadata", {"k": _s(512)}, {"k": _s(513)}, _chars_at_most(512), loc="metadata.k"),
    Edge(
        "metadata",
        _labels(16),
        _labels(17),
        "Dictionary should have at most 16 items after validation, not more",
    ),
]


@pytest.mark.parametrize("edge", BATCH_CREATE, ids=_id)
def test_batch_create_bounds(edge: Edge) -> None:
    _check(BatchCreate, {"input_file_id": "f", "endpoint": "/v1/jobs"}, edge)


@pytest.mark.parametrize(
    ("window", "seconds"),
    [
        ("24h", 86_400),
        ("2h", 7_200),
        ("90m", 5_400),
        ("30s", 30),
        ("1s", 1),
        ("168h", 604_800),
        ("10080m", 604_800),
        ("604800s", 604_800),
        ("000000030s", 30),
    ],
)
def test_completion_windows_in_hours_minutes_or_seconds(window: str, seconds: int) -> None:
    assert completion_window_seconds(window) == seconds


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("0s", 0), ("0h", 0), ("169h", 608_400), ("10081m", 604_860), ("604801s", 604_801)],
)
def test_a_completion_window_is_1_s_to_7_days(window: str, seconds: int) -> None:
    with pytest.raises(ValueError) as err:
        completion_window_seconds(window)
    assert str(err.value) == (
        f"completion_window {window!r} is {seconds:,} s; it must be 1 s to 7 days (604,800 s)"
    )


@pytest.mark.parametrize(
    ("window", "shown"),
    [("0000000030s", "0000000030s"), ("2xh", "2xh"), ("24", "24"), ("h", "h"), (_s(25), _s(20))],
)
def test_a_completion_window_that_is_no_duration_is_named_in_the_refusal(
    window: str, shown: str
) -> None:
    with pytest.raises(ValueError) as err:
        completion_window_seconds(window)
    assert str(err.value) == (
        f"completion_window {shown!r} is not a duration: write `24h` (OpenAI's value) or a "
        "number of hours, minutes or seconds such as `2h`, `90m`, `30s`"
    )


# ---------------------------------------------------------------- defaults and other numbers


def _result() -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1, context_tokens=0, input_tokens=1, completion_tokens=1, total_tokens=2
    )
    return JobResult(
        text="t", model="m", finish_reason="length", usage=usage, timings=JobTimings(), prompt="p"
    )


DEFAULTS: list[tuple[str, Callable[[], Any], Any]] = [
    (
        "GenerationParams",
        lambda: GenerationParams().model_dump(),
        {
            "max_new_tokens": 64,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": 0,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "no_repeat_ngram_scope": "all",
            "seed": None,
            "stop": [],
        },
    ),
    (
        "chat params",
        lambda: ChatJobRequest.model_validate({"messages": [USER]}).params.max_new_tokens,
        256,
    ),
    (
        "summarize params",
        lambda: SummarizeJobRequest(text="t").params.model_dump(
            include={
                "max_new_tokens",
                "repetition_penalty",
                "no_repeat_ngram_size",
                "no_repeat_ngram_scope",
            }
        ),
        {
            "max_new_tokens": 96,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 3,
            "no_repeat_ngram_scope": "output",
        },
    ),
    (
        "summarize params given in part",
        lambda: SummarizeJobRequest.model_validate(
            {"text": "t", "params": {"max_new_tokens": 200}}
        ).params.model_dump(
            include={
                "max_new_tokens",
                "repetition_penalty",
                "no_repeat_ngram_size",
                "no_repeat_ngram_scope",
            }
        ),
        {
            "max_new_tokens": 200,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 3,
            "no_repeat_ngram_scope": "output",
        },
    ),
    ("summarize sentences", lambda: SummarizeJobRequest(text="t").sentences, 3),
    ("summarize memory", lambda: SummarizeJobRequest(text="t").memory.top_k, 0),
    ("MemoryOptions.top_k", lambda: MemoryOptions().top_k, 5),
    ("PinnedMemory.score", lambda: PinnedMemory(id="m", text="t").score, 1.0),
    (
        "TrainingOptions",
        lambda: TrainingOptions().model_dump(),
        {
            "steps": None,
            "epochs": None,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "rank": 16,
            "alpha": None,
            "dropout": 0.0,
            "target_modules": None,
            "max_tokens": 128,
            "qa_variants": True,
            "seed": 0,
        },
    ),
    ("MemorySearchRequest.top_k", lambda: MemorySearchRequest(namespace="ns", query="q").top_k, 5),
    (
        "DocumentIngest sizes",
        lambda: DocumentIngest(namespace="ns", text="d").model_dump(
            include={"chunk_chars", "overlap_chars"}
        ),
        {"chunk_chars": 1000, "overlap_chars": 200},
    ),
    ("MemoryRecord.version", lambda: MemoryRecord.model_validate(MEMORY_RECORD_BASE).version, 1),
    (
        "MemoryPublic.version",
        lambda: MemoryPublic.model_validate({k: v for k, v in MEMORY_RECORD_BASE.items()}).version,
        1,
    ),
    ("JobResult.chunks", lambda: _result().chunks, 1),
    ("JobProgress.tokens", lambda: JobProgress().tokens, 0),
    (
        "JobPublic.attempts",
        lambda: (
            JobPublic.model_validate(
                {
                    "id": "j",
                    "type": "generate",
                    "status": "queued",
                    "tenant": "t",
                    "created_at": "2024-05-01T00:00:00Z",
                    "request": {"type": "generate", "prompt": "p"},
                }
            ).attempts
        ),
        0,
    ),
    (
        "NamespaceForgotten",
        lambda: NamespaceForgotten(namespace="ns", deleted=0).model_dump(
            include={"cancelled_jobs", "stale_adapters"}
        ),
        {"cancelled_jobs": 0, "stale_adapters": 0},
    ),
    (
        "BatchUsage",
        lambda: BatchUsage().model_dump(),
        {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
    ),
    ("BatchInputTokensDetails", lambda: BatchInputTokensDetails().cached_tokens, 0),
    ("BatchOutputTokensDetails", lambda: BatchOutputTokensDetails().reasoning_tokens, 0),
]


@pytest.mark.parametrize(("what", "read", "expected"), DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_defaults(what: str, read: Callable[[], Any], expected: Any) -> None:
    assert read() == expected


def test_greedy_and_top_k_in_the_generate_kwargs() -> None:
    assert GenerationParams().greedy and not GenerationParams(temperature=1.0).greedy
    assert GenerationParams(temperature=0.01).greedy is False
    assert GenerationParams(temperature=1.0, top_k=1).to_generate_kwargs()["top_k"] == 1
    assert GenerationParams(temperature=1.0, top_k=0).to_generate_kwargs()["top_k"] is None


def test_limits_other_modules_enforce() -> None:
    # memq/batch_format.py bounds a batch line's custom_id with it.
    assert MAX_CUSTOM_ID_CHARS == 512
