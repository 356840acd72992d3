"""Issue 8's findings against the memory service, as regression tests on the real app and the
real Qdrant Edge engine: input the store could not read back (deep metadata, non-finite
numbers, unrepresentable dates, unbounded imports, chunk abuse, huge bodies) is refused with
a 4xx that says what to fix, before the engine sees it, and the store keeps working."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_service.services.embeddings import Embedder
from memq.contracts import (
    MAX_HISTORY_VERSIONS,
    METADATA_MAX_BYTES,
    METADATA_MAX_DEPTH,
    RECENCY_HALF_LIFE_MAX_S,
    MemoryKind,
    MemoryRecord,
)
from tests.memory_service.conftest import app_for, service_of
from tests.utils.memory_service import auth

JSON = {"Content-Type": "application/json"}
Add = Callable[..., dict[str, Any]]


def nested(depth: int, leaf: Any = 1) -> Any:
    """An object `depth` levels deep: nested(1) == {"a": 1}."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def sized(n: int) -> dict[str, str]:
    """Metadata whose compact JSON is exactly `n` bytes, in strings under the string limit."""
    metadata = {f"k{i}": "x" * 4000 for i in range(n // 4010)}
    used = len(json.dumps(metadata, separators=(",", ":")))
    metadata["last"] = "y" * (n - used - len(',"last":""'))
    assert len(json.dumps(metadata, separators=(",", ":")).encode()) == n
    return metadata


def post_raw(client: TestClient, path: str, raw: str, tenant: str = "acme") -> Any:
    return client.post(path, content=raw.encode(), headers={**auth(tenant), **JSON})


def assert_rejected(r: Any, status: int = 422, *needles: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and body["message"]
    for needle in needles:
        assert needle in body["message"], body["message"]


def exported_line(**overrides: Any) -> str:
    line: dict[str, Any] = {
        "id": "3f1c3b9e-2a51-4d8e-9c0f-5b7a1e3d4c21",
        "tenant": "someone-else",
        "namespace": "imp",
        "kind": "fact",
        "text": "restored fact",
        "metadata": {},
        "source": None,
        "created_at": "2024-01-01T00:00:00+00:00",
        "updated_at": "2024-01-01T00:00:00+00:00",
        "expires_at": None,
        "version": 1,
        "content_hash": "0" * 64,
        "history": [],
    }
    line.update(overrides)
    return json.dumps(line)


# ------------------------------------------------------------------------------ metadata


def test_deeply_nested_metadata_is_422_and_the_namespace_stays_usable(
    client: TestClient, add: Add
) -> None:
    kept = add("a fact that must survive", namespace="poison")
    r = client.post(
        "/v1/memories",
        json={"namespace": "poison", "text": "deep", "metadata": nested(130)},
        headers=auth(),
    )
    assert_rejected(r, 422, f"deeper than {METADATA_MAX_DEPTH} levels")
    # Every operation that returned 500 or wedged the store in the report still works.
    listed = client.get("/v1/memories", params={"namespace": "poison"}, headers=auth())
    assert [m["id"] for m in listed.json()["items"]] == [kept["id"]]
    search = client.post(
        "/v1/memories/search", json={"namespace": "poison", "query": "fact"}, headers=auth()
    )
    assert search.status_code == 200
    assert add("another tenant still writes", namespace="n", tenant="other")["id"]
    assert client.delete("/v1/namespaces/poison", headers=auth()).json()["deleted"] == 1


def test_metadata_depth_is_accepted_at_the_limit_and_refused_one_past(
    client: TestClient,
) -> None:
    at_limit = client.post(
        "/v1/memories",
        json={"namespace": "d", "text": "eight deep", "metadata": nested(METADATA_MAX_DEPTH)},
        headers=auth(),
    )
    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["metadata"] == nested(METADATA_MAX_DEPTH)
    past = client.post(
        "/v1/memories",
        json={"namespace": "d", "text": "nine deep", "metadata": nested(METADATA_MAX_DEPTH + 1)},
        headers=auth(),
    )
    assert_rejected(past, 422, "metadata.a.a.a.a.a.a.a.a nests deeper than 8 levels")
    in_array = client.post(
        "/v1/memories",
        json={"namespace": "d", "text": "arrays count", "metadata": {"l": [[[[[[[[1]]]]]]]]}},
        headers=auth(),
    )
    assert_rejected(in_array, 422, "metadata.l[0][0][0][0][0][0][0]")


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_metadata_is_422_on_every_write_route(client: TestClient, number: str) -> None:
    memory_id = client.post(
        "/v1/memories", json={"namespace": "nf", "text": "target"}, headers=auth()
    ).json()["id"]
    metadata = f'{{"ok": 1, "deep": {{"list": [1, {number}]}}}}'
    item = f'{{"namespace": "nf", "text": "x {number}", "metadata": {metadata}}}'
    responses = [
        post_raw(client, "/v1/memories", item),
        post_raw(client, "/v1/memories/batch", f'{{"items": [{item}]}}'),
        post_raw(
            client,
            "/v1/memories/documents",
            f'{{"namespace": "nf", "text": "a document", "metadata": {metadata}}}',
        ),
        client.patch(
            f"/v1/memories/{memory_id}",
            content=f'{{"metadata": {metadata}}}'.encode(),
            headers={**auth(), **JSON},
        ),
    ]
    for r in responses:
        assert_rejected(r, 422, "metadata.deep.list[1]", "must be finite")
    line = exported_line(namespace="nf").replace('"metadata": {}', f'"metadata": {metadata}')
    imported = client.post("/v1/namespaces/nf/import", content=line.encode(), headers=auth())
    assert_rejected(imported, 422, "line 1", "must be finite")
    listed = client.get("/v1/memories", params={"namespace": "nf"}, headers=auth()).json()
    assert [m["id"] for m in listed["items"]] == [memory_id]
    history = client.get(f"/v1/memories/{memory_id}/history", headers=auth()).json()
    assert len(history["versions"]) == 1


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({f"k{i}": i for i in range(257)}, "more than 256 keys"),
        ({"k" * 129: 1}, "keys must have 1 to 128"),
        ({"": 1}, "keys must have 1 to 128"),
        ({"s": "x" * 4097}, "metadata.s is 4,097 characters"),
        ({"l": list(range(257))}, "metadata.l has 257 items"),
        ({"i": 2**63}, "metadata.i does not fit a 64-bit integer"),
        ({"i": -(2**63) - 1}, "metadata.i does not fit a 64-bit integer"),
        (sized(METADATA_MAX_BYTES + 1), "16,385 bytes as JSON; the limit is 16,384"),
    ],
)
def test_metadata_bounds_are_422_with_the_limit(
    client: TestClient, metadata: dict[str, Any], message: str
) -> None:
    r = client.post(
        "/v1/memories", json={"namespace": "b", "text": "t", "metadata": metadata}, headers=auth()
    )
    assert_rejected(r, 422, message)


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": i for i in range(256)},
        {"k" * 128: 1},
        {"s": "x" * 4096},
        {"l": list(range(256))},
        {"i": 2**63 - 1, "j": -(2**63), "f": 1.5e308, "b": True, "n": None},
        sized(METADATA_MAX_BYTES),
    ],
    ids=["256-keys", "128-char-key", "4096-char-string", "256-items", "edges", "16KiB"],
)
def test_metadata_at_every_limit_is_stored_and_read_back(
    client: TestClient, metadata: dict[str, Any]
) -> None:
    r = client.post(
        "/v1/memories", json={"namespace": "b", "text": "t", "metadata": metadata}, headers=auth()
    )
    assert r.status_code == 201, r.text
    got = client.get(f"/v1/memories/{r.json()['id']}", headers=auth()).json()
    assert got["metadata"] == metadata


