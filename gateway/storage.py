"""Where the bytes of the Files API live (their records are in Redis: memq.store.files).

A `FileStorage` addresses bytes by the file id alone: ids are made by the gateway
(`gateway.services.files.new_file_id`), never taken from a client, so a key cannot climb
out of the storage root. The interface is three calls: `DirectoryStorage`
(`MEMQ_FILES_DIR`, default `DATA_DIR/files`) is the one memq ships; an object store (S3,
GCS) implements the same three.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

CHUNK_BYTES = 256 * 1024


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
