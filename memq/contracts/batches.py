"""Files and batches: the OpenAI Batch API (field names and shapes as the `openai` client
parses them; times are Unix seconds there, as in OpenAI's API).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from memq.contracts.common import StrictModel

BATCH_ID_KEY = "batch_id"
"""Job metadata of a batch line's job: the batch it belongs to."""
CUSTOM_ID_KEY = "custom_id"
"""Job metadata of a batch line's job: the line's `custom_id`."""
MAX_CUSTOM_ID_CHARS = 512
MAX_COMPLETION_WINDOW_S = 7 * 86400


class FilePurpose(StrEnum):
    batch = "batch"
    batch_output = "batch_output"


class FilePublic(BaseModel):
    """OpenAI's File object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int = Field(description="Size; of a batch's output file, the lines written so far.")
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[FilePublic]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class BatchEndpoint(StrEnum):
    """What every line of a batch is sent to."""

    completions = "/v1/completions"
    chat_completions = "/v1/chat/completions"
    jobs = "/v1/jobs"


class BatchStatus(StrEnum):
    validating = "validating"
    failed = "failed"
    in_progress = "in_progress"
    finalizing = "finalizing"
    completed = "completed"
    expired = "expired"
    cancelling = "cancelling"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (
            BatchStatus.failed,
            BatchStatus.completed,
            BatchStatus.expired,
            BatchStatus.cancelled,
        )


def completion_window_seconds(window: str) -> int:
    """`24h`, `90m`, `30s` → seconds; ValueError for anything else or out of bounds."""
    unit = {"s": 1, "m": 60, "h": 3600}.get(window[-1:])
    if unit is None or not window[:-1].isdigit() or len(window) > 10:
        raise ValueError(
            f"completion_window {window[:20]!r} is not a duration: write `24h` (OpenAI's value) "
            "or a number of hours, minutes or seconds such as `2h`, `90m`, `30s`"
        )
    seconds = int(window[:-1]) * unit
    if not 1 <= seconds <= MAX_COMPLETION_WINDOW_S:
        raise ValueError(
            f"completion_window {window!r} is {seconds:,} s; it must be 1 s to 7 days "
            f"({MAX_COMPLETION_WINDOW_S:,} s)"
        )
    return seconds


def _valid_window(v: str) -> str:
    completion_window_seconds(v)
    return v


BatchMetadata = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(
        max_length=16,
        description="Up to 16 labels (keys up to 64 characters, values up to 512), as OpenAI.",
    ),
]


class BatchCreate(StrictModel):
    input_file_id: str = Field(
        min_length=1, max_length=64, description="A file uploaded with purpose `batch`."
    )
    endpoint: BatchEndpoint = Field(description="Where every line of the file is sent.")
    completion_window: Annotated[str, AfterValidator(_valid_window)] = Field(
        default="24h",
        max_length=10,
        description="Lines not finished this long after the batch was created are expired: "
        "`24h` (OpenAI's only value) or any `<n>h`, `<n>m`, `<n>s` up to 7 days.",
    )
    metadata: BatchMetadata | None = None


class BatchRequestCounts(BaseModel):
    total: int = Field(description="Lines in the input file (refused ones included).")
    completed: int = Field(description="Lines in the output file.")
    failed: int = Field(
        description="Lines in the error file (refused, failed, cancelled, expired)."
    )


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = Field(default=None, description="1-based line of the input file.")


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchInputTokensDetails(BaseModel):
    cached_tokens: int = 0


class BatchOutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: BatchInputTokensDetails = Field(default_factory=BatchInputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: BatchOutputTokensDetails = Field(
        default_factory=BatchOutputTokensDetails
    )
    total_tokens: int = 0


class BatchPublic(BaseModel):
    """OpenAI's Batch object."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: BatchEndpoint
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = Field(
        default=None, description="Readable while the batch runs: the lines finished so far."
    )
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: BatchUsage | None = None


class BatchListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchPublic]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