def test_document_metadata_must_leave_room_for_the_chunk_fields(client: TestClient) -> None:
    full = sized(METADATA_MAX_BYTES - 100)
    r = client.post(
        "/v1/memories/documents",
        json={"namespace": "docs", "text": "some document", "metadata": full},
        headers=auth(),
    )
    assert_rejected(r, 422, "with the chunk fields ingestion adds")


# ------------------------------------------------------------------------ search / list


@pytest.mark.parametrize("half_life", [1e-300, 0.0, 0.999, RECENCY_HALF_LIFE_MAX_S * 1.001, 1e308])
def test_recency_half_life_outside_one_second_to_a_century_is_422(
    client: TestClient, half_life: float
) -> None:
    r = client.post(
        "/v1/memories/search",
        json={"namespace": "n", "query": "q", "recency_half_life_s": half_life},
        headers=auth(),
    )
    assert_rejected(r, 422, "recency_half_life_s")


@pytest.mark.parametrize("half_life", [1.0, RECENCY_HALF_LIFE_MAX_S])
def test_recency_half_life_at_its_bounds_searches(
    client: TestClient, add: Add, half_life: float
) -> None:
    add("the cat sleeps on the sofa")
    r = client.post(
        "/v1/memories/search",
        json={"namespace": "user:1", "query": "cat", "recency_half_life_s": half_life},
        headers=auth(),
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["hits"]) == 1


