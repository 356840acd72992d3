"""Batches (the OpenAI Batch API over ordinary jobs) in Redis: their state, their lines
written exactly once, and the hook that writes a line when its job ends. The line formats
themselves are pure, in memq.batch_format.

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

Keys (memq.store.keys): `batch`, `batch_lines`, `batch_pending`, `batch_lease`, `batches`
(the tenant's listing), `active_batches` (what the sweeper looks at).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from pydantic import BaseModel

from memq.batch_format import (
    CANCELLED_MESSAGES,
    ERROR,
    LineKind,
    PlannedLine,
    RefusedLine,
    cancelled_line,
    job_line,
    json_line,
    line_job_id,
    lost_line,
    refused_line,
)
from memq.contracts import (
    BATCH_ID_KEY,
    BatchEndpoint,
    BatchError,
    BatchErrors,
    BatchPublic,
    BatchRequestCounts,
    BatchStatus,
    BatchUsage,
)
from memq.settings import DEFAULT_KEY_PREFIX
from memq.store import lua
from memq.store.jobs import JobRecord
from memq.store.keys import Keys, as_text
from memq.webhooks import status_url

LEASE_TTL_S = 15.0
"""How long a gateway holds a batch it works on without renewing (then another takes it)."""


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


def _now() -> int:
    return int(time.time())


class BatchStore:
    """Batches in Redis: the one place that reads and writes their keys."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.r = client
        self.keys = Keys(prefix)
        self._write = self.r.register_script(lua.BATCH_WRITE_LINE)
        self._enqueued = self.r.register_script(lua.BATCH_ENQUEUED)
        self._end_early = self.r.register_script(lua.BATCH_END_EARLY)
        self._move = self.r.register_script(lua.BATCH_MOVE)
        self._lease = self.r.register_script(lua.LEASE)

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
        line = json_line(refused_line(batch_id, refused))
        return self._write_line(tenant, batch_id, "", refused.number, ERROR, line, 0, 0)[0]

    def write_cancelled(self, tenant: str, batch_id: str, planned: PlannedLine, code: str) -> bool:
        """Write the error line of a line whose job was never created (the batch ended
        while it was being created)."""
        job_id = line_job_id(batch_id, planned.number)
        line = cancelled_line(job_id, planned.custom_id, code, CANCELLED_MESSAGES[code])
        written, _ = self._write_line(
            tenant, batch_id, "", planned.number, ERROR, json_line(line), 0, 0
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
        url = status_url(gateway_url, record.id)
        kind, line = job_line(record.public(status_url=url), endpoint, url, code)
        usage = record.result.usage if record.result else None
        written, status = self._write_line(
            record.tenant,
            batch_id,
            record.id,
            0,
            kind,
            json_line(line),
            usage.input_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )
        return BatchStatus(status) if written else None

    def write_lost_line(self, tenant: str, batch_id: str, job_id: str) -> bool:
        line = json_line(lost_line(job_id, None))
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
        return bool(written), as_text(status or b"")

    def pending(self, tenant: str, batch_id: str) -> dict[str, int]:
        """Job id → line number of every line job whose line is not written yet."""
        raw: Any = self.r.hgetall(self.keys.batch_pending(tenant, batch_id))
        return {k.decode(): int(v) for k, v in raw.items()}

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
    """The terminal hook that writes a batch line when its job ends; one of
    `memq.broker.terminal_hooks`, so every process that can end a job has it."""

    def __init__(self, batches: BatchStore, gateway_url: str) -> None:
        self.batches = batches
        self.gateway_url = gateway_url

    def __call__(self, record: JobRecord) -> None:
        if BATCH_ID_KEY in record.request.metadata:
            self.batches.write_job_line(record, self.gateway_url)
