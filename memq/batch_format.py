"""The line formats of batches (the OpenAI Batch API over ordinary jobs), pure: reading an
input file into the jobs it asks for (`plan_input`), and the output and error lines
written when they end. A batch's state in Redis is memq.store.batches.

An input line is `{"custom_id", "method": "POST", "url", "body"}`; `plan_input` checks every
line up front, so a line that can never run is refused with its number and what to fix
(`RefusedLine`) and never becomes a job. An output or error line is
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`, its body
exactly what the endpoint answers. Each line's job id derives from the batch id and the
line number (`line_job_id`), so a creation retried after a crash finds the jobs it made.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memq.contracts import (
    CUSTOM_ID_KEY,
    MAX_CUSTOM_ID_CHARS,
    BatchEndpoint,
    JobPublic,
    JobRequest,
    JobStatus,
)
from memq.contracts.openai import chat_body, completion_body, openai_error
from memq.errors import InputNotJsonl, MemqError

LineKind = Literal["o", "e"]
"""Which file a line goes to: output or error."""
OUTPUT: LineKind = "o"
ERROR: LineKind = "e"
JOB_NAMESPACE = uuid.UUID("6f0d1a52-36c4-4a35-9d7d-2c1b7a1f9e31")


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def line_job_id(batch_id: str, number: int) -> str:
    """The job id of input line `number`: the same every time, so a creation retried after a
    crash finds the jobs it made already and makes only the missing ones."""
    return str(uuid.uuid5(JOB_NAMESPACE, f"{batch_id}:{number}"))


# ---------------------------------------------------------------------------- input lines


class BatchRequestLine(BaseModel):
    """One line of a batch input file, as OpenAI defines it."""

    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(min_length=1, max_length=MAX_CUSTOM_ID_CHARS)
    method: Literal["POST"]
    url: str = Field(max_length=64)
    body: dict[str, Any]


@dataclass(frozen=True)
class PlannedLine:
    number: int
    custom_id: str
    job: JobRequest


@dataclass(frozen=True)
class RefusedLine:
    number: int
    custom_id: str | None
    code: str
    message: str
    param: str | None = None


@dataclass
class InputPlan:
    lines: list[PlannedLine] = field(default_factory=list)
    refused: list[RefusedLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.lines) + len(self.refused)


JobBuilder = Callable[[dict[str, Any], str], JobRequest]
"""Turns a line's body (and its custom_id) into the job it runs; raises ValidationError,
ValueError or MemqError for a body the endpoint would refuse."""


def _summary(exc: ValidationError) -> tuple[str, str | None]:
    problems = []
    for e in exc.errors()[:3]:
        where = ".".join(str(p) for p in e.get("loc", ()))
        problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    first = exc.errors()[0].get("loc", ()) if exc.errors() else ()
    return "; ".join(problems), ".".join(str(p) for p in first) or None


def plan_input(
    data: bytes, endpoint: BatchEndpoint, build: JobBuilder, *, max_lines: int
) -> InputPlan:
    """Validate every line of an input file up front. A line that cannot run becomes a
    `RefusedLine` (its line number and what to fix); blank lines are not requests and are
    skipped. Raises InputNotJsonl when the file as a whole is not a batch input."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputNotJsonl(
            "invalid_file",
            f"the input file is not UTF-8 text (byte {exc.start:,} is not): upload a JSONL "
            "file, one JSON request object per line",
        ) from exc
    rows = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not rows:
        raise InputNotJsonl("empty_file", "the input file has no lines: nothing to run")
    if len(rows) > max_lines:
        raise InputNotJsonl(
            "too_many_lines",
            f"the input file has {len(rows):,} lines; a batch takes at most {max_lines:,} "
            "(MEMQ_BATCH_MAX_LINES): split it into several batches",
        )
    plan = InputPlan()
    objects = 0
    first_of: dict[str, int] = {}
    for number, raw in rows:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            plan.refused.append(
                RefusedLine(number, None, "invalid_json", f"line {number} is not JSON: {exc}")
            )
            continue
        if not isinstance(value, dict):
            plan.refused.append(
                RefusedLine(
                    number,
                    None,
                    "invalid_line",
                    f"line {number} is a JSON {type(value).__name__}, not an object with "
                    "`custom_id`, `method`, `url` and `body`",
                )
            )
            continue
        objects += 1
        refused = _plan_line(plan, number, value, endpoint, build, first_of)
        if refused is not None:
            plan.refused.append(refused)
    if objects == 0:
        raise InputNotJsonl(
            "invalid_file",
            "no line of the input file is a JSON object: a batch input is JSONL, one request "
            'object per line ({"custom_id": ..., "method": "POST", "url": ..., "body": {...}})',
            line=rows[0][0],
        )
    return plan


