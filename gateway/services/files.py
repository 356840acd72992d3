"""Files: upload (size-limited), read, download, delete and list a tenant's files.

Uploaded files are batch inputs (`purpose=batch`); a batch's output and error files are
made by the batch (memq.store.batches) and readable while it runs. Records are in Redis
(memq.store.files), bytes in the file storage (gateway/storage.py)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from gateway.core.config import GatewaySettings
from gateway.storage import CHUNK_BYTES, FileStorage
from memq.batch_format import ERROR, OUTPUT, iter_file
from memq.contracts import FileDeleted, FileListResponse, FilePublic, FilePurpose
from memq.errors import GatewayError, InvalidInput, NotFound
from memq.store.batches import BatchStore
from memq.store.files import FileRecord, FileRecords

log = logging.getLogger("memq.gateway.files")

MAX_FILENAME_CHARS = 255


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


class FileNotFound(NotFound):
    code = "file_not_found"


class FileTooLarge(GatewayError):
    status_code = 413
    code = "file_too_large"


class FileInUse(GatewayError):
    status_code = 409
    code = "file_in_use"


class FileService:
    def __init__(
        self,
        records: FileRecords,
        storage: FileStorage,
        batches: BatchStore,
        settings: GatewaySettings,
    ) -> None:
        self.records = records
        self.storage = storage
        self.batches = batches
        self.settings = settings

    def upload(self, tenant: str, filename: str | None, data: BinaryIO, purpose: str) -> FilePublic:
        """Store an uploaded batch input file: at most MEMQ_MAX_FILE_BYTES."""
        if purpose != FilePurpose.batch:
            raise InvalidInput(
                f"purpose {purpose[:40]!r} is not one memq stores: upload batch input files "
                "with purpose `batch`"
            )
        name = filename or "upload.jsonl"
        if len(name) > MAX_FILENAME_CHARS:
            raise InvalidInput(
                f"the file name is {len(name):,} characters; at most {MAX_FILENAME_CHARS} "
                "(it is only a label: rename the file)"
            )
        file_id = new_file_id()
        limit = self.settings.max_file_bytes

        def chunks() -> Iterator[bytes]:
            size = 0
            while chunk := data.read(CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(
                        f"the file is larger than {limit:,} bytes (MEMQ_MAX_FILE_BYTES); "
                        "split it into several batches"
                    )
                yield chunk

        size = self.storage.write(file_id, chunks())
        record = FileRecord(
            id=file_id,
            bytes=size,
            created_at=int(time.time()),
            filename=name,
            purpose=FilePurpose.batch,
            tenant=tenant,
        )
        self.records.put(record)
        log.info("file %s uploaded (%d bytes)", file_id, size)
        return record.public()

    def record(self, tenant: str, file_id: str) -> FileRecord:
        record = self.records.get(tenant, file_id)
        if record is None:
            raise FileNotFound(f"no file {file_id!r} for this API key's tenant")
        return record

    def get(self, tenant: str, file_id: str) -> FilePublic:
        record = self.record(tenant, file_id)
        if not record.stored:
            record.bytes = self._live_size(record)
        return record.public()

    def list_files(
        self, tenant: str, *, limit: int, after: str | None, order: str, purpose: FilePurpose | None
    ) -> FileListResponse:
        found, more = self.records.page(
            tenant, limit=limit, after=after, newest_first=order == "desc", purpose=purpose
        )
        data = [self.get(tenant, r.id) if not r.stored else r.public() for r in found]
        return FileListResponse(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    def content(self, tenant: str, file_id: str) -> Iterator[bytes]:
        """The file's bytes; a batch's output or error file while the batch runs holds the
        lines finished so far, in input order."""
        record = self.record(tenant, file_id)
        if not record.stored:
            lines = self._live_lines(record)
            current = self.records.get(tenant, file_id)
            if current is None or not current.stored:
                return iter_file(lines)
        try:
            return self.storage.read(file_id)
        except FileNotFoundError as exc:
            raise FileNotFound(
                f"file {file_id!r} has no content any more (it was deleted)"
            ) from exc

    def read_all(self, tenant: str, file_id: str) -> bytes:
        return b"".join(self.content(tenant, file_id))

    def delete(self, tenant: str, file_id: str) -> FileDeleted:
        record = self.record(tenant, file_id)
        if not record.stored:
            raise FileInUse(
                f"file {file_id} is being written by batch {record.batch_id}; delete it once "
                "the batch has finished (or cancel the batch)"
            )
        if not self.records.delete(tenant, file_id):
            raise FileNotFound(f"no file {file_id!r} for this API key's tenant")
        self.storage.delete(file_id)
        log.info("file %s deleted", file_id)
        return FileDeleted(id=file_id)

    def _is_output(self, record: FileRecord) -> bool | None:
        state = self.batches.get(record.tenant, record.batch_id or "")
        if state is None:
            return None
        return state.meta.output_file_id == record.id

    def _live_size(self, record: FileRecord) -> int:
        state = self.batches.get(record.tenant, record.batch_id or "")
        if state is None:
            return record.bytes
        return state.output_bytes if state.meta.output_file_id == record.id else state.error_bytes

    def _live_lines(self, record: FileRecord) -> list[bytes]:
        is_output = self._is_output(record)
        if is_output is None:
            return []
        kind = OUTPUT if is_output else ERROR
        return self.batches.lines(record.tenant, record.batch_id or "", kind)
