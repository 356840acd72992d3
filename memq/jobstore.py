"""Job records in Redis: the source of truth for a job's lifecycle, and the only module
that knows memq's Redis keys.

Celery only carries `(job_id, tenant)`; the request, status, timestamps, progress and
result live here, so an unknown id is a 404 (never an eternal "queued") and a result is
committed at most once: every transition is a compare-and-set on the status, done in one
Lua script together with its status event and its expiry.

Keys (`JobKeys`; the tenant is in every per-job key):
    {prefix}:{tenant}:job:{id}            hash: status, record (JobRecord JSON)
    {prefix}:{tenant}:job:{id}:progress   hash: tokens, text (while running)
    {prefix}:{tenant}:job:{id}:events     stream: status and token events (SSE replays it)
    {prefix}:{tenant}:jobs                zset: job ids by creation time (listing)
    {prefix}:model                        ModelInfo JSON published by workers

Events on a job's stream (`JobEvent`): `{"event": "status", "status": ...}` on every
transition (appended atomically with it) and `{"event": "token", "tokens": n,
"offset": k, "delta": s}` while generating: the partial text is `text[:offset] + delta`
(offset < len(text) when a stop sequence or a multi-byte character rewrote the tail).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from memq.contracts import (
    ErrorResponse,
    JobProgress,
    JobPublic,
    JobRequest,
    JobResult,
    JobStatus,
    JobType,
    ModelInfo,
)

EVENTS_MAXLEN = 20_000
"""Events kept per job: more than the most tokens one job can stream."""

# KEYS: job hash, events stream, progress hash.
# ARGV: JSON list of allowed current statuses, new status, new record JSON,
#       TTL seconds to set when the new status is terminal (0: none), events maxlen.
# Returns 1 when applied, 0 when the current status is not allowed, -1 when unknown.
_CAS = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local allowed = cjson.decode(ARGV[1])
for _, s in ipairs(allowed) do
  if s == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'record', ARGV[3])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
               'event', 'status', 'status', ARGV[2])
    local ttl = tonumber(ARGV[4])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[1], ttl)
      redis.call('EXPIRE', KEYS[2], ttl)
      redis.call('DEL', KEYS[3])
    end
    return 1
  end
end
return 0
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class JobKeys:
    """The key schema, written once."""

    prefix: str

    def job(self, tenant: str, job_id: str) -> str:
        return f"{self.prefix}:{tenant}:job:{job_id}"

    def progress(self, tenant: str, job_id: str) -> str:
        return f"{self.job(tenant, job_id)}:progress"

    def events(self, tenant: str, job_id: str) -> str:
        return f"{self.job(tenant, job_id)}:events"

    def index(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:jobs"

    def model(self) -> str:
        return f"{self.prefix}:model"


@dataclass(frozen=True)
class TokenUpdate:
    """One job's partial output, as the progress publisher hands it over."""

    tenant: str
    job_id: str
    tokens: int
    text: str
    offset: int
    delta: str


class JobRecord(JobPublic):
    """The stored job: the public view plus bookkeeping the API does not show."""

    attempts: int = 0
    engine: str | None = None

    def public(self, status_url: str | None = None) -> JobPublic:
        data = self.model_dump(exclude={"attempts", "engine"})
        data["status_url"] = status_url
        return JobPublic.model_validate(data)


