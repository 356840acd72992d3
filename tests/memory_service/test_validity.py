"""Facts that change (issue 20): validity intervals, automatic and explicit supersession,
as-of search, restore, and the bad inputs around them — on the real engine and model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.memory_service.conftest import FakeClock, auth, service_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _clocked(client: TestClient) -> FakeClock:
    clock = FakeClock(T0)
    service_of(client).clock = clock
    return clock


def _write(client: TestClient, text: str, ns: str = "user:tomasz", **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/memories", json={"namespace": ns, "text": text, **extra}, headers=auth())
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _search(client: TestClient, query: str, ns: str = "user:tomasz", **extra: Any) -> list[str]:
    r = client.post(
        "/v1/memories/search",
        json={"namespace": ns, "query": query, "top_k": 10, **extra},
        headers=auth(),
    )
    assert r.status_code == 200, r.text
    return [h["text"] for h in r.json()["hits"]]


def _get(client: TestClient, memory_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/memories/{memory_id}", headers=auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


GDANSK = "Tomasz Wierzba lives in Gdansk."
KRAKOW = "Tomasz Wierzba moved to Krakow."
WARSAW = "Tomasz Wierzba has now moved to Warsaw."


def test_a_contradicting_fact_supersedes_the_current_one_automatically(
    client: TestClient,
) -> None:
    clock = _clocked(client)
    old = _write(client, GDANSK)
    assert old["valid_from"].startswith("2026-01-01") and old["valid_to"] is None
    clock.now = T0 + timedelta(days=30)
    new = _write(client, KRAKOW)
    assert new["supersedes"] == [old["id"]]

    stale = _get(client, old["id"])
    assert stale["superseded_by"] == new["id"]
    assert stale["valid_to"].startswith("2026-01-31")
    assert stale["supersession"]["method"] == "automatic"
    assert "Krakow" in stale["supersession"]["reason"]

    assert _search(client, "Where does Tomasz live?") == [KRAKOW]
    marked = client.post(
        "/v1/memories/search",
        json={
            "namespace": "user:tomasz",
            "query": "Where does Tomasz live?",
            "include_superseded": True,
        },
        headers=auth(),
    ).json()["hits"]
    assert {h["text"]: h["superseded_by"] for h in marked} == {
        KRAKOW: None,
        GDANSK: new["id"],
    }


def test_as_of_returns_what_was_current_then_along_a_chain_of_three(client: TestClient) -> None:
    clock = _clocked(client)
    _write(client, GDANSK)
    clock.now = T0 + timedelta(days=10)
    second = _write(client, KRAKOW)
    clock.now = T0 + timedelta(days=20)
    third = _write(client, WARSAW)
    assert third["supersedes"] == [second["id"]]

    def as_of(moment: datetime) -> list[str]:
        return _search(client, "Tomasz's city", as_of=moment.isoformat())

    assert as_of(T0 - timedelta(seconds=1)) == []  # before anything was known
    assert as_of(T0) == [GDANSK]
    assert as_of(T0 + timedelta(days=10) - timedelta(seconds=1)) == [GDANSK]
    assert as_of(T0 + timedelta(days=10)) == [KRAKOW]  # valid_to is exclusive
    assert as_of(T0 + timedelta(days=19)) == [KRAKOW]
    assert as_of(T0 + timedelta(days=25)) == [WARSAW]
    assert _search(client, "Tomasz's city") == [WARSAW]


def test_restore_undoes_a_supersession_and_refuses_a_current_memory(client: TestClient) -> None:
    old = _write(client, GDANSK)
    new = _write(client, KRAKOW)
    r = client.post(f"/v1/memories/{old['id']}/restore", headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["superseded_by"] is None and r.json()["valid_to"] is None
    assert _get(client, new["id"])["supersedes"] == []
    assert sorted(_search(client, "Where does Tomasz live?")) == sorted([GDANSK, KRAKOW])

    again = client.post(f"/v1/memories/{old['id']}/restore", headers=auth())
    assert again.status_code == 409
    assert "current" in again.json()["message"]
    assert client.post("/v1/memories/nope/restore", headers=auth()).status_code == 404


def test_a_write_may_name_what_it_supersedes(client: TestClient) -> None:
    old = _write(client, "The team lunch is at noon.", ns="team")
    new = _write(
        client, "Lunch with the whole team happens at 1 pm.", ns="team", supersedes=[old["id"]]
    )
    assert new["supersedes"] == [old["id"]]
    stale = _get(client, old["id"])
    assert stale["supersession"]["method"] == "explicit"
    assert _search(client, "team lunch", ns="team") == [
        "Lunch with the whole team happens at 1 pm."
    ]


def _count(client: TestClient, ns: str, tenant: str = "acme") -> int:
    r = client.get("/v1/memories", params={"namespace": ns, "limit": 100}, headers=auth(tenant))
    return len(r.json()["items"])


def test_supersedes_from_another_namespace_or_tenant_is_404_and_stores_nothing(
    client: TestClient,
) -> None:
    elsewhere = _write(client, GDANSK, ns="user:other")
    foreign = client.post(
        "/v1/memories", json={"namespace": "user:x", "text": GDANSK}, headers=auth("globex")
    ).json()
    for target in (elsewhere["id"], foreign["id"]):
        r = client.post(
            "/v1/memories",
            json={"namespace": "user:tomasz", "text": KRAKOW, "supersedes": [target]},
            headers=auth(),
        )
        assert r.status_code == 404, r.text
        assert "nothing was stored" in r.json()["message"]
    assert _count(client, "user:tomasz") == 0
    assert _get(client, elsewhere["id"])["superseded_by"] is None


def test_superseding_an_already_superseded_memory_is_refused(client: TestClient) -> None:
    old = _write(client, GDANSK)
    _write(client, KRAKOW)
    r = client.post(
        "/v1/memories",
        json={"namespace": "user:tomasz", "text": WARSAW, "supersedes": [old["id"]]},
        headers=auth(),
    )
    assert r.status_code == 409, r.text
    assert _count(client, "user:tomasz") == 2


def test_bad_validity_inputs_are_refused_before_the_engine(client: TestClient) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    bad: list[dict[str, Any]] = [
        {"as_of": future},
        {"as_of": "0000-12-31T00:00:00"},
        {"as_of": 1700000000},
        {"as_of": "2020-01-01T00:00:00", "include_superseded": True},
    ]
    for extra in bad:
        r = client.post(
            "/v1/memories/search",
            json={"namespace": "user:tomasz", "query": "x", **extra},
            headers=auth(),
        )
        assert r.status_code == 422, (extra, r.text)
    twice = {"namespace": "n", "text": "t", "supersedes": ["a", "a"]}
    assert client.post("/v1/memories", json=twice, headers=auth()).status_code == 422


def test_auto_supersede_false_keeps_both_current(client: TestClient) -> None:
    _write(client, GDANSK)
    new = _write(client, KRAKOW, auto_supersede=False)
    assert new["supersedes"] == []
    assert sorted(_search(client, "Where does Tomasz live?")) == sorted([GDANSK, KRAKOW])


def test_the_same_fact_said_again_after_a_move_back_is_news_not_a_duplicate(
    client: TestClient,
) -> None:
    first = _write(client, "Tomasz Wierzba lives in Gdansk.")
    _write(client, KRAKOW)
    back = client.post(
        "/v1/memories",
        json={"namespace": "user:tomasz", "text": "Tomasz Wierzba moved back to Gdansk now."},
        headers=auth(),
    )
    assert back.status_code == 201
    assert back.json()["id"] != first["id"]
    assert _search(client, "Where does Tomasz live?") == [
        "Tomasz Wierzba moved back to Gdansk now."
    ]


def test_forgetting_a_namespace_removes_the_whole_chain(
    client: TestClient, add: Callable[..., dict[str, object]]
) -> None:
    _write(client, GDANSK)
    _write(client, KRAKOW)
    r = client.delete("/v1/namespaces/user:tomasz", headers=auth())
    assert r.json()["deleted"] == 2
    assert _search(client, "Tomasz", include_superseded=True) == []


def test_export_and_import_keep_the_chain(client: TestClient) -> None:
    old = _write(client, GDANSK)
    new = _write(client, KRAKOW)
    lines = client.get("/v1/namespaces/user:tomasz/export", headers=auth()).text
    client.delete("/v1/namespaces/user:tomasz", headers=auth())
    r = client.post(
        "/v1/namespaces/user:tomasz/import",
        content=lines,
        headers={**auth(), "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    assert _get(client, old["id"])["superseded_by"] == new["id"]
    assert _search(client, "Where does Tomasz live?") == [KRAKOW]
