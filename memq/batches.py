"""Batches (the OpenAI Batch API over ordinary jobs): the input and output line formats, the
batch state in Redis, and the hook that writes a line when its job ends.

Life of a batch (`BatchStatus`):

    validating ──► in_progress ──► finalizing ──► completed
        │  │            │  └─ (window over: unfinished jobs cancelled) ─► finalizing ─► expired
        │  │            └─ cancel: queued jobs cancelled, running ones finish ─► cancelling ─►
        │  │                                                      finalizing ─► cancelled
        │  └─ cancel ──► cancelling (creation stops; lines not yet created are cancelled)
        └─ not JSONL at all / too many lines ──► failed

Exactly once, by construction: every input line has one slot in the batch's `lines` hash
(its line number), written once (HSETNX) with its output or error line; a line's job is in
the batch's `pending` hash (job id → line number) until its line is written, in the same
Lua script. Whoever sees a job end writes its line: the process that ended it (the terminal
hook of `JobStore`, in a worker, the reconciler or the gateway), and, for a process killed
between the two, the gateways' sweeper, which finds pending jobs that already ended. When a
line empties `pending` of a batch whose jobs are all created, the same script moves the
batch to `finalizing`; a gateway then writes the output and error files from `lines`,
in input order, and moves it to its outcome. The files are built from `lines` only, so a
line can be in them at most once, and the counts are the files' line counts.

Keys (`memq.jobstore.JobKeys`): `batch`, `batch_lines`, `batch_pending`, `batch_lease`,
`batches` (the tenant's listing), `active_batches` (what the sweeper looks at).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memq.contracts import (
    BATCH_ID_KEY,
    CUSTOM_ID_KEY,
    MAX_CUSTOM_ID_CHARS,
    BatchEndpoint,
    BatchError,
    BatchErrors,
    BatchPublic,
    BatchRequestCounts,
    BatchStatus,
    BatchUsage,
    JobRequest,
    JobStatus,
)
from memq.errors import InputNotJsonl, MemqError
from memq.jobstore import JobKeys, JobRecord
from memq.openai_protocol import chat_body, completion_body, openai_error

log = logging.getLogger("memq.batches")

LineKind = Literal["o", "e"]
"""Which file a line goes to: output or error."""
OUTPUT: LineKind = "o"
ERROR: LineKind = "e"
LEASE_TTL_S = 15.0
"""How long a gateway holds a batch it works on without renewing (then another takes it)."""
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
    record: JobRecord, endpoint: BatchEndpoint, status_url: str, cancelled_code: str
) -> tuple[LineKind, dict[str, Any]]:
    """The output or error line of a line whose job ended: the body is exactly what the
    endpoint answers (a completion, a chat completion, or the job), with memq's retrieval
    manifest and usage."""
    custom_id = record.request.metadata.get(CUSTOM_ID_KEY)
    if record.status == JobStatus.cancelled:
        message = CANCELLED_MESSAGES[cancelled_code]
        return ERROR, cancelled_line(record.id, custom_id, cancelled_code, message)
    job = record.public(status_url=status_url)
    if record.status == JobStatus.succeeded and record.result is not None:
        body: dict[str, Any]
        if endpoint == BatchEndpoint.completions:
            body = completion_body(job, record.result.model, status_url)
        elif endpoint == BatchEndpoint.chat_completions:
            body = chat_body(job, record.result.model, status_url)
        else:
            body = job.model_dump(mode="json")
        response = {"status_code": 200, "request_id": record.id, "body": body}
        return OUTPUT, {
            "id": request_id(record.id),
            "custom_id": custom_id,
            "response": response,
            "error": None,
        }
    code = record.error.error if record.error else "job_failed"
    message = record.error.message if record.error else f"the job ended {record.status.value}"
    status = 422 if code in ("prompt_too_long", "validation_error") else 500
    if endpoint == BatchEndpoint.jobs:
        body = job.model_dump(mode="json")
    else:
        body = openai_error(status, code, f"job {record.id} failed: {message}")
    response = {"status_code": status, "request_id": record.id, "body": body}
    return ERROR, {
        "id": request_id(record.id),
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


def _json_line(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS)


# ------------------------------------------------------------------------------ state


class BatchMeta(BaseModel):
    """What a batch is, written once when it is created."""

    id: str
    tenant: str
    endpoint: BatchEndpoint
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    output_file_id: str
    error_file_id: str
    model: str | None = None


@dataclass(frozen=True)
class BatchState:
    """A batch as Redis holds it."""

    meta: BatchMeta
    status: BatchStatus
    at: dict[str, int]
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_bytes: int = 0
    error_bytes: int = 0
    enqueued: bool = False
    files: bool = False
    outcome: str | None = None
    errors: list[BatchError] = field(default_factory=list)

    def public(self) -> BatchPublic:
        m = self.meta
        return BatchPublic(
            id=m.id,
            endpoint=m.endpoint,
            errors=BatchErrors(data=self.errors) if self.errors else None,
            input_file_id=m.input_file_id,
            completion_window=m.completion_window,
            status=self.status,
            output_file_id=m.output_file_id if self.files else None,
            error_file_id=m.error_file_id if self.files else None,
            created_at=m.created_at,
            in_progress_at=self.at.get("in_progress"),
            expires_at=m.expires_at,
            finalizing_at=self.at.get("finalizing"),
            completed_at=self.at.get("completed"),
            failed_at=self.at.get("failed"),
            expired_at=self.at.get("expired"),
            cancelling_at=self.at.get("cancelling"),
            cancelled_at=self.at.get("cancelled"),
            request_counts=BatchRequestCounts(
                total=self.total, completed=self.completed, failed=self.failed
            ),
            metadata=m.metadata,
            model=m.model,
            usage=BatchUsage(
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                total_tokens=self.input_tokens + self.output_tokens,
            ),
        )


_COUNTERS = (
    "total",
    "completed",
    "failed",
    "input_tokens",
    "output_tokens",
    "output_bytes",
    "error_bytes",
)


def _state(raw: dict[bytes, bytes]) -> BatchState:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    errors = fields.get("errors")
    return BatchState(
        meta=BatchMeta.model_validate_json(fields["meta"]),
        status=BatchStatus(fields["status"]),
        at={k[3:]: int(v) for k, v in fields.items() if k.startswith("at:")},
        enqueued=fields.get("enqueued") == "1",
        files=fields.get("files") == "1",
        outcome=fields.get("outcome"),
        errors=[BatchError.model_validate(e) for e in json.loads(errors)] if errors else [],
        **{name: int(fields.get(name, 0)) for name in _COUNTERS},
    )


# Moves a batch whose jobs are all created and whose lines are all written to finalizing.
_FINALIZE_IF_DONE = """
local function finalize_if_done(batch, pending, now)
  local status = redis.call('HGET', batch, 'status')
  if redis.call('HGET', batch, 'enqueued') == '1'
     and (status == 'in_progress' or status == 'cancelling')
     and redis.call('HLEN', pending) == 0 then
    redis.call('HSET', batch, 'status', 'finalizing')
    redis.call('HSETNX', batch, 'at:finalizing', now)
    return 'finalizing'
  end
  return status
