"""Files of the OpenAI-style Files API: where their bytes live and their records in Redis.

A file's *record* (`FileRecord`: the OpenAI File object plus its tenant and, for a batch's
output and error files, the batch that writes it) is a Redis string under
`JobKeys.file(tenant, id)`, listed in the tenant's `JobKeys.files` zset: another tenant's
key simply does not exist, so its file is a 404 like an unknown id.

Its *bytes* live in a `FileStorage`, addressed by the file id alone (ids are made here,
never taken from a client, so a key cannot climb out of the storage root). The storage is
a small interface: `DirectoryStorage` (`MEMQ_FILES_DIR`, default `DATA_DIR/files`) is the
one memq ships; an object store (S3, GCS) implements the same three calls.

A batch's output and error files exist from the moment its lines start running: until
the batch is finalized their bytes are the batch's lines in Redis (memq.batches), then
they are written to the storage once and `stored` is set.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import redis

from memq.contracts import FilePublic, FilePurpose
from memq.jobstore import JobKeys

CHUNK_BYTES = 256 * 1024


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


class FileStorage(Protocol):
    """Where file bytes live. Writes are all or nothing (a reader never sees half a file)."""

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store `chunks` under `key` (replacing what was there); returns the size."""
        ...

    def read(self, key: str) -> Iterator[bytes]:
        """The bytes under `key`, in chunks; FileNotFoundError when there are none."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; nothing happens when it does not exist."""
        ...


class DirectoryStorage:
    """Files in a local directory (`root/ab/<key>`), written to a temporary file, flushed
    to disk and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key[-2:] / key

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return size

    def read(self, key: str) -> Iterator[bytes]:
        handle = self._path(key).open("rb")  # FileNotFoundError before the first chunk

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk

        return chunks()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


class FileRecord(FilePublic):
    """The stored record: the File object plus what the API does not show."""

    tenant: str
    batch_id: str | None = None
    """Set on a batch's output and error files: the batch whose lines they hold."""
    stored: bool = True
    """False while a batch's output file is still being written (its bytes are in Redis)."""

    def public(self) -> FilePublic:
        return FilePublic.model_validate(self.model_dump(exclude={"tenant", "batch_id", "stored"}))


class FileRecords:
    """File records in Redis (one JSON string per file, a zset per tenant for listing)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.keys = JobKeys(prefix)

    def put(self, record: FileRecord, *, only_new: bool = False) -> bool:
        """Write the record (and list it); with `only_new`, only when it does not exist."""
        key = self.keys.file(record.tenant, record.id)
        if only_new:
            if not self.r.set(key, record.model_dump_json(), nx=True):
                return False
        else:
            self.r.set(key, record.model_dump_json())
        # Listed by the exact time it was first written (created_at is whole seconds).
        self.r.zadd(self.keys.files(record.tenant), {record.id: time.time()}, nx=True)
        return True

    def get(self, tenant: str, file_id: str) -> FileRecord | None:
        raw: Any = self.r.get(self.keys.file(tenant, file_id))
        return FileRecord.model_validate_json(raw) if raw is not None else None

    def delete(self, tenant: str, file_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.keys.file(tenant, file_id))
        pipe.zrem(self.keys.files(tenant), file_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def page(
        self,
        tenant: str,
        *,
        limit: int,
        after: str | None = None,
        newest_first: bool = True,
        purpose: FilePurpose | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """A page of the tenant's files and whether more follow; `after` is the last id of
        the previous page (an id the tenant does not have starts from the beginning)."""
        ids = _page_ids(self.r, self.keys.files(tenant), after, newest_first)
        found: list[FileRecord] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            raws: Any = self.r.mget([self.keys.file(tenant, i) for i in chunk])
            for raw in raws:
                if raw is None:
                    continue
                record = FileRecord.model_validate_json(raw)
                if purpose is not None and record.purpose != purpose:
                    continue
                if len(found) == limit:
                    return found, True
                found.append(record)
        return found, False


def _page_ids(client: redis.Redis, index: str, after: str | None, newest_first: bool) -> list[str]:
    """Ids of a zset listing (ordered by score, then id), strictly after `after`."""
    entries: Any = client.zrange(index, 0, -1, desc=newest_first, withscores=True)
    ids = [(m.decode() if isinstance(m, bytes) else m, s) for m, s in entries]
    if after is not None:
        for position, (member, _) in enumerate(ids):
            if member == after:
                return [m for m, _ in ids[position + 1 :]]
    return [m for m, _ in ids]
