"""Search: dense, BM25 keyword and hybrid fusion, filters, min_score, MMR, recency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from memory_service.services.records import utcnow
from tests.memory_service.conftest import FakeClock, service_of
from tests.utils.memory_service import auth

CORPUS = [
    ("Invoice INV-88213 was paid by Globex on March 3rd", {"type": "billing", "year": 2023}),
    ("The customer asked about a refund for a damaged parcel", {"type": "support", "year": 2024}),
    ("Our refund policy allows returns within 30 days", {"type": "policy", "year": 2022}),
    ("Zephyrine prefers meetings in the morning", {"type": "preference", "year": 2024}),
    ("The team lunch is on Friday at noon", {"type": "social", "year": 2024}),
    ("Quarterly revenue grew by twelve percent", {"type": "billing", "year": 2024}),
]


@pytest.fixture
def corpus(client: TestClient) -> dict[str, str]:
    r = client.post(
        "/v1/memories/batch",
        json={
            "items": [
                {
                    "namespace": "kb",
                    "text": t,
                    "metadata": m,
                    "kind": "fact" if i % 2 else "message",
                }
                for i, (t, m) in enumerate(CORPUS)
            ]
        },
        headers=auth(),
    )
    assert r.status_code == 200
    return {i["text"]: i["id"] for i in r.json()["items"]}


def search(client: TestClient, **body: Any) -> list[dict[str, Any]]:
    r = client.post("/v1/memories/search", json={"namespace": "kb", **body}, headers=auth())
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits


def test_dense_search_ranks_semantically_related_memory_first(
    client: TestClient, corpus: dict[str, str]
) -> None:
    hits = search(client, query="how do I get my money back?", mode="dense", top_k=2)
    assert "refund" in hits[0]["text"]
    assert hits[0]["score"] == pytest.approx(hits[0]["similarity"])
    assert set(hits[0]) >= {"id", "score", "text", "metadata", "namespace", "kind"}


def test_keyword_search_finds_rare_identifier_exactly(
    client: TestClient, corpus: dict[str, str]
) -> None:
    hits = search(client, query="INV-88213", mode="keyword", top_k=3)
    assert [h["id"] for h in hits] == [corpus[CORPUS[0][0]]]


def test_hybrid_search_puts_rare_name_first_where_dense_alone_does_not(
    client: TestClient,
) -> None:
    texts = [
        "Ticket 4471 from Quvaxolin was escalated to tier two",
        "The recommended dosage of ibuprofen is 400 mg",
        "Take the antibiotic dosage twice daily with food",
        "Paracetamol dosage for children depends on weight",
        "Dosage instructions are printed on the label",
    ]
    client.post(
        "/v1/memories/batch",
        json={"items": [{"namespace": "kb", "text": t} for t in texts]},
        headers=auth(),
    )
    dense = search(client, query="Quvaxolin dosage", mode="dense", top_k=3)
    hybrid = search(client, query="Quvaxolin dosage", mode="hybrid", top_k=3)
    assert dense[0]["text"] != texts[0]  # embeddings favour the many "dosage" memories
    assert hybrid[0]["text"] == texts[0]  # BM25's rare-token match lifts it to the top
    assert hybrid[0]["score"] > hybrid[1]["score"]


def test_min_score_drops_hits_below_cosine_similarity_in_every_mode(
    client: TestClient, corpus: dict[str, str]
) -> None:
    for mode in ("dense", "keyword", "hybrid"):
        hits = search(client, query="refund for a damaged parcel", mode=mode, min_score=0.5)
        assert hits, mode
        assert all(h["similarity"] >= 0.5 for h in hits), mode
    assert search(client, query="volcanic geology of Iceland", min_score=0.6) == []


def test_metadata_filters_support_and_or_not_and_ranges(
    client: TestClient, corpus: dict[str, str]
) -> None:
    def texts(flt: dict[str, Any]) -> set[str]:
        return {h["text"] for h in search(client, query="anything", top_k=10, filter=flt)}

    billing = texts({"all_of": [{"key": "type", "eq": "billing"}]})
    assert billing == {CORPUS[0][0], CORPUS[5][0]}
    and_range = texts({"all_of": [{"key": "type", "eq": "billing"}, {"key": "year", "gte": 2024}]})
    assert and_range == {CORPUS[5][0]}
    either = texts({"any_of": [{"key": "type", "eq": "policy"}, {"key": "type", "eq": "social"}]})
    assert either == {CORPUS[2][0], CORPUS[4][0]}
    nested = texts(
        {
            "all_of": [{"key": "year", "gte": 2024}],
            "none_of": [{"any_of": [{"key": "type", "any": ["billing", "social"]}]}],
        }
    )
    assert nested == {CORPUS[1][0], CORPUS[3][0]}


def test_kind_filter_returns_only_requested_kinds(
    client: TestClient, corpus: dict[str, str]
) -> None:
    hits = search(client, query="anything", top_k=10, kinds=["fact"])
    assert len(hits) == 3
    assert {h["kind"] for h in hits} == {"fact"}


def test_created_time_range_filters_by_creation_time(client: TestClient) -> None:
    service = service_of(client)
    clock = FakeClock(utcnow() - timedelta(days=10))
    service.clock = clock
    client.post("/v1/memories", json={"namespace": "kb", "text": "old news item"}, headers=auth())
    clock.now = utcnow()
    client.post("/v1/memories", json={"namespace": "kb", "text": "fresh news item"}, headers=auth())
    cutoff = (utcnow() - timedelta(days=1)).isoformat()
    recent = search(client, query="news", created_after=cutoff)
    older = search(client, query="news", created_before=cutoff)
    assert [h["text"] for h in recent] == ["fresh news item"]
    assert [h["text"] for h in older] == ["old news item"]


def test_recency_weighting_prefers_newer_of_two_equally_relevant_memories(
    client: TestClient,
) -> None:
    service = service_of(client)
    clock = FakeClock(utcnow() - timedelta(days=30))
    service.clock = clock
    client.post("/v1/memories", json={"namespace": "kb", "text": "I live in Paris"}, headers=auth())
    clock.now = utcnow()
    # Both stay current (the test is about ranking, not supersession).
    client.post(
        "/v1/memories",
        json={"namespace": "kb", "text": "I live in Lisbon now", "auto_supersede": False},
        headers=auth(),
    )
    query = {"query": "I live in Paris", "mode": "dense", "top_k": 2}
    assert search(client, **query)[0]["text"] == "I live in Paris"
    weighted = search(client, **query, recency_half_life_s=86400)
    assert weighted[0]["text"] == "I live in Lisbon now"
    assert weighted[1]["score"] < 0.01  # 30 half-lives old


def test_mmr_diversifies_near_identical_results(client: TestClient) -> None:
    texts = [
        "The cat sleeps on the sofa all day",
        "All day long the cat is asleep on the couch",
        "The cat naps on the sofa during the day",
        "Dogs need a walk twice a day",
    ]
    client.post(
        "/v1/memories/batch",
        json={"items": [{"namespace": "kb", "text": t} for t in texts]},
        headers=auth(),
    )
    plain = search(client, query="where does the cat sleep", mode="dense", top_k=2)
    diverse = search(
        client, query="where does the cat sleep", mode="dense", top_k=2, mmr_lambda=0.1
    )
    assert all("cat" in h["text"] for h in plain)
    assert "cat" in diverse[0]["text"]
    assert "Dogs" in diverse[1]["text"]


def test_search_in_empty_namespace_returns_no_hits(client: TestClient) -> None:
    assert search(client, query="anything at all") == []
    assert search(client, query="the and of", mode="keyword") == []
