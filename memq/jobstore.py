"""Job records in Redis: the source of truth for a job's lifecycle.

Celery only carries `(job_id, tenant)`; the request, status, timestamps, progress and
result live here, so an unknown id is a 404 (never an eternal "queued") and a result
is committed at most once: every transition is a compare-and-set on the status.

Keys (the tenant is in every key):
    {prefix}:{tenant}:job:{id}            hash: status, record (JobRecord JSON)
    {prefix}:{tenant}:job:{id}:progress   hash: tokens, text
    {prefix}:{tenant}:job:{id}:events     pub/sub channel: progress and status events
    {prefix}:{tenant}:jobs                zset: job ids by creation time
    {prefix}:model                        ModelInfo JSON published by workers
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis

from memq.contracts import (
    ErrorResponse,
    GenerateJobRequest,
    JobProgress,
    JobPublic,
    JobResult,
    JobStatus,
    JobType,
    ModelInfo,
    SummarizeJobRequest,
)

# KEYS[1] = job hash; ARGV[1] = JSON list of allowed current statuses,
# ARGV[2] = new status, ARGV[3] = new record JSON. Returns 1 when applied.
_CAS = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local allowed = cjson.decode(ARGV[1])
for _, s in ipairs(allowed) do
  if s == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'record', ARGV[3])
    return 1
  end
end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._cas = self.r.register_script(_CAS)

    # keys -------------------------------------------------------------------------
    def key(self, tenant: str, job_id: str) -> str:
        return f"{self.prefix}:{tenant}:job:{job_id}"

    def progress_key(self, tenant: str, job_id: str) -> str:
        return f"{self.key(tenant, job_id)}:progress"

    def channel(self, tenant: str, job_id: str) -> str:
        return f"{self.key(tenant, job_id)}:events"

    def index_key(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:jobs"

    # create / read ------------------------------------------------------------------
    def create(
        self, tenant: str, job_id: str, request: GenerateJobRequest | SummarizeJobRequest
    ) -> JobRecord:
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
            self.key(tenant, job_id),
            mapping={"status": record.status.value, "record": record.model_dump_json()},
        )
        pipe.zadd(self.index_key(tenant), {job_id: now.timestamp()})
        pipe.execute()
        return record

    def delete(self, tenant: str, job_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.key(tenant, job_id), self.progress_key(tenant, job_id))
        pipe.zrem(self.index_key(tenant), job_id)
        pipe.execute()

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        raw = self.r.hget(self.key(tenant, job_id), "record")
        if raw is None:
            return None
        record = JobRecord.model_validate_json(raw)
        if record.status == JobStatus.running:
            progress = self.r.hgetall(self.progress_key(tenant, job_id))
            if progress:
                record.progress = JobProgress(
                    tokens=int(progress.get(b"tokens", 0)),
                    text=_text(progress.get(b"text", b"")),
                )
        return record

    # transitions ----------------------------------------------------------------------
    def _transition(self, record: JobRecord, allowed: Iterable[JobStatus], new: JobStatus) -> bool:
        now = utcnow()
        record.status = new
        record.timestamps[new] = now
        applied = self._cas(
            keys=[self.key(record.tenant, record.id)],
            args=[json.dumps([s.value for s in allowed]), new.value, record.model_dump_json()],
        )
        if applied == 1:
            self.publish(record.tenant, record.id, {"event": "status", "status": new.value})
            if new.terminal:
                self.r.expire(self.key(record.tenant, record.id), self.ttl_s)
                self.r.delete(self.progress_key(record.tenant, record.id))
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
        record.error = error
        record.progress = None
        allowed = (JobStatus.queued, JobStatus.running)
        return self._transition(record, allowed, JobStatus.failed)

    def status(self, tenant: str, job_id: str) -> JobStatus | None:
        raw = self.r.hget(self.key(tenant, job_id), "status")
        return JobStatus(_text(raw)) if raw is not None else None

    # progress -------------------------------------------------------------------------
    def set_progress(self, tenant: str, job_id: str, tokens: int, text: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.progress_key(tenant, job_id), mapping={"tokens": tokens, "text": text})
        pipe.expire(self.progress_key(tenant, job_id), self.ttl_s)
        pipe.execute()

    def publish(self, tenant: str, job_id: str, event: dict[str, Any]) -> None:
        self.r.publish(self.channel(tenant, job_id), json.dumps(event))

    # model info -------------------------------------------------------------------------
    def publish_model(self, info: ModelInfo) -> None:
        self.r.set(f"{self.prefix}:model", info.model_dump_json())

    def model_info(self) -> ModelInfo | None:
        raw = self.r.get(f"{self.prefix}:model")
        return ModelInfo.model_validate_json(raw) if raw else None
