"""OpenAI-compatible Files API: upload a batch input file, read, download, delete, list.

Errors come in OpenAI's shape (`{"error": {message, type, param, code}}`), so the official
client's `files.create / retrieve / content / delete / list` work unmodified."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from gateway.api.deps import Tenant
from gateway.services.files import FileService
from memq.contracts import FileDeleted, FileListResponse, FilePublic, FilePurpose

router = APIRouter(prefix="/v1/files", tags=["files"])

FileId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$", description="The file's id.")]
_errors: dict[int | str, dict[str, Any]] = {
    code: {"description": "OpenAI-style error: {error: {message, type, param, code}}"}
    for code in (401, 404, 409, 413, 422, 429, 503)
}


def get_files(request: Request) -> FileService:
    service: FileService = request.app.state.files
    return service


Files = Annotated[FileService, Depends(get_files)]


@router.post("", response_model=FilePublic, responses=_errors)
def upload_file(
    tenant: Tenant,
    files: Files,
    file: Annotated[UploadFile, File(description="A JSONL batch input file.")],
    purpose: Annotated[str, Form(max_length=64, description="`batch`.")],
) -> FilePublic:
    """Upload a batch input file (at most MEMQ_MAX_FILE_BYTES)."""
    return files.upload(tenant, file.filename, file.file, purpose)


@router.get("", response_model=FileListResponse, responses=_errors)
def list_files(
    tenant: Tenant,
    files: Files,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
    purpose: FilePurpose | None = None,
) -> FileListResponse:
    """The tenant's files (newest first by default); pass `last_id` back as `after`."""
    return files.list_files(tenant, limit=limit, after=after, order=order, purpose=purpose)


@router.get("/{file_id}", response_model=FilePublic, responses=_errors)
def get_file(file_id: FileId, tenant: Tenant, files: Files) -> FilePublic:
    """A file's record (a running batch's output file: the bytes written so far)."""
    return files.get(tenant, file_id)


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={**_errors, 200: {"content": {"application/jsonl": {}}}},
)
def file_content(file_id: FileId, tenant: Tenant, files: Files) -> StreamingResponse:
    """A file's bytes; a running batch's output and error files hold the lines finished so
    far, in input order."""
    chunks: Iterator[bytes] = files.content(tenant, file_id)
    return StreamingResponse(chunks, media_type="application/jsonl")


@router.delete("/{file_id}", response_model=FileDeleted, responses=_errors)
def delete_file(file_id: FileId, tenant: Tenant, files: Files) -> FileDeleted:
    """Delete a file (a running batch's output file only once the batch has finished)."""
    return files.delete(tenant, file_id)