def test_first_and_last_representable_dates_filter_instead_of_failing(
    client: TestClient, add: Add
) -> None:
    add("a dated memory")
    for params in (
        {"created_after": "0001-01-01T00:00:00"},
        {"created_before": "9999-12-31T23:59:59"},
        {"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31T23:59:59Z"},
    ):
        listed = client.get(
            "/v1/memories", params={"namespace": "user:1", **params}, headers=auth()
        )
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["items"]) == 1
        search = client.post(
            "/v1/memories/search",
            json={"namespace": "user:1", "query": "dated", **params},
            headers=auth(),
        )
        assert search.status_code == 200, search.text
        assert len(search.json()["hits"]) == 1
    nothing = client.get(
        "/v1/memories",
        params={"namespace": "user:1", "created_before": "0001-01-01T00:00:00"},
        headers=auth(),
    )
    assert nothing.json()["items"] == []


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00"]
)
def test_dates_outside_the_calendar_in_utc_are_422_on_list_and_search(
    client: TestClient, when: str
) -> None:
    listed = client.get(
        "/v1/memories", params={"namespace": "n", "created_after": when}, headers=auth()
    )
    assert_rejected(listed, 422, "created_after")
    search = client.post(
        "/v1/memories/search",
        json={"namespace": "n", "query": "q", "created_before": when},
        headers=auth(),
    )
    assert_rejected(search, 422, "created_before")


def test_dates_are_iso_strings_never_numbers(client: TestClient) -> None:
    for when in (0, 1_700_000_000, True):
        r = client.post(
            "/v1/memories/search",
            json={"namespace": "n", "query": "q", "created_before": when},
            headers=auth(),
        )
        assert_rejected(r, 422, "ISO 8601")


def test_filters_are_bounded_in_depth_and_size(client: TestClient) -> None:
    condition = {"key": "a", "eq": 1}
    four: dict[str, Any] = {"all_of": [condition]}
    for _ in range(3):
        four = {"all_of": [four]}
    ok = client.post(
        "/v1/memories/search", json={"namespace": "n", "query": "q", "filter": four}, headers=auth()
    )
    assert ok.status_code == 200, ok.text
    too_deep = client.post(
        "/v1/memories/search",
        json={"namespace": "n", "query": "q", "filter": {"any_of": [four]}},
        headers=auth(),
    )
    assert_rejected(too_deep, 422, "at most 4 levels")
    too_many = {"all_of": [{"any_of": [condition] * 32}, {"any_of": [condition] * 32}, condition]}
    r = client.post(
        "/v1/memories/search",
        json={"namespace": "n", "query": "q", "filter": too_many},
        headers=auth(),
    )
    assert_rejected(r, 422, "at most 64 conditions", "has 65")


def test_numbers_and_booleans_are_never_coerced(client: TestClient) -> None:
    cases = [
        ("/v1/memories/search", {"namespace": "n", "query": "q", "top_k": "5"}),
        ("/v1/memories/search", {"namespace": "n", "query": "q", "min_score": True}),
        ("/v1/memories", {"namespace": "n", "text": "t", "ttl_seconds": "60"}),
        ("/v1/memories/documents", {"namespace": "n", "text": "t", "chunk_chars": 500.0}),
    ]
    for path, body in cases:
        assert_rejected(client.post(path, json=body, headers=auth()), 422)


def test_invisible_text_and_malformed_ids_are_422(client: TestClient) -> None:
    invisible = client.post(
        "/v1/memories", json={"namespace": "n", "text": "\u200b\u200d\u2060"}, headers=auth()
    )
    assert_rejected(invisible, 422, "visible characters")
    for bad_id in ("x" * 10_000, "%00", "a%20b"):
        assert_rejected(client.get(f"/v1/memories/{bad_id}", headers=auth()), 422, "memory_id")


# ---------------------------------------------------------------------------- documents


@pytest.mark.parametrize(("chunk", "overlap"), [(100, 99), (100, 50), (1000, 500)])
def test_overlap_of_half_a_chunk_or_more_is_422_with_the_limit(
    client: TestClient, chunk: int, overlap: int
) -> None:
    r = client.post(
        "/v1/memories/documents",
        json={"namespace": "d", "text": "a " * 500, "chunk_chars": chunk, "overlap_chars": overlap},
        headers=auth(),
    )
    assert_rejected(r, 422, "less than half of chunk_chars", f"at most {(chunk - 1) // 2}")


