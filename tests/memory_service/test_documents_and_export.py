"""Document ingestion into overlapping chunks; namespace export/import round trip."""

from __future__ import annotations

import itertools
import json

from fastapi.testclient import TestClient

from tests.utils.memory_service import auth

DOCUMENT = " ".join(
    f"Paragraph {i}: the {w} committee reviewed item {i * 13} and agreed on next steps."
    for i, w in enumerate(["budget", "safety", "hiring", "travel", "security", "ethics"] * 5)
)


def test_ingested_document_is_split_into_overlapping_chunks_with_position_metadata(
    client: TestClient,
) -> None:
    r = client.post(
        "/v1/memories/documents",
        json={
            "namespace": "docs",
            "text": DOCUMENT,
            "document_id": "minutes-2024-05",
            "metadata": {"team": "board"},
            "chunk_chars": 400,
            "overlap_chars": 80,
        },
        headers=auth(),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    chunks = body["chunks"]
    assert body["document_id"] == "minutes-2024-05"
    assert len(chunks) > 5
    for index, chunk in enumerate(chunks):
        meta = chunk["metadata"]
        assert chunk["kind"] == "document_chunk"
        assert meta["document_id"] == "minutes-2024-05"
        assert meta["chunk_index"] == index
        assert meta["chunk_count"] == len(chunks)
        assert meta["team"] == "board"
        assert DOCUMENT[meta["char_start"] : meta["char_end"]] == chunk["text"]
    for a, b in itertools.pairwise(chunks):
        assert b["metadata"]["char_start"] < a["metadata"]["char_end"]  # overlap
    hits = client.post(
        "/v1/memories/search",
        json={
            "namespace": "docs",
            "query": "item 260",
            "mode": "keyword",
            "filter": {"all_of": [{"key": "document_id", "eq": "minutes-2024-05"}]},
        },
        headers=auth(),
    ).json()["hits"]
    assert "item 260" in hits[0]["text"]


def test_document_with_overlap_not_smaller_than_chunk_is_422(client: TestClient) -> None:
    r = client.post(
        "/v1/memories/documents",
        json={"namespace": "docs", "text": "x y z", "chunk_chars": 200, "overlap_chars": 200},
        headers=auth(),
    )
    assert r.status_code == 422
    assert "overlap_chars" in r.json()["message"]


def test_export_then_import_round_trips_exactly(client: TestClient) -> None:
    stored = client.post(
        "/v1/memories/batch",
        json={
            "items": [
                {"namespace": "src", "text": "Dana owns a red bicycle", "metadata": {"k": [1, 2]}},
                {
                    "namespace": "src",
                    "text": "The VPN gateway is vpn-3.example.org",
                    "kind": "fact",
                },
                {"namespace": "src", "text": "Remind me tomorrow", "ttl_seconds": 86400},
            ]
        },
        headers=auth(),
    ).json()["items"]
    dana = stored[0]["id"]
    client.patch(f"/v1/memories/{dana}", json={"text": "Dana sold the bicycle"}, headers=auth())
    exported = client.get("/v1/namespaces/src/export", headers=auth())
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = exported.text.splitlines()
    assert len(lines) == 3
    assert any(json.loads(line)["history"] for line in lines)

    assert client.delete("/v1/namespaces/src", headers=auth()).json()["deleted"] == 3
    r = client.post("/v1/namespaces/src/import", content=exported.content, headers=auth())
    assert r.json() == {"namespace": "src", "imported": 3}
    again = client.get("/v1/namespaces/src/export", headers=auth())
    assert sorted(again.text.splitlines()) == sorted(lines)
    hits = client.post(
        "/v1/memories/search",
        json={"namespace": "src", "query": "vpn-3.example.org", "top_k": 1},
        headers=auth(),
    ).json()["hits"]
    assert hits[0]["text"] == "The VPN gateway is vpn-3.example.org"


def test_import_into_another_tenant_never_touches_the_original(client: TestClient) -> None:
    client.post("/v1/memories", json={"namespace": "s", "text": "acme secret"}, headers=auth())
    exported = client.get("/v1/namespaces/s/export", headers=auth()).content
    r = client.post("/v1/namespaces/s/import", content=exported, headers=auth("globex"))
    assert r.json()["imported"] == 1
    copy = json.loads(client.get("/v1/namespaces/s/export", headers=auth("globex")).text)
    assert copy["tenant"] == "globex"
    client.delete("/v1/namespaces/s", headers=auth("globex"))
    original = client.get("/v1/namespaces/s/export", headers=auth()).text
    assert json.loads(original)["text"] == "acme secret"


def test_import_rejects_malformed_lines_and_foreign_namespaces_with_422(
    client: TestClient,
) -> None:
    bad_json = client.post("/v1/namespaces/s/import", content=b"{nope\n", headers=auth())
    assert bad_json.status_code == 422
    assert "line 1" in bad_json.json()["message"]
    client.post("/v1/memories", json={"namespace": "a", "text": "in namespace a"}, headers=auth())
    exported = client.get("/v1/namespaces/a/export", headers=auth()).content
    wrong_ns = client.post("/v1/namespaces/b/import", content=exported, headers=auth())
    assert wrong_ns.status_code == 422
    assert "/v1/namespaces/a/import" in wrong_ns.json()["message"]