end
"""

# KEYS: batch, lines, pending. ARGV: job id ("" for a line without a job), line number
# (used when the job id is ""), kind, line JSON, input tokens, output tokens, now.
# Returns {1 when written (0: written before, not one of the batch's jobs, or the batch is
# gone), the batch's status after it}.
_WRITE_LINE = (
    _FINALIZE_IF_DONE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local number = ARGV[2]
if ARGV[1] ~= '' then
  number = redis.call('HGET', KEYS[3], ARGV[1])
  if not number then return {0, redis.call('HGET', KEYS[1], 'status')} end
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if redis.call('HSETNX', KEYS[2], number, ARGV[3] .. ARGV[4]) == 0 then
  return {0, finalize_if_done(KEYS[1], KEYS[3], ARGV[7])}
end
local size = string.len(ARGV[4]) + 1
if ARGV[3] == 'o' then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
  redis.call('HINCRBY', KEYS[1], 'output_bytes', size)
else
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
  redis.call('HINCRBY', KEYS[1], 'error_bytes', size)
end
redis.call('HINCRBY', KEYS[1], 'input_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'output_tokens', ARGV[6])
return {1, finalize_if_done(KEYS[1], KEYS[3], ARGV[7])}
"""
)

# KEYS: batch, pending. ARGV: now. Every job is created: validating → in_progress.
_ENQUEUED = (
    _FINALIZE_IF_DONE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
redis.call('HSET', KEYS[1], 'enqueued', '1')
if redis.call('HGET', KEYS[1], 'status') == 'validating' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress')
  redis.call('HSETNX', KEYS[1], 'at:in_progress', ARGV[1])
end
return finalize_if_done(KEYS[1], KEYS[2], ARGV[1])
"""
)

# KEYS: batch, pending. ARGV: now, outcome ("cancelled" or "expired"). A cancel moves a
# validating or in_progress batch to cancelling; an expiry only records its outcome.
# Returns the status after it ("" when the batch is gone).
_END_EARLY = (
    _FINALIZE_IF_DONE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status ~= 'validating' and status ~= 'in_progress' then return status end
redis.call('HSETNX', KEYS[1], 'outcome', ARGV[2])
if ARGV[2] == 'cancelled' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling')
  redis.call('HSETNX', KEYS[1], 'at:cancelling', ARGV[1])
end
return finalize_if_done(KEYS[1], KEYS[2], ARGV[1])
"""
)

