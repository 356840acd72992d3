"""Memories outlive the app: a graceful restart on the same data directory keeps everything."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from memory_service.services.embeddings import Embedder
from tests.memory_service.conftest import app_for
from tests.utils.memory_service import auth


def test_memories_and_history_persist_across_restart(tmp_path: Path, embedder: Embedder) -> None:
    with TestClient(app_for(tmp_path, embedder)) as c:
        m = c.post(
            "/v1/memories",
            json={"namespace": "user:1", "text": "Bob lives in Oslo"},
            headers=auth(),
        ).json()
        c.patch(f"/v1/memories/{m['id']}", json={"text": "Bob lives in Bergen"}, headers=auth())
    with TestClient(app_for(tmp_path, embedder)) as c:
        got = c.get(f"/v1/memories/{m['id']}", headers=auth()).json()
        assert got["text"] == "Bob lives in Bergen"
        assert got["version"] == 2
        versions = c.get(f"/v1/memories/{m['id']}/history", headers=auth()).json()["versions"]
        assert [v["text"] for v in versions] == ["Bob lives in Oslo", "Bob lives in Bergen"]
        hits = c.post(
            "/v1/memories/search",
            json={"namespace": "user:1", "query": "where does Bob live", "top_k": 1},
            headers=auth(),
        ).json()["hits"]
        assert hits[0]["text"] == "Bob lives in Bergen"
