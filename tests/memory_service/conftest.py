"""Fixtures for the memory service: the real MiniLM model (loaded once per session) and apps
on the real embedded Qdrant Edge engine in a temporary data directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from memory_service.core.config import MemorySettings
from memory_service.main import create_app
from memory_service.services.embeddings import Embedder, embedder_for
from memory_service.services.memories import MemoryService
from tests.utils.memory_service import MODEL_CACHE, TOKEN, auth

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def settings_for(data_dir: Path, **overrides: object) -> MemorySettings:
    return MemorySettings(
        data_dir=data_dir,
        service_token=TOKEN,  # type: ignore[arg-type]
        ttl_sweep_interval_s=3600,
        model_cache_dir=MODEL_CACHE,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """One model for the whole session, handed to every app the tests build."""
    return embedder_for(settings_for(tmp_path_factory.mktemp("unused")))


def app_for(data_dir: Path, embedder: Embedder, **overrides: object) -> FastAPI:
    return create_app(settings_for(data_dir, **overrides), embedder=embedder)


@pytest.fixture
def client(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    with TestClient(app_for(tmp_path, embedder)) as c:
        yield c


def service_of(client: TestClient) -> MemoryService:
    service: MemoryService = client.app.state.memory_service  # type: ignore[attr-defined]
    return service


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def add(client: TestClient) -> Callable[..., dict[str, object]]:
    def _add(
        text: str, namespace: str = "user:1", tenant: str = "acme", **extra: object
    ) -> dict[str, object]:
        r = client.post(
            "/v1/memories",
            json={"namespace": namespace, "text": text, **extra},
            headers=auth(tenant),
        )
        assert r.status_code in (200, 201), r.text
        body: dict[str, object] = r.json()
        return body

    return _add
