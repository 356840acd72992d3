"""Embedded store durability: an acknowledged write is in the fsynced write-ahead log.

`EdgeStore.wait_durable` fsyncs the WAL (group commit) instead of flushing every segment.
These tests pin the two facts that makes it a power-cut guarantee: what the WAL files hold is
enough to recover every acknowledged write on top of the segments as last flushed, and every
WAL file (and the directory) is fsynced before `wait_durable` returns.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_service.store.base import HasId, SparseVec, StoredPoint, Where
from memory_service.store.edge import WAL_DIR, EdgeStore

DIM = 4


def point(text: str) -> StoredPoint:
    return StoredPoint(
        point_id=str(uuid.uuid4()),
        dense=[1.0, 0.5, 0.0, 0.0],
        sparse=SparseVec([1], [1.0]),
        payload={"tenant": "a", "namespace": "ns", "text": text},
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    edge = EdgeStore(tmp_path / "live" / "qdrant", DIM)
    yield edge
    edge.close()


def test_segments_as_last_flushed_plus_the_synced_wal_recover_every_acknowledged_write(
    store: EdgeStore, tmp_path: Path
) -> None:
    flushed = point("written before the last segment flush")
    store.upsert("a", [flushed])
    store.maintain()  # flushes the segments
    on_disk = tmp_path / "crash" / "qdrant"
    shutil.copytree(store._path, on_disk)  # the segments as a power cut could leave them

    acknowledged = [point(f"acknowledged after the flush {i}") for i in range(3)]
    for p in acknowledged:
        store.upsert("a", [p])
    store.wait_durable()
    # Only what wait_durable synced is newer than the flushed segments: the WAL.
    shutil.rmtree(on_disk / WAL_DIR)
    shutil.copytree(store._path / WAL_DIR, on_disk / WAL_DIR)

    recovered = EdgeStore(on_disk, DIM)
    try:
        ids = [p.point_id for p in [flushed, *acknowledged]]
        found, _ = recovered.scroll("a", Where(must=[HasId(ids)]), limit=10)
        assert sorted(f.point_id for f in found) == sorted(ids)
    finally:
        recovered.close()


def test_wait_durable_fsyncs_every_wal_file_and_the_directory_once_per_group(
    store: EdgeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store.upsert("a", [point("one")])
    store.wait_durable()

    wal = (store._path / WAL_DIR).resolve()
    expected = {str(wal), *(str(f.resolve()) for f in wal.iterdir() if f.is_file())}
    assert set(synced) == expected
    assert len(expected) > 1  # the WAL has files, not just the directory

    synced.clear()
    store.wait_durable()  # nothing applied since: the last sync already covers it
    assert synced == []


def test_without_flush_on_write_nothing_is_fsynced_on_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    store = EdgeStore(tmp_path / "qdrant", DIM, flush_on_write=False)
    try:
        store.upsert("a", [point("one")])
        store.wait_durable()
        assert synced == []
    finally:
        store.close()
