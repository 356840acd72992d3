"""Updates with history, TTL expiry and sweeping, listing with cursors and filters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from memory_service.services.records import utcnow
from tests.memory_service.conftest import FakeClock, service_of
from tests.utils.memory_service import auth

Add = Callable[..., dict[str, Any]]


def test_update_creates_new_version_and_keeps_old_text_in_history(
    client: TestClient, add: Add
) -> None:
    m = add("Alice works at Initech", metadata={"team": "a"})
    r = client.patch(
        f"/v1/memories/{m['id']}",
        json={"text": "Alice works at Globex", "metadata": {"team": "b"}},
        headers=auth(),
    )
    assert r.status_code == 200
    updated = r.json()
    assert updated["version"] == 2
    assert updated["created_at"] == m["created_at"]
    assert updated["updated_at"] >= m["updated_at"]
    assert updated["content_hash"] != m["content_hash"]
    history = client.get(f"/v1/memories/{m['id']}/history", headers=auth()).json()
    assert [(v["version"], v["text"], v["metadata"]) for v in history["versions"]] == [
        (1, "Alice works at Initech", {"team": "a"}),
        (2, "Alice works at Globex", {"team": "b"}),
    ]


def test_search_finds_the_current_text_after_an_update(client: TestClient, add: Add) -> None:
    m = add("The server room code is 4411")
    client.patch(f"/v1/memories/{m['id']}", json={"text": "Dinner is at eight"}, headers=auth())
    hits = client.post(
        "/v1/memories/search",
        json={"namespace": "user:1", "query": "what time is dinner", "top_k": 1},
        headers=auth(),
    ).json()["hits"]
    assert hits[0]["id"] == m["id"]
    assert hits[0]["text"] == "Dinner is at eight"


def test_contradicting_fact_is_stored_beside_the_old_one_not_replacing_it(
    client: TestClient, add: Add
) -> None:
    old = add("Bob's favourite team is Arsenal")
    new = add("Bob's favourite team is Chelsea")
    assert new["id"] != old["id"]
    assert client.get(f"/v1/memories/{old['id']}", headers=auth()).status_code == 200


def test_metadata_only_update_keeps_text_and_vector(client: TestClient, add: Add) -> None:
    m = add("Carol speaks Portuguese")
    client.patch(f"/v1/memories/{m['id']}", json={"metadata": {"verified": True}}, headers=auth())
    hits = client.post(
        "/v1/memories/search",
        json={"namespace": "user:1", "query": "which language does Carol speak", "mode": "dense"},
        headers=auth(),
    ).json()["hits"]
    assert hits[0]["id"] == m["id"]
    assert hits[0]["metadata"] == {"verified": True}
    assert hits[0]["similarity"] > 0.5


def test_updating_unknown_or_foreign_memory_is_404(client: TestClient, add: Add) -> None:
    m = add("private to acme")
    foreign = client.patch(
        f"/v1/memories/{m['id']}", json={"text": "hijacked"}, headers=auth("other")
    )
    assert foreign.status_code == 404
    assert client.get(f"/v1/memories/{m['id']}", headers=auth()).json()["text"] == "private to acme"


def test_expired_memory_never_comes_back_and_sweep_deletes_it(client: TestClient, add: Add) -> None:
    service = service_of(client)
    clock = FakeClock(utcnow())
    service.clock = clock
    short = add("ephemeral session token is abc", ttl_seconds=60)
    lasting = add("permanent fact about the sky")
    assert short["expires_at"] is not None
    clock.now += timedelta(seconds=61)

    search = client.post(
        "/v1/memories/search",
        json={"namespace": "user:1", "query": "session token", "top_k": 10, "mode": "keyword"},
        headers=auth(),
    ).json()["hits"]
    assert short["id"] not in [h["id"] for h in search]
    listed = client.get("/v1/memories", params={"namespace": "user:1"}, headers=auth()).json()
    assert [i["id"] for i in listed["items"]] == [lasting["id"]]
    assert client.get(f"/v1/memories/{short['id']}", headers=auth()).status_code == 404

    assert service.sweep_expired() == 1
    assert service.store.count("acme", None) == 1


def test_expired_memory_does_not_block_a_new_identical_write(client: TestClient, add: Add) -> None:
    service = service_of(client)
    clock = FakeClock(utcnow())
    service.clock = clock
    first = add("reminder: water the plants", ttl_seconds=10)
    clock.now += timedelta(seconds=11)
    again = add("reminder: water the plants")
    assert again["deduplicated"] is False
    assert again["id"] != first["id"]


def test_list_pages_through_everything_once_with_cursor(client: TestClient) -> None:
    animals = ["otter", "falcon", "badger", "lynx", "heron"]
    places = ["harbour", "desert", "glacier", "orchard", "subway"]
    texts = [f"A {a} was seen near the {p}" for a in animals for p in places]
    stored = client.post(
        "/v1/memories/batch",
        json={"items": [{"namespace": "pages", "text": t} for t in texts]},
        headers=auth(),
    ).json()["items"]
    texts = [i["text"] for i in stored if not i["deduplicated"]]
    assert len(texts) > 20
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"namespace": "pages", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/memories", params=params, headers=auth()).json()
        seen += [i["text"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == (len(texts) + 9) // 10
    assert sorted(seen) == sorted(texts)


def test_list_filters_by_kind_metadata_and_time(client: TestClient) -> None:
    service = service_of(client)
    clock = FakeClock(utcnow() - timedelta(hours=2))
    service.clock = clock
    client.post(
        "/v1/memories",
        json={"namespace": "n", "text": "old chat line", "kind": "message", "metadata": {"ch": 1}},
        headers=auth(),
    )
    clock.now = utcnow()
    client.post(
        "/v1/memories",
        json={"namespace": "n", "text": "new fact here", "kind": "fact", "metadata": {"ch": 2}},
        headers=auth(),
    )

    def texts(**params: Any) -> list[str]:
        r = client.get("/v1/memories", params={"namespace": "n", **params}, headers=auth())
        assert r.status_code == 200, r.text
        return [i["text"] for i in r.json()["items"]]

    assert texts(kind="message") == ["old chat line"]
    assert texts(metadata='{"all_of":[{"key":"ch","eq":2}]}') == ["new fact here"]
    hour_ago = (utcnow() - timedelta(hours=1)).isoformat()
    assert texts(created_after=hour_ago) == ["new fact here"]
    assert texts(created_before=hour_ago) == ["old chat line"]