class JobStore:
    def __init__(self, client: redis.Redis, prefix: str = "memq", ttl_s: int = 7 * 86400):
        self.r = client
        self.keys = JobKeys(prefix)
        self.ttl_s = ttl_s
        self._cas = self.r.register_script(_CAS)

    def ping(self) -> None:
        self.r.ping()

    # create / read ------------------------------------------------------------------
    def create(self, tenant: str, job_id: str, request: JobRequest) -> JobRecord:
        now = utcnow()
        record = JobRecord(
            id=job_id,
            type=JobType(request.type),
            status=JobStatus.queued,
            tenant=tenant,
            created_at=now,
            timestamps={JobStatus.queued: now},
            request=request,
        )
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.keys.job(tenant, job_id),
            mapping={"status": record.status.value, "record": record.model_dump_json()},
        )
        pipe.zadd(self.keys.index(tenant), {job_id: now.timestamp()})
        pipe.execute()
        return record

    def delete(self, tenant: str, job_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(
            self.keys.job(tenant, job_id),
            self.keys.progress(tenant, job_id),
            self.keys.events(tenant, job_id),
        )
        pipe.zrem(self.keys.index(tenant), job_id)
        pipe.execute()

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.job(tenant, job_id), "record")
        pipe.hgetall(self.keys.progress(tenant, job_id))
        raw, progress = pipe.execute()
        if raw is None:
            return None
        record = JobRecord.model_validate_json(raw)
        if record.status == JobStatus.running and progress:
            record.progress = JobProgress(
                tokens=int(progress.get(b"tokens", 0)), text=_text(progress.get(b"text", b""))
            )
        return record

    def status(self, tenant: str, job_id: str) -> JobStatus | None:
        raw = self.r.hget(self.keys.job(tenant, job_id), "status")
        return JobStatus(_text(raw)) if raw is not None else None

    def statuses(self, jobs: Sequence[tuple[str, str]]) -> list[JobStatus | None]:
        """The status of each `(tenant, job_id)`, in one round trip."""
        if not jobs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tenant, job_id in jobs:
            pipe.hget(self.keys.job(tenant, job_id), "status")
        return [JobStatus(_text(s)) if s is not None else None for s in pipe.execute()]

    # transitions ----------------------------------------------------------------------
    def _transition(self, record: JobRecord, allowed: Iterable[JobStatus], new: JobStatus) -> bool:
        now = utcnow()
        record.status = new
        record.timestamps[new] = now
        applied = self._cas(
            keys=[
                self.keys.job(record.tenant, record.id),
                self.keys.events(record.tenant, record.id),
                self.keys.progress(record.tenant, record.id),
            ],
            args=[
                json.dumps([s.value for s in allowed]),
                new.value,
                record.model_dump_json(),
                self.ttl_s if new.terminal else 0,
                EVENTS_MAXLEN,
            ],
        )
        return bool(applied == 1)

    def start(self, tenant: str, job_id: str, engine: str) -> JobRecord | None:
        """queued → running (or running → running on redelivery after a worker died).

        Returns None when the job must not run: unknown, cancelled or already finished.
        """
        record = self.get(tenant, job_id)
        if record is None or record.status.terminal:
            return None
        record.attempts += 1
        record.engine = engine
        record.progress = None
        if self._transition(record, (JobStatus.queued, JobStatus.running), JobStatus.running):
            return record
        return None

    def succeed(self, record: JobRecord, result: JobResult) -> bool:
        """running → succeeded; False when another attempt already committed or it was
        cancelled, so a result is never committed twice."""
        record.result = result
        record.progress = None
        return self._transition(record, (JobStatus.running,), JobStatus.succeeded)

    def fail(self, record: JobRecord, error: ErrorResponse) -> bool:
        """queued/running → failed; False when the job already ended."""
        record.error = error
        record.progress = None
        return self._transition(record, (JobStatus.queued, JobStatus.running), JobStatus.failed)

    def cancel(self, tenant: str, job_id: str) -> JobRecord | None:
        """queued/running → cancelled. Returns the cancelled record, or None when the job
        is unknown or already ended (the caller tells which with `status`)."""
        record = self.get(tenant, job_id)
        if record is None or record.status.terminal:
            return None
        record.progress = None
        if self._transition(record, (JobStatus.queued, JobStatus.running), JobStatus.cancelled):
            return record
        return None

    # progress and events ------------------------------------------------------------------
    def publish_tokens(self, updates: Sequence[TokenUpdate]) -> None:
        """Append token events and set each job's latest progress, in one round trip."""
        if not updates:
            return
        pipe = self.r.pipeline(transaction=False)
        latest: dict[tuple[str, str], TokenUpdate] = {}
        for u in updates:
            pipe.xadd(
                self.keys.events(u.tenant, u.job_id),
                {"event": "token", "tokens": u.tokens, "offset": u.offset, "delta": u.delta},
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
            latest[(u.tenant, u.job_id)] = u
        for (tenant, job_id), u in latest.items():
            key = self.keys.progress(tenant, job_id)
            pipe.hset(key, mapping={"tokens": u.tokens, "text": u.text})
            pipe.expire(key, self.ttl_s)
            pipe.expire(self.keys.events(tenant, job_id), self.ttl_s)
        pipe.execute()

    def read_events(
        self, tenant: str, job_id: str, after: str = "0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after the stream id `after` ("0": from the start), waiting up to
        `block_ms` for the first one when given. Returns (event id, event) pairs."""
        found: Any = self.r.xread({self.keys.events(tenant, job_id): after}, block=block_ms)
        out: list[tuple[str, dict[str, Any]]] = []
        for _, entries in found or []:
            for entry_id, fields in entries:
                event: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
                for numeric in ("tokens", "offset"):
                    if numeric in event:
                        event[numeric] = int(event[numeric])
                out.append((_text(entry_id), event))
        return out

    # model info -------------------------------------------------------------------------
    def publish_model(self, info: ModelInfo) -> None:
        self.r.set(self.keys.model(), info.model_dump_json())

    def model_info(self) -> ModelInfo | None:
        raw = self.r.get(self.keys.model())
        return ModelInfo.model_validate_json(raw) if raw else None