def _plan_line(
    plan: InputPlan,
    number: int,
    value: dict[str, Any],
    endpoint: BatchEndpoint,
    build: JobBuilder,
    first_of: dict[str, int],
) -> RefusedLine | None:
    custom_id = value.get("custom_id")
    named = custom_id if isinstance(custom_id, str) and custom_id else None
    try:
        line = BatchRequestLine.model_validate(value)
    except ValidationError as exc:
        message, param = _summary(exc)
        return RefusedLine(number, named, "invalid_request", f"line {number}: {message}", param)
    if line.url != endpoint.value:
        return RefusedLine(
            number,
            named,
            "invalid_url",
            f"line {number} is for {line.url[:64]!r} but the batch's endpoint is "
            f"{endpoint.value!r}: every line of a batch goes to its endpoint",
            "url",
        )
    if line.custom_id in first_of:
        return RefusedLine(
            number,
            named,
            "duplicate_custom_id",
            f"line {number} repeats custom_id {line.custom_id[:80]!r} of line "
            f"{first_of[line.custom_id]}: custom_ids must be unique within a batch",
            "custom_id",
        )
    first_of[line.custom_id] = number
    try:
        job = build(line.body, line.custom_id)
    except ValidationError as exc:
        message, param = _summary(exc)
        return RefusedLine(
            number, named, "invalid_request", f"line {number}: body: {message}", param
        )
    except MemqError as exc:
        return RefusedLine(number, named, exc.code, f"line {number}: {exc.message}")
    except ValueError as exc:
        return RefusedLine(number, named, "invalid_request", f"line {number}: {exc}")
    plan.lines.append(PlannedLine(number, line.custom_id, job))
    return None


# --------------------------------------------------------------------------- output lines


def request_id(job_id: str) -> str:
    return f"batch_req_{job_id.replace('-', '')}"


def refused_line(batch_id: str, refused: RefusedLine) -> dict[str, Any]:
    """The error-file line of a line refused up front: no request was made."""
    return {
        "id": f"batch_req_{batch_id.removeprefix('batch_')}_{refused.number}",
        "custom_id": refused.custom_id,
        "response": None,
        "error": {
            "code": refused.code,
            "message": refused.message,
            "param": refused.param,
            "line": refused.number,
        },
    }


def cancelled_line(job_id: str, custom_id: str | None, code: str, message: str) -> dict[str, Any]:
    return {
        "id": request_id(job_id),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


CANCELLED_MESSAGES = {
    "batch_cancelled": "the batch was cancelled before this line ran",
    "batch_expired": "the batch's completion window ended before this line finished",
    "cancelled": "the line's job was cancelled on its own (POST /v1/jobs/{id}/cancel, or a "
    "namespace it reads was forgotten)",
}


def job_line(
    job: JobPublic, endpoint: BatchEndpoint, status_url: str, cancelled_code: str
) -> tuple[LineKind, dict[str, Any]]:
    """The output or error line of a line whose job ended: the body is exactly what the
    endpoint answers (a completion, a chat completion, or the job as `GET /v1/jobs/{id}`
    shows it: `job` is that public view, at `status_url`), with memq's retrieval manifest
    and usage."""
    custom_id = job.request.metadata.get(CUSTOM_ID_KEY)
    if job.status == JobStatus.cancelled:
        message = CANCELLED_MESSAGES[cancelled_code]
        return ERROR, cancelled_line(job.id, custom_id, cancelled_code, message)
    if job.status == JobStatus.succeeded and job.result is not None:
        body: dict[str, Any]
        if endpoint == BatchEndpoint.completions:
            body = completion_body(job, job.result.model, status_url)
        elif endpoint == BatchEndpoint.chat_completions:
            body = chat_body(job, job.result.model, status_url)
        else:
            body = job.model_dump(mode="json")
        response = {"status_code": 200, "request_id": job.id, "body": body}
        return OUTPUT, {
            "id": request_id(job.id),
            "custom_id": custom_id,
            "response": response,
            "error": None,
        }
    code = job.error.error if job.error else "job_failed"
    message = job.error.message if job.error else f"the job ended {job.status.value}"
    status = 422 if code in ("prompt_too_long", "validation_error") else 500
    if endpoint == BatchEndpoint.jobs:
        body = job.model_dump(mode="json")
    else:
        body = openai_error(status, code, f"job {job.id} failed: {message}")
    response = {"status_code": status, "request_id": job.id, "body": body}
    return ERROR, {
        "id": request_id(job.id),
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }


def lost_line(job_id: str, custom_id: str | None) -> dict[str, Any]:
    return cancelled_line(
        job_id,
        custom_id,
        "job_lost",
        "the line's job record is gone (expired before the batch finished); run the line again",
    )


# Characters Python's str.splitlines() (and some other readers) take for line breaks, which
# JSON leaves unescaped: escaped, so every reader sees one line per request.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS)


def iter_file(lines: Sequence[bytes]) -> Iterator[bytes]:
    """A file's bytes from its lines, in chunks of about 256 KiB."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= 256 * 1024:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)
