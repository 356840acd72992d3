"""FileService below HTTP, on a real Redis and a real directory storage: what an upload
refuses, the round trip of a file's bytes, listing, deletion, tenant isolation, and a
batch's output file read while the batch still writes it."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import redis

from gateway.core.config import GatewaySettings
from gateway.services.files import FileInUse, FileNotFound, FileService, FileTooLarge
from gateway.storage import DirectoryStorage
from memq.batch_format import RefusedLine
from memq.contracts import BatchEndpoint, FilePurpose
from memq.errors import InvalidInput
from memq.store.batches import BatchMeta, BatchStore
from memq.store.files import FileRecord, FileRecords

PREFIX = "memq"
LIMIT = 1024 * 1024


@pytest.fixture
def storage(tmp_path: Path) -> DirectoryStorage:
    return DirectoryStorage(tmp_path / "files")


@pytest.fixture
def files(redis_server: str, redis_client: redis.Redis, storage: DirectoryStorage) -> FileService:
    settings = GatewaySettings(
        redis_url=redis_server,
        service_token="t",  # type: ignore[arg-type]
        max_file_bytes=LIMIT,
    )
    return FileService(
        FileRecords(redis_client, PREFIX), storage, BatchStore(redis_client, PREFIX), settings
    )


def upload(files: FileService, data: bytes, tenant: str = "acme", name: str = "in.jsonl") -> str:
    return files.upload(tenant, name, io.BytesIO(data), "batch").id


def test_an_uploaded_file_reads_back_byte_for_byte(files: FileService) -> None:
    data = b'{"custom_id": "a"}\n' * 30_000  # several storage chunks
    file_id = upload(files, data)
    public = files.get("acme", file_id)
    assert (public.bytes, public.filename, public.purpose) == (len(data), "in.jsonl", "batch")
    assert files.read_all("acme", file_id) == data


def test_an_upload_without_a_name_is_labelled_upload_jsonl(files: FileService) -> None:
    public = files.upload("acme", None, io.BytesIO(b"{}\n"), "batch")
    assert public.filename == "upload.jsonl"


def test_a_purpose_other_than_batch_is_refused_before_anything_is_stored(
    files: FileService, storage: DirectoryStorage
) -> None:
    with pytest.raises(InvalidInput, match="purpose `batch`"):
        files.upload("acme", "x.jsonl", io.BytesIO(b"{}\n"), "fine-tune")
    assert files.records.page("acme", limit=10, after=None, newest_first=True, purpose=None) == (
        [],
        False,
    )


def test_a_file_name_longer_than_255_characters_is_refused(files: FileService) -> None:
    with pytest.raises(InvalidInput, match="at most 255"):
        upload(files, b"{}\n", name="x" * 256)


def test_a_file_over_the_size_limit_is_refused_and_leaves_no_record(
    files: FileService,
) -> None:
    with pytest.raises(FileTooLarge, match="MEMQ_MAX_FILE_BYTES"):
        upload(files, b"x" * (LIMIT + 1))
    listed = files.list_files("acme", limit=10, after=None, order="desc", purpose=None)
    assert listed.data == []


def test_another_tenants_file_is_not_found(files: FileService) -> None:
    file_id = upload(files, b"{}\n", tenant="acme")
    with pytest.raises(FileNotFound):
        files.get("beta", file_id)
    with pytest.raises(FileNotFound):
        files.read_all("beta", file_id)
    with pytest.raises(FileNotFound):
        files.delete("beta", file_id)
    assert files.read_all("acme", file_id) == b"{}\n"


def test_files_are_listed_newest_first_in_pages(files: FileService) -> None:
    ids = []
    for n in range(3):
        ids.append(upload(files, b"{}\n", name=f"{n}.jsonl"))
        time.sleep(0.002)  # distinct creation times order the index
    first = files.list_files("acme", limit=2, after=None, order="desc", purpose=None)
    assert [f.id for f in first.data] == [ids[2], ids[1]]
    assert first.has_more and first.last_id == ids[1]
    rest = files.list_files("acme", limit=2, after=first.last_id, order="desc", purpose=None)
    assert ([f.id for f in rest.data], rest.has_more) == ([ids[0]], False)
    oldest = files.list_files("acme", limit=5, after=None, order="asc", purpose=None)
    assert [f.id for f in oldest.data] == ids


def test_a_deleted_file_is_gone_with_its_bytes(
    files: FileService, storage: DirectoryStorage
) -> None:
    file_id = upload(files, b"{}\n")
    assert files.delete("acme", file_id).id == file_id
    with pytest.raises(FileNotFound):
        files.get("acme", file_id)
    with pytest.raises(FileNotFoundError):
        b"".join(storage.read(file_id))
    with pytest.raises(FileNotFound):
        files.delete("acme", file_id)


def batch_with_files(files: FileService, tenant: str = "acme") -> BatchMeta:
    """A running batch whose output and error files are still being written."""
    now = int(time.time())
    meta = BatchMeta(
        id="batch_1",
        tenant=tenant,
        endpoint=BatchEndpoint("/v1/completions"),
        input_file_id="file-in",
        completion_window="24h",
        created_at=now,
        expires_at=now + 86400,
        output_file_id="file-out",
        error_file_id="file-err",
    )
    files.batches.create(meta)
    for file_id in (meta.output_file_id, meta.error_file_id):
        files.records.put(
            FileRecord(
                id=file_id,
                bytes=0,
                created_at=now,
                filename=f"{file_id}.jsonl",
                purpose=FilePurpose.batch_output,
                tenant=tenant,
                batch_id=meta.id,
                stored=False,
            )
        )
    return meta


def test_a_file_its_batch_is_still_writing_cannot_be_deleted(files: FileService) -> None:
    meta = batch_with_files(files)
    with pytest.raises(FileInUse, match="batch_1"):
        files.delete("acme", meta.output_file_id)


def test_a_batch_file_being_written_reads_as_the_lines_written_so_far(
    files: FileService,
) -> None:
    meta = batch_with_files(files)
    assert files.read_all("acme", meta.error_file_id) == b""
    refused = RefusedLine(number=1, custom_id="r1", code="invalid_request", message="bad line")
    assert files.batches.write_refused("acme", meta.id, refused)
    content = files.read_all("acme", meta.error_file_id)
    assert content.count(b"\n") == 1 and b'"r1"' in content
    assert files.get("acme", meta.error_file_id).bytes == len(content)
    assert files.read_all("acme", meta.output_file_id) == b""