# KEYS: batch. ARGV: allowed statuses (JSON), new status, now. Returns 1 when moved.
_MOVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
for _, s in ipairs(cjson.decode(ARGV[1])) do
  if s == status then
    redis.call('HSET', KEYS[1], 'status', ARGV[2])
    redis.call('HSETNX', KEYS[1], 'at:' .. ARGV[2], ARGV[3])
    return 1
  end
end
return 0
"""

# KEYS: lease. ARGV: owner, TTL ms, mode ("take", "renew", "release").
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 1
end
if holder and holder ~= ARGV[1] then return 0 end
if ARGV[3] == 'renew' and not holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def _now() -> int:
    return int(time.time())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class BatchStore:
    """Batches in Redis: the one place that reads and writes their keys."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.keys = JobKeys(prefix)
        self._write = self.r.register_script(_WRITE_LINE)
        self._enqueued = self.r.register_script(_ENQUEUED)
        self._end_early = self.r.register_script(_END_EARLY)
        self._move = self.r.register_script(_MOVE)
        self._lease = self.r.register_script(_LEASE)

    # create / read ------------------------------------------------------------------------
    def create(self, meta: BatchMeta) -> None:
        key = self.keys.batch(meta.tenant, meta.id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "status": BatchStatus.validating.value,
                "meta": meta.model_dump_json(),
                "at:validating": meta.created_at,
            },
        )
        # Listed by the exact creation time (created_at is whole seconds, as OpenAI's).
        now = time.time()
        pipe.zadd(self.keys.batches(meta.tenant), {meta.id: now})
        pipe.zadd(self.keys.active_batches(), {f"{meta.tenant}/{meta.id}": now})
        pipe.execute()

    def get(self, tenant: str, batch_id: str) -> BatchState | None:
        raw: Any = self.r.hgetall(self.keys.batch(tenant, batch_id))
        return _state(raw) if raw else None

    def page(
        self, tenant: str, *, limit: int, after: str | None = None
    ) -> tuple[list[BatchState], bool]:
        """The tenant's batches, newest first, strictly after the batch id `after`."""
        index = self.keys.batches(tenant)
        high: float | str = "+inf"
        after_score: float | None = None
        if after is not None:
            after_score = self.r.zscore(index, after)
            if after_score is not None:
                high = after_score
        found: list[BatchState] = []
        offset = 0
        while True:
            entries: Any = self.r.zrevrangebyscore(
                index, high, "-inf", start=offset, num=limit + 50, withscores=True
            )
            offset += len(entries)
            for member, score in entries:
                batch_id = member.decode()
                if after_score is not None and score == after_score and batch_id >= str(after):
                    continue
                state = self.get(tenant, batch_id)
                if state is None:
                    continue
                if len(found) == limit:
                    return found, True
                found.append(state)
            if len(entries) < limit + 50:
                return found, False

    def active(self) -> list[tuple[str, str]]:
        """(tenant, batch id) of every batch not finished yet, oldest first."""
        members: Any = self.r.zrange(self.keys.active_batches(), 0, -1)
        out = []
        for m in members:
            tenant, _, batch_id = m.decode().partition("/")
            out.append((tenant, batch_id))
        return out

    # planning ---------------------------------------------------------------------------
    def planned(self, tenant: str, batch_id: str, total: int, *, with_files: bool) -> None:
        """The input file was read: `total` lines; the output and error files exist."""
        key = self.keys.batch(tenant, batch_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, "total", total)
        if with_files:
            pipe.hset(key, "files", "1")
        pipe.execute()

    def fail(self, tenant: str, batch_id: str, errors: Sequence[BatchError]) -> bool:
        """validating (or cancelled while validating) → failed with `errors`: the input file
        cannot be a batch."""
        payload = json.dumps([e.model_dump() for e in errors])
        self.r.hset(self.keys.batch(tenant, batch_id), "errors", payload)
        allowed = (BatchStatus.validating, BatchStatus.cancelling)
        moved = self.move(tenant, batch_id, allowed, BatchStatus.failed)
        if moved:
            self.r.zrem(self.keys.active_batches(), f"{tenant}/{batch_id}")
        return moved

    def enqueued(self, tenant: str, batch_id: str) -> BatchStatus | None:
        """Every line's job is created: validating → in_progress (→ finalizing when every
        line is written already)."""
        status = self._enqueued(
            keys=[self.keys.batch(tenant, batch_id), self.keys.batch_pending(tenant, batch_id)],
            args=[_now()],
        )
        return BatchStatus(status.decode()) if status else None

    def end_early(
        self, tenant: str, batch_id: str, outcome: Literal["cancelled", "expired"]
    ) -> BatchStatus | None:
        """Record that the batch ends before all its lines ran (a cancel moves it to
        cancelling). The first outcome recorded wins. Returns the status after it."""
        status = self._end_early(
            keys=[self.keys.batch(tenant, batch_id), self.keys.batch_pending(tenant, batch_id)],
            args=[_now(), outcome],
        )
        return BatchStatus(status.decode()) if status else None

    def move(
        self, tenant: str, batch_id: str, allowed: Sequence[BatchStatus], new: BatchStatus
    ) -> bool:
        moved = self._move(
            keys=[self.keys.batch(tenant, batch_id)],
            args=[json.dumps([s.value for s in allowed]), new.value, _now()],
        )
        return bool(moved == 1)

    # lines ------------------------------------------------------------------------------
    def write_refused(self, tenant: str, batch_id: str, refused: RefusedLine) -> bool:
        """Write the error line of a line refused up front (once)."""
        line = _json_line(refused_line(batch_id, refused))
        return self._write_line(tenant, batch_id, "", refused.number, ERROR, line, 0, 0)[0]

    def write_cancelled(self, tenant: str, batch_id: str, planned: PlannedLine, code: str) -> bool:
        """Write the error line of a line whose job was never created (the batch ended
        while it was being created)."""
        job_id = line_job_id(batch_id, planned.number)
        line = cancelled_line(job_id, planned.custom_id, code, CANCELLED_MESSAGES[code])
        written, _ = self._write_line(
            tenant, batch_id, "", planned.number, ERROR, _json_line(line), 0, 0
        )
        return written

    def write_job_line(
        self, record: JobRecord, gateway_url: str, *, endpoint: BatchEndpoint | None = None
    ) -> BatchStatus | None:
        """Write the line of a batch job that ended (once; a second call writes nothing).
        Returns the batch's status after the write, None when nothing was written."""
        batch_id = record.request.metadata.get(BATCH_ID_KEY)
        if batch_id is None:
            return None
        key = self.keys.batch(record.tenant, batch_id)
        found: Any = self.r.hmget(key, "meta", "outcome")
        raw_meta, outcome = found
        if raw_meta is None:
            return None
        if endpoint is None:
            endpoint = BatchMeta.model_validate_json(raw_meta).endpoint
        code = "cancelled"
        if outcome is not None:
            code = "batch_cancelled" if outcome == b"cancelled" else "batch_expired"
        status_url = f"{gateway_url.rstrip('/')}/v1/jobs/{record.id}"
        kind, line = job_line(record, endpoint, status_url, code)
        usage = record.result.usage if record.result else None
        written, status = self._write_line(
            record.tenant,
            batch_id,
            record.id,
            0,
            kind,
            _json_line(line),
            usage.input_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )
        return BatchStatus(status) if written else None

    def write_lost_line(self, tenant: str, batch_id: str, job_id: str) -> bool:
        line = _json_line(lost_line(job_id, None))
        return self._write_line(tenant, batch_id, job_id, 0, ERROR, line, 0, 0)[0]

    def _write_line(
        self,
        tenant: str,
        batch_id: str,
        job_id: str,
        number: int,
        kind: LineKind,
        line: str,
        input_tokens: int,
        output_tokens: int,
    ) -> tuple[bool, str]:
        """Write one line once: (written, the batch's status after it)."""
        found: Any = self._write(
            keys=[
                self.keys.batch(tenant, batch_id),
                self.keys.batch_lines(tenant, batch_id),
                self.keys.batch_pending(tenant, batch_id),
            ],
            args=[job_id, number, kind, line, input_tokens, output_tokens, _now()],
        )
        written, status = found
        return bool(written), _text(status or b"")

    def pending(self, tenant: str, batch_id: str) -> dict[str, int]:
        """Job id → line number of every line job whose line is not written yet."""
        raw: Any = self.r.hgetall(self.keys.batch_pending(tenant, batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    def written_numbers(self, tenant: str, batch_id: str) -> set[int]:
        raw: Any = self.r.hkeys(self.keys.batch_lines(tenant, batch_id))
        return {int(k) for k in raw}

    def lines(self, tenant: str, batch_id: str, kind: LineKind) -> list[bytes]:
        """The written lines of one file (output or error), in input order, each ending in
        a newline."""
        found: list[tuple[int, bytes]] = []
        key = self.keys.batch_lines(tenant, batch_id)
        for number, value in self.r.hscan_iter(key, count=1000):
            if value[:1] == kind.encode():
                found.append((int(number), value[1:] + b"\n"))
        found.sort()
        return [line for _, line in found]

    # finalizing -------------------------------------------------------------------------
    def finish(self, tenant: str, batch_id: str, outcome: BatchStatus) -> bool:
        """finalizing → its outcome (completed, cancelled or expired)."""
        return self.move(tenant, batch_id, (BatchStatus.finalizing,), outcome)

    def clean_up(self, tenant: str, batch_id: str) -> None:
        """A finished batch: drop its lines (they are in its files now) and stop watching it."""
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(
            self.keys.batch_lines(tenant, batch_id), self.keys.batch_pending(tenant, batch_id)
        )
        pipe.zrem(self.keys.active_batches(), f"{tenant}/{batch_id}")
        pipe.execute()

    # leases -----------------------------------------------------------------------------
    def take_lease(self, tenant: str, batch_id: str, owner: str) -> bool:
        return self._lease_op(tenant, batch_id, owner, "take")

    def renew_lease(self, tenant: str, batch_id: str, owner: str) -> bool:
        return self._lease_op(tenant, batch_id, owner, "renew")

    def release_lease(self, tenant: str, batch_id: str, owner: str) -> None:
        self._lease_op(tenant, batch_id, owner, "release")

    def _lease_op(self, tenant: str, batch_id: str, owner: str, mode: str) -> bool:
        done = self._lease(
            keys=[self.keys.batch_lease(tenant, batch_id)],
            args=[owner, int(LEASE_TTL_S * 1000), mode],
        )
        return bool(done == 1)


class BatchLines:
    """The terminal hook (`JobStore.on_terminal`) that writes a batch line when its job ends,
    registered by the gateway and by every worker."""

    def __init__(self, batches: BatchStore, gateway_url: str) -> None:
        self.batches = batches
        self.gateway_url = gateway_url

    def __call__(self, record: JobRecord) -> None:
        if BATCH_ID_KEY in record.request.metadata:
            self.batches.write_job_line(record, self.gateway_url)


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
