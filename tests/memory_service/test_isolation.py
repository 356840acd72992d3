"""Tenant isolation: tenant B never sees tenant A's memories through any endpoint,
whatever namespaces, filters, queries or ids it crafts (property-based)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_service.services.embeddings import Embedder
from tests.memory_service.conftest import app_for
from tests.utils.memory_service import auth

A_NAMESPACES = ["user:1", "shared", "default", "tenant", "acme"]
A_TEXTS = [
    "acme payroll password is swordfish",
    "acme merger with globex closes in June",
    "user 1 prefers dark mode",
    "the shared drive is at //acme/files",
]


@pytest.fixture(scope="module")
def two_tenants(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[TestClient, list[str]]]:
    data_dir: Path = tmp_path_factory.mktemp("isolation")
    with TestClient(app_for(data_dir, embedder)) as client:
        items = [
            {"namespace": ns, "text": f"{t} ({ns})", "metadata": {"tenant": "acme", "k": i}}
            for ns in A_NAMESPACES
            for i, t in enumerate(A_TEXTS)
        ]
        r = client.post("/v1/memories/batch", json={"items": items}, headers=auth("acme"))
        ids = [i["id"] for i in r.json()["items"]]
        client.post(
            "/v1/memories",
            json={"namespace": "user:1", "text": "globex own note"},
            headers=auth("globex"),
        )
        yield client, ids


namespaces = st.one_of(
    st.sampled_from(A_NAMESPACES), st.from_regex(r"[A-Za-z0-9_.:@\-]{1,20}", fullmatch=True)
)
conditions = st.one_of(
    st.builds(lambda k: {"key": k, "eq": "acme"}, st.sampled_from(["tenant", "k", "namespace"])),
    st.builds(lambda v: {"key": "k", "gte": v}, st.integers(-5, 5)),
    st.builds(
        lambda v: {"key": "tenant", "any": ["acme", v]}, st.text("abc", min_size=1, max_size=3)
    ),
)
filters = st.one_of(
    st.none(),
    st.builds(lambda c: {"any_of": c}, st.lists(conditions, min_size=1, max_size=3)),
    st.builds(lambda c: {"none_of": c}, st.lists(conditions, min_size=1, max_size=3)),
    st.builds(lambda c: {"all_of": c}, st.lists(conditions, min_size=1, max_size=2)),
)


def _leaks(body: Any, a_ids: list[str]) -> bool:
    text = str(body)
    return "acme" in text.replace("'tenant': 'globex'", "") or any(i in text for i in a_ids)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    namespace=namespaces,
    flt=filters,
    query=st.sampled_from(["acme payroll password", "dark mode", "swordfish", "globex merger"]),
    mode=st.sampled_from(["dense", "keyword", "hybrid"]),
    victim=st.integers(min_value=0, max_value=len(A_NAMESPACES) * len(A_TEXTS) - 1),
)
def test_other_tenant_never_sees_memories_through_any_endpoint(
    two_tenants: tuple[TestClient, list[str]],
    namespace: str,
    flt: dict[str, Any] | None,
    query: str,
    mode: str,
    victim: int,
) -> None:
    client, a_ids = two_tenants
    b = auth("globex")
    search = client.post(
        "/v1/memories/search",
        json={"namespace": namespace, "query": query, "mode": mode, "top_k": 50, "filter": flt},
        headers=b,
    )
    assert search.status_code == 200
    assert not _leaks(search.json(), a_ids)

    params: dict[str, Any] = {"namespace": namespace, "limit": 1000}
    if flt is not None:
        params["metadata"] = json.dumps(flt)
    listed = client.get("/v1/memories", params=params, headers=b)
    assert listed.status_code == 200
    assert not _leaks(listed.json(), a_ids)

    exported = client.get(f"/v1/namespaces/{namespace}/export", headers=b)
    assert not _leaks(exported.text, a_ids)

    a_id = a_ids[victim]
    assert client.get(f"/v1/memories/{a_id}", headers=b).status_code == 404
    assert client.get(f"/v1/memories/{a_id}/history", headers=b).status_code == 404
    assert client.patch(f"/v1/memories/{a_id}", json={"text": "x"}, headers=b).status_code == 404
    assert client.delete(f"/v1/memories/{a_id}", headers=b).status_code == 404


def test_other_tenant_forget_and_duplicate_writes_do_not_touch_first_tenant(
    two_tenants: tuple[TestClient, list[str]],
) -> None:
    client, a_ids = two_tenants
    b = auth("initech")
    same_text = {"namespace": "user:1", "text": f"{A_TEXTS[0]} (user:1)"}
    copy = client.post("/v1/memories", json=same_text, headers=b).json()
    assert copy["deduplicated"] is False  # dedup never matches across tenants
    assert copy["id"] not in a_ids
    for ns in A_NAMESPACES:
        client.delete(f"/v1/namespaces/{ns}", headers=b)
    for a_id in a_ids:
        got = client.get(f"/v1/memories/{a_id}", headers=auth("acme"))
        assert got.status_code == 200
        assert got.json()["tenant"] == "acme"