def test_overlap_just_under_half_a_chunk_is_ingested_within_the_span_bound(
    client: TestClient,
) -> None:
    text = " ".join(f"w{i}" for i in range(300))
    r = client.post(
        "/v1/memories/documents",
        json={"namespace": "d", "text": text, "chunk_chars": 100, "overlap_chars": 49},
        headers=auth(),
    )
    assert r.status_code == 201, r.text
    chunks = r.json()["chunks"]
    assert 1 < len(chunks) <= 1 + -(-(len(text) - 100) // 26)
    assert all(len(c["text"]) <= 100 for c in chunks)


# ------------------------------------------------------------------------------- import


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text": "x" * 1_000_000}, "at most 20000 characters"),
        ({"text": ""}, "at least 1 character"),
        ({"text": "   "}, "visible characters"),
        ({"id": "i" * 10_000}, "id: String should match pattern"),
        ({"id": "../other"}, "id: String should match pattern"),
        ({"version": -5}, "version: Input should be greater than or equal to 1"),
        ({"version": "2"}, "version: Input should be a valid integer"),
        ({"metadata": nested(130)}, "deeper than 8 levels"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at"),
        ({"source": "s" * 257}, "source"),
        ({"content_hash": "not-a-hash"}, "content_hash"),
        ({"kind": "poem"}, "kind"),
        ({"namespace": "bad ns"}, "namespace"),
        (
            {"version": 2, "history": [{"version": 2, "text": "old", "kind": "fact",
                                        "content_hash": "0" * 64,
                                        "updated_at": "2024-01-01T00:00:00Z"}]},
            "version numbers must increase",
        ),
        (
            {
                "version": MAX_HISTORY_VERSIONS + 2,
                "history": [
                    {"version": v, "text": "old", "kind": "fact", "content_hash": "0" * 64,
                     "updated_at": "2024-01-01T00:00:00Z"}
                    for v in range(1, MAX_HISTORY_VERSIONS + 2)
                ],
            },
            "history: List should have at most 100 items",
        ),
    ],
    ids=[
        "1MB-text", "empty-text", "blank-text", "10k-id", "path-id", "negative-version",
        "string-version", "deep-metadata", "bad-date", "long-source", "bad-hash", "bad-kind",
        "bad-namespace", "versions-not-increasing", "history-too-long",
    ],
)  # fmt: skip
def test_import_validates_every_line_like_a_write_and_writes_nothing_on_error(
    client: TestClient, overrides: dict[str, Any], message: str
) -> None:
    good = exported_line(id="11111111-2a51-4d8e-9c0f-5b7a1e3d4c21", text="a good line")
    bad = exported_line(**overrides)
    r = client.post(
        "/v1/namespaces/imp/import", content=f"{good}\n\n{bad}\n".encode(), headers=auth()
    )
    assert_rejected(r, 422, "line 3", message)
    listed = client.get("/v1/memories", params={"namespace": "imp"}, headers=auth()).json()
    assert listed["items"] == []  # the good first line was not written either


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from(
        ["id", "text", "kind", "metadata", "source", "created_at", "updated_at", "expires_at",
         "version", "content_hash", "history", "namespace", "deduplicated", "extra"]
    ),
    value=JSON_VALUES,
)  # fmt: skip
def test_import_of_any_value_in_any_field_is_accepted_or_422_never_5xx(
    client: TestClient, field: str, value: Any
) -> None:
    line = json.dumps({**json.loads(exported_line()), field: value})  # NaN/Infinity included
    r = client.post("/v1/namespaces/imp/import", content=line.encode(), headers=auth())
    assert r.status_code in (200, 422), r.text


def test_import_rejects_lines_that_are_not_json_objects(client: TestClient) -> None:
    for body, message in (
        ("{not json", "line 1 is not JSON"),
        ("[1, 2]", "line 1 is not a JSON object"),
        ('{"a":' * 100_000, "line 1 is not JSON"),
    ):
        r = client.post("/v1/namespaces/imp/import", content=body.encode(), headers=auth())
        assert_rejected(r, 422, message)


def test_import_recomputes_the_content_hash_and_keeps_the_rest(client: TestClient) -> None:
    line = exported_line(text="Imported   fact", version=3, history=[
        {"version": 1, "text": "v1", "kind": "fact", "content_hash": "1" * 64,
         "updated_at": "2023-01-01T00:00:00Z", "metadata": {"v": 1}},
    ])  # fmt: skip
    r = client.post("/v1/namespaces/imp/import", content=line.encode(), headers=auth())
    assert r.status_code == 200, r.text
    got = client.get("/v1/memories/3f1c3b9e-2a51-4d8e-9c0f-5b7a1e3d4c21", headers=auth()).json()
    dedup = client.post(
        "/v1/memories", json={"namespace": "imp", "text": "Imported fact"}, headers=auth()
    )
    assert dedup.status_code == 200 and dedup.json()["id"] == got["id"]
    assert got["version"] == 3 and got["tenant"] == "acme"
    assert got["created_at"] == "2024-01-01T00:00:00Z"


