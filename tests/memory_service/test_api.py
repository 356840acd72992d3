"""The HTTP contract: auth, tenant header, CRUD, forget, error shapes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from memory_service.core.config import MemorySettings
from memq.contracts import MemoryCreate
from memq.logs import package_version
from tests.memory_service.conftest import service_of
from tests.utils.memory_service import auth


def test_readyz_and_healthz_report_backend_model_and_dimension_without_auth(
    client: TestClient,
) -> None:
    expected = {
        "status": "ok",
        "backend": "edge",
        "embedding_model": "all-MiniLM-L6-v2",
        "dim": 384,
        "embedding_backend": "onnx",
    }
    for path in ("/readyz", "/healthz"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.json() == expected
    assert client.get("/livez").json() == {"status": "ok"}


def test_version_comes_from_the_package_metadata(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["info"]["version"] == package_version()


def test_settings_require_a_service_token_and_bind_localhost(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="MEMQ_SERVICE_TOKEN is not set"):
        MemorySettings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    settings = MemorySettings(
        data_dir=tmp_path,
        service_token="s3cret",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    assert settings.memory_host == "127.0.0.1"
    assert settings.token == "s3cret"


def test_missing_or_wrong_service_token_is_rejected_with_401(client: TestClient) -> None:
    body = {"namespace": "user:1", "text": "hello"}
    no_token = client.post("/v1/memories", json=body, headers={"X-Memq-Tenant": "acme"})
    wrong = client.post("/v1/memories", json=body, headers=auth(token="nope"))
    basic = client.post(
        "/v1/memories", json=body, headers={"Authorization": "Basic x", "X-Memq-Tenant": "a"}
    )
    for r in (no_token, wrong, basic):
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
        assert "MEMQ_SERVICE_TOKEN" in r.json()["message"]


def test_missing_or_malformed_tenant_header_is_rejected_with_400(client: TestClient) -> None:
    missing = client.get("/v1/memories/abc", headers=auth(tenant=None))
    malformed = client.get("/v1/memories/abc", headers=auth(tenant="a b/../c"))
    assert missing.status_code == 400
    assert "X-Memq-Tenant" in missing.json()["message"]
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "invalid_tenant"


def test_tenant_in_body_is_refused_not_used(client: TestClient) -> None:
    r = client.post(
        "/v1/memories",
        json={"namespace": "user:1", "text": "hello", "tenant": "evil"},
        headers=auth("acme"),
    )
    assert r.status_code == 422
    assert r.json()["error"] == "validation_error"


def test_add_returns_201_with_all_fields_and_get_reads_it_back(client: TestClient) -> None:
    r = client.post(
        "/v1/memories",
        json={
            "namespace": "user:42",
            "text": "Prefers tea over coffee",
            "kind": "fact",
            "metadata": {"lang": "en", "confidence": 0.9},
            "source": "job-1",
        },
        headers=auth(),
    )
    assert r.status_code == 201
    created = r.json()
    assert created["tenant"] == "acme"
    assert created["version"] == 1
    assert created["deduplicated"] is False
    assert len(created["content_hash"]) == 64
    assert created["created_at"] == created["updated_at"]
    got = client.get(f"/v1/memories/{created['id']}", headers=auth())
    assert got.status_code == 200
    assert got.json() == created


def test_exact_duplicate_returns_existing_memory_with_200(
    client: TestClient, add: Callable[..., dict[str, object]]
) -> None:
    first = add("The office wifi password is hunter2")
    r = client.post(
        "/v1/memories",
        json={"namespace": "user:1", "text": "The office  wifi password is hunter2 "},
        headers=auth(),
    )
    assert r.status_code == 200
    assert r.json()["deduplicated"] is True
    assert r.json()["id"] == first["id"]


def test_near_duplicate_above_threshold_is_not_stored_twice(
    client: TestClient, add: Callable[..., dict[str, object]]
) -> None:
    first = add("My favourite colour is blue.")
    near = add("my favourite colour is blue")
    different = add("My favourite food is ramen.")
    assert near["deduplicated"] is True and near["id"] == first["id"]
    assert different["deduplicated"] is False
    listed = client.get("/v1/memories", params={"namespace": "user:1"}, headers=auth()).json()
    assert len(listed["items"]) == 2


def test_same_text_in_another_namespace_is_not_a_duplicate(
    add: Callable[..., dict[str, object]],
) -> None:
    a = add("Meeting moved to Thursday", namespace="user:1")
    b = add("Meeting moved to Thursday", namespace="user:2")
    assert b["deduplicated"] is False
    assert a["id"] != b["id"]


def test_concurrent_identical_writes_store_one_memory(client: TestClient) -> None:
    service = service_of(client)
    item = MemoryCreate(namespace="race", text="Only one copy of me should exist")
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: service.add("acme", item), range(6)))
    assert sum(not r.deduplicated for r in results) == 1
    assert len({r.id for r in results}) == 1


def test_batch_add_keeps_order_and_dedups_within_the_batch(client: TestClient) -> None:
    texts = ["Alpha project kicks off in May", "Beta uses Rust", "Alpha project kicks off in May"]
    r = client.post(
        "/v1/memories/batch",
        json={"items": [{"namespace": "team", "text": t} for t in texts]},
        headers=auth(),
    )
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["text"] for i in items] == [texts[0], texts[1], texts[0]]
    assert [i["deduplicated"] for i in items] == [False, False, True]
    assert items[2]["id"] == items[0]["id"]


def test_delete_removes_memory_and_second_delete_is_404(
    client: TestClient, add: Callable[..., dict[str, object]]
) -> None:
    m = add("temporary note")
    assert client.delete(f"/v1/memories/{m['id']}", headers=auth()).json() == {
        "id": m["id"],
        "deleted": True,
    }
    assert client.get(f"/v1/memories/{m['id']}", headers=auth()).status_code == 404
    again = client.delete(f"/v1/memories/{m['id']}", headers=auth())
    assert again.status_code == 404
    assert again.json()["error"] == "memory_not_found"


def test_forget_namespace_deletes_only_that_namespace_and_counts(
    client: TestClient, add: Callable[..., dict[str, object]]
) -> None:
    for t in ("one fact about apples", "second fact about trains", "third fact about clouds"):
        add(t, namespace="user:7")
    kept = add("unrelated fact about boats", namespace="user:8")
    r = client.delete("/v1/namespaces/user:7", headers=auth())
    assert r.json() == {"namespace": "user:7", "deleted": 3}
    assert client.get(f"/v1/memories/{kept['id']}", headers=auth()).status_code == 200
    assert client.delete("/v1/namespaces/user:7", headers=auth()).json()["deleted"] == 0


def test_bad_input_gets_422_error_response_never_500(client: TestClient) -> None:
    cases = [
        client.post("/v1/memories", content=b"{not json", headers=auth()),
        client.post("/v1/memories", json={"namespace": "bad ns!", "text": "x"}, headers=auth()),
        client.post("/v1/memories", json={"namespace": "n", "text": "   "}, headers=auth()),
        client.post(
            "/v1/memories", json={"namespace": "n", "text": "x", "kind": "poem"}, headers=auth()
        ),
        client.post("/v1/memories/batch", json={"items": []}, headers=auth()),
        client.post(
            "/v1/memories/search", json={"namespace": "n", "query": "q", "top_k": 0}, headers=auth()
        ),
        client.post(
            "/v1/memories/search",
            json={"namespace": "n", "query": "q", "filter": {"all_of": [{"key": "a"}]}},
            headers=auth(),
        ),
        client.get("/v1/memories", params={"namespace": "n", "cursor": "garbage"}, headers=auth()),
        client.get("/v1/memories", params={"namespace": "n", "metadata": "{"}, headers=auth()),
        client.patch("/v1/memories/abc", json={}, headers=auth()),
        client.post(
            "/v1/memories/search",
            content=b'{"namespace": "n", "query": "q", "filter": {"all_of": [{"key": "a", '
            b'"gt": NaN}]}}',
            headers={**auth(), "Content-Type": "application/json"},
        ),
        client.post(
            "/v1/memories/search",
            json={
                "namespace": "n",
                "query": "q",
                "filter": {"all_of": [{"key": "a", "eq": 2**70}]},
            },
            headers=auth(),
        ),
    ]
    for r in cases:
        assert r.status_code == 422, r.text
        body = r.json()
        assert set(body) == {"error", "message", "details"}
        assert body["message"]


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    r = client.get("/v1/nothing-here", headers=auth())
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_openapi_documents_every_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/memories"])
    for path in (
        "/v1/memories/batch",
        "/v1/memories/search",
        "/v1/memories/documents",
        "/v1/memories/{memory_id}/history",
        "/v1/namespaces/{namespace}",
        "/v1/namespaces/{namespace}/export",
        "/v1/namespaces/{namespace}/import",
    ):
        assert path in paths
