"""PUT /v1/memories/{id}: a memory under the caller's id, created once, then versioned;
the same content again changes nothing (what chat write-back relies on)."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.utils.memory_service import auth


def _put(client: TestClient, memory_id: str, tenant: str = "acme", **body: object):  # type: ignore[no-untyped-def]
    payload = {"namespace": "session:s1", "text": "hello there", "kind": "message", **body}
    return client.put(f"/v1/memories/{memory_id}", json=payload, headers=auth(tenant))


def test_put_creates_then_is_idempotent_then_versions(client: TestClient) -> None:
    memory_id = str(uuid.uuid4())
    first = _put(client, memory_id, metadata={"turn": 1})
    assert first.status_code == 201, first.text
    assert first.json()["id"] == memory_id and first.json()["version"] == 1
    again = _put(client, memory_id, metadata={"turn": 1})
    assert again.status_code == 200 and again.json()["version"] == 1
    changed = _put(client, memory_id, text="hello again", metadata={"turn": 1})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    history = client.get(f"/v1/memories/{memory_id}/history", headers=auth()).json()
    assert [v["text"] for v in history["versions"]] == ["hello there", "hello again"]


def test_put_does_not_dedup_against_other_memories(client: TestClient) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    assert _put(client, a).status_code == 201
    second = _put(client, b)  # the same text under another id: a second turn saying "hello"
    assert second.status_code == 201 and second.json()["id"] == b
    listed = client.get("/v1/memories", params={"namespace": "session:s1"}, headers=auth()).json()[
        "items"
    ]
    assert {m["id"] for m in listed} == {a, b}


def test_put_cannot_move_a_memory_or_touch_another_tenants(client: TestClient) -> None:
    memory_id = str(uuid.uuid4())
    assert _put(client, memory_id).status_code == 201
    moved = _put(client, memory_id, namespace="session:other")
    assert moved.status_code == 422 and "cannot move it" in moved.json()["message"]
    theirs = _put(client, memory_id, tenant="beta", text="beta's own")
    assert theirs.status_code == 201  # beta's id space is its own
    mine = client.get(f"/v1/memories/{memory_id}", headers=auth("acme")).json()
    assert mine["text"] == "hello there"


def test_put_validates_like_a_write(client: TestClient) -> None:
    assert _put(client, "bad id!").status_code == 422
    assert _put(client, str(uuid.uuid4()), text="\u200b").status_code == 422
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(20):
        deep = {"d": deep}
    assert _put(client, str(uuid.uuid4()), metadata=deep).status_code == 422