# ------------------------------------------------------------------------- legacy data


def test_memories_stored_before_the_bounds_stay_readable(client: TestClient) -> None:
    service = service_of(client)
    legacy = MemoryRecord.model_construct(
        id="x" * 300,
        tenant="acme",
        namespace="old",
        kind=MemoryKind.fact,
        text="\u200b",
        metadata=nested(12),
        source=None,
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
        updated_at=datetime(2020, 1, 1, tzinfo=UTC),
        expires_at=None,
        version=1,
        content_hash="0" * 64,
        deduplicated=False,
        history=[],
    )
    vector = service.embedder.embed(["legacy"])[0]
    service.store.upsert("acme", [service._point(legacy, vector)])
    listed = client.get("/v1/memories", params={"namespace": "old"}, headers=auth())
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["metadata"] == nested(12)
    search = client.post(
        "/v1/memories/search", json={"namespace": "old", "query": "legacy"}, headers=auth()
    )
    assert search.status_code == 200 and len(search.json()["hits"]) == 1
    exported = client.get("/v1/namespaces/old/export", headers=auth())
    assert exported.status_code == 200
    reimport = client.post("/v1/namespaces/old/import", content=exported.content, headers=auth())
    assert_rejected(reimport, 422, "line 1")
    assert client.delete("/v1/namespaces/old", headers=auth()).json()["deleted"] == 1


# ------------------------------------------------------------------------------ history


def test_an_update_past_the_history_limit_is_422_and_keeps_every_version(
    client: TestClient, add: Add
) -> None:
    memory_id = add("a memory updated many times")["id"]
    for i in range(MAX_HISTORY_VERSIONS):
        r = client.patch(f"/v1/memories/{memory_id}", json={"metadata": {"i": i}}, headers=auth())
        assert r.status_code == 200, r.text
    r = client.patch(f"/v1/memories/{memory_id}", json={"metadata": {"i": -1}}, headers=auth())
    assert_rejected(r, 422, f"already keeps {MAX_HISTORY_VERSIONS} earlier versions")
    versions = client.get(f"/v1/memories/{memory_id}/history", headers=auth()).json()["versions"]
    assert len(versions) == MAX_HISTORY_VERSIONS + 1
    assert versions[-1]["metadata"] == {"i": MAX_HISTORY_VERSIONS - 1}
    exported = client.get("/v1/namespaces/user:1/export", headers=auth()).text
    reimported = client.post(
        "/v1/namespaces/user:1/import", content=exported.encode(), headers=auth("other")
    )
    assert reimported.status_code == 200, reimported.text


# ------------------------------------------------------------------------- body limits


@pytest.fixture
def small_limits(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    app = app_for(
        tmp_path, embedder, memory_max_body_bytes=64 * 1024, memory_max_import_bytes=256 * 1024
    )
    with TestClient(app) as c:
        yield c


def test_bodies_over_the_limit_are_413_with_an_error_response(small_limits: TestClient) -> None:
    huge_text = {"namespace": "n", "text": "x" * (70 * 1024)}
    r = small_limits.post("/v1/memories", json=huge_text, headers=auth())
    assert_rejected(r, 413, "65,536 bytes", "POST /v1/memories")
    assert r.json()["error"] == "request_too_large"
    batch = {"items": [{"namespace": "n", "text": f"item {i} " + "y" * 100} for i in range(700)]}
    assert_rejected(small_limits.post("/v1/memories/batch", json=batch, headers=auth()), 413)


def test_import_has_its_own_larger_limit(small_limits: TestClient) -> None:
    lines = "\n".join(
        exported_line(id=f"id-{i}", namespace="n", text=f"fact {i} " + "z" * 1000)
        for i in range(100)
    )
    assert 64 * 1024 < len(lines) < 256 * 1024
    r = small_limits.post("/v1/namespaces/n/import", content=lines.encode(), headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 100
    over = (lines + "\n") * 3
    r = small_limits.post("/v1/namespaces/n/import", content=over.encode(), headers=auth())
    assert_rejected(r, 413, "262,144 bytes")
