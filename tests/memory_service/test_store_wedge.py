"""The store never wedges. Reproduction (issue 8): a point whose payload nests ~130 levels
is stored by Qdrant Edge, then every read, delete or sweep that touches it fails, and after
one failed update the shard refuses every later write from every tenant ("Not recovered from
previous error"). The API now refuses such input; these tests plant the point straight in the
engine (as an older version could have) and prove the store layer contains the damage."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as qe
from fastapi.testclient import TestClient

from memory_service.core.errors import InvalidRequest, StoreUnavailable
from memory_service.main import _housekeeping
from memory_service.store.base import DENSE, SPARSE, Match, SparseVec, StoredPoint, Where
from memory_service.store.edge import EdgeStore
from tests.memory_service.conftest import service_of
from tests.utils.memory_service import auth

DIM = 4


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def point(tenant: str, **payload: Any) -> StoredPoint:
    return StoredPoint(
        point_id=str(uuid.uuid4()),
        dense=[1.0] + [0.0] * (DIM - 1),
        sparse=SparseVec([1], [1.0]),
        payload={"tenant": tenant, "namespace": "ns", **payload},
    )


def plant_poison(
    store: EdgeStore,
    tenant: str,
    namespace: str,
    dim: int,
    *,
    left_in_wal: bool = False,
    **extra: Any,
) -> None:
    """Write a point the engine cannot read back, bypassing every check of ours, and flush.
    Qdrant Edge replays its WAL from the last flush on the next write: unless
    `left_in_wal`, one more write follows, so a reopened shard no longer replays the
    poisoned entry (with it left in the WAL, loading the shard fails: "failed to read WAL
    entry ... RecursionLimitExceeded", the report's service that could not restart)."""
    vector: dict[str, Any] = {
        DENSE: [1.0] + [0.0] * (dim - 1),
        SPARSE: qe.SparseVector([1], [1.0]),
    }
    payload = {"tenant": tenant, "namespace": namespace, "metadata": deep(130), **extra}
    store._shard.update(
        qe.UpdateOperation.upsert_points([qe.Point(str(uuid.uuid4()), vector, payload)])
    )
    store._shard.flush()
    if not left_in_wal:
        store._probe()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    edge = EdgeStore(tmp_path / "qdrant", DIM)
    yield edge
    edge.close()


def test_store_refuses_payloads_it_could_not_read_back(store: EdgeStore) -> None:
    with pytest.raises(InvalidRequest, match="deeper than 32 levels"):
        store.upsert("a", [point("a", metadata=deep(130))])
    with pytest.raises(InvalidRequest, match="non-finite"):
        store.upsert("a", [point("a", metadata={"x": [1.0, float("nan")]})])
    # Nothing reached the engine: the shard reads, deletes and writes as before.
    store.upsert("a", [point("a", metadata=deep(20))])
    assert store.count("a", None) == 1
    assert store.delete("a", Where(must=[Match("namespace", "ns")])) == 1
    store.upsert("b", [point("b")])
    assert store.readiness() is None


def test_engine_write_error_is_503_and_a_wedged_shard_is_reopened(store: EdgeStore) -> None:
    store.upsert("b", [point("b")])
    plant_poison(store, "a", "ns", DIM)
    with pytest.raises(StoreUnavailable, match="reopened from disk, retry") as failed:
        store.delete("a", Where(must=[Match("namespace", "ns")]))
    assert "recursion limit" in failed.value.message
    # Before: every later write of every tenant failed with "Not recovered from previous
    # error". Now the shard was reopened and takes writes again.
    assert store.readiness() is None
    store.upsert("b", [point("b")])
    store.wait_durable()
    assert store.count("b", None) == 2
    assert store.count("a", None) == 0  # replaying the failed delete removed the poison


def test_shard_whose_wal_cannot_be_replayed_stays_red_and_refuses_writes_fast(
    store: EdgeStore,
) -> None:
    plant_poison(store, "a", "ns", DIM, left_in_wal=True)
    with pytest.raises(StoreUnavailable, match=r"reopening the shard .* failed") as failed:
        store.delete("a", Where(must=[Match("namespace", "ns")]))
    assert "failed to read WAL entry" in failed.value.message
    reason = store.readiness()
    assert reason is not None and "failed to read WAL entry" in reason
    assert "restore the namespace exports" in reason
    with pytest.raises(StoreUnavailable, match="refuses writes"):
        store.upsert("b", [point("b")])
    with pytest.raises(StoreUnavailable, match="refuses writes"):
        store.count("b", None)


def test_store_that_cannot_be_reopened_fails_writes_fast_and_says_why(
    store: EdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_poison(store, "a", "ns", DIM)
    opened = store._open

    def disk_gone() -> qe.EdgeShard:
        raise OSError("disk gone")

    monkeypatch.setattr(store, "_open", disk_gone)
    with pytest.raises(StoreUnavailable, match=r"reopening the shard .* failed: disk gone"):
        store.delete("a", Where(must=[Match("namespace", "ns")]))
    reason = store.readiness()
    assert reason is not None and "disk gone" in reason
    with pytest.raises(StoreUnavailable, match="refuses writes"):
        store.upsert("b", [point("b")])
    with pytest.raises(StoreUnavailable):
        store.count("b", None)  # the old shard is closed: reads fail as 503, not 500
    # Once the shard can be opened again, the next write recovers on its own.
    monkeypatch.setattr(store, "_open", opened)
    store.upsert("b", [point("b")])
    assert store.readiness() is None
    assert store.count("b", None) == 1


def test_readyz_turns_red_while_writes_fail_and_green_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_of(client)
    store = service.store
    assert isinstance(store, EdgeStore)
    kept = client.post("/v1/memories", json={"namespace": "n", "text": "kept"}, headers=auth("b"))
    plant_poison(store, "acme", "poisoned", service.embedder.dim)
    monkeypatch.setattr(store, "_open", lambda: (_ for _ in ()).throw(OSError("disk gone")))

    forget = client.delete("/v1/namespaces/poisoned", headers=auth())
    assert forget.status_code == 503
    assert forget.json()["error"] == "store_unavailable"
    assert forget.headers["retry-after"]
    write = client.post("/v1/memories", json={"namespace": "n", "text": "new"}, headers=auth("b"))
    assert write.status_code == 503 and "refuses writes" in write.json()["message"]
    read = client.get(f"/v1/memories/{kept.json()['id']}", headers=auth("b"))
    assert read.status_code == 503 and read.json()["error"] == "store_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable" and "disk gone" in ready.json()["reason"]
    assert client.get("/healthz").status_code == 503
    assert client.get("/livez").status_code == 200

    monkeypatch.undo()
    assert client.get("/readyz").status_code == 200
    write = client.post("/v1/memories", json={"namespace": "n", "text": "new"}, headers=auth("b"))
    assert write.status_code == 201
    got = client.get(f"/v1/memories/{kept.json()['id']}", headers=auth("b"))
    assert got.status_code == 200


def test_ttl_sweep_that_hits_an_unreadable_point_cannot_wedge_writes(client: TestClient) -> None:
    service = service_of(client)
    store = service.store
    assert isinstance(store, EdgeStore)
    plant_poison(store, "acme", "poisoned", service.embedder.dim, expires_ts=1.0)
    with pytest.raises(StoreUnavailable, match="reopened from disk"):
        service.sweep_expired()
    r = client.post("/v1/memories", json={"namespace": "n", "text": "after"}, headers=auth())
    assert r.status_code == 201
    assert client.get("/readyz").status_code == 200


class _FlakySweeps:
    """Stands in for MemoryService: the first sweep fails, the next ones count."""

    def __init__(self) -> None:
        self.sweeps = 0
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.store = self

    def sweep_expired(self) -> int:
        self.sweeps += 1
        if self.sweeps == 1:
            raise StoreUnavailable("the store failed to delete points")
        return 0

    def maintain(self) -> None:  # runs in a worker thread
        if self.sweeps >= 3:
            self.loop.call_soon_threadsafe(self.done.set)


def test_housekeeping_keeps_running_after_a_failed_sweep() -> None:
    async def scenario() -> int:
        flaky = _FlakySweeps()
        task = asyncio.create_task(_housekeeping(flaky, 0.001))  # type: ignore[arg-type]
        await asyncio.wait_for(flaky.done.wait(), timeout=30)
        task.cancel()
        return flaky.sweeps

    assert asyncio.run(scenario()) >= 3
