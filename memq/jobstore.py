"""Job records in Redis: the source of truth for a job's lifecycle, and the only module
that knows memq's Redis keys.

Celery only carries `(job_id, tenant)`; the request, status, timestamps, progress and
result live here, so an unknown id is a 404 (never an eternal "queued") and a result is
committed at most once: every transition is a compare-and-set on the status, done in one
Lua script together with its status event and its expiry.

Keys (`JobKeys`; the tenant is in every per-job key):
    {prefix}:{tenant}:job:{id}            hash: status, record (JobRecord JSON), summary
                                          (JobSummary JSON, for listings), partial (flag),
                                          webhook (WebhookDelivery JSON: its own field, so
                                          delivery bookkeeping never races a transition)
    {prefix}:{tenant}:job:{id}:progress   hash: tokens, text (while running)
    {prefix}:{tenant}:job:{id}:events     stream: status and token events (SSE replays it)
    {prefix}:{tenant}:job:{id}:lease      string: id of the worker holding the job (expires)
    {prefix}:{tenant}:jobs                zset: job ids by creation time (listing; an id whose
                                          record is gone has expired: 410)
    {prefix}:{tenant}:idem:{sha256}       string: "{job id}|{body hash}" of an Idempotency-Key
    {prefix}:{tenant}:session:{id}        hash: next_turn, summarized_through, summarizing,
                                          job:{job id} → the first turn number of that job
    {prefix}:{tenant}:active              zset: the tenant's unfinished job ids (quotas)
    {prefix}:active                       zset: "{tenant}/{id}" of every unfinished job
    {prefix}:workers                      zset: worker ids by last heartbeat
    {prefix}:reconciler                   string: lock of the worker running the reconciler
    {prefix}:model                        ModelInfo JSON published by workers
    {prefix}:{tenant}:webhook_secret      hash: secret, created_at, previous, previous_until
    {prefix}:metrics                      hash: Prometheus counters and histogram buckets
                                          (memq.metrics), incremented by every process
    {prefix}:{tenant}:adapter:{name}      hash: an adapter's versions (memq.adapters)
    {prefix}:{tenant}:adapters            zset: the tenant's adapter names
    {prefix}:{tenant}:forgotten           hash: namespace → when it was last forgotten

Delivery (see docs/reliability.md): a worker takes a job's *lease* when the broker hands
it the message and renews it while it holds the job; a job that is unfinished, not
waiting in a queue and not leased has lost its worker, and the reconciler sends it again.

Events on a job's stream (`JobEvent`): `{"event": "status", "status": ...}` on every
transition (appended atomically with it) and `{"event": "token", "tokens": n,
"offset": k, "delta": s}` while generating: the partial text is `text[:offset] + delta`
(offset < len(text) when a stop sequence or a multi-byte character rewrote the tail).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio

from memq import metrics
from memq.contracts import (
    ErrorResponse,
    JobProgress,
    JobPublic,
    JobRequest,
    JobResult,
    JobStatus,
    JobSummary,
    JobType,
    ModelInfo,
    WebhookAttempt,
    WebhookDelivery,
)
from memq.errors import IdempotencyConflict, QuotaExceeded
from memq.settings import CommonSettings
from memq.webhooks import ROTATION_OVERLAP_S, WebhookSecret, new_secret

log = logging.getLogger("memq.jobstore")

EVENTS_MAXLEN = 20_000
"""Events kept per job: more than the most tokens one job can stream."""
IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an Idempotency-Key names the job it created."""
TOMBSTONE_S = 30 * 86400
"""How long after its record expired a job still answers 410 (not 404)."""

# KEYS: job hash, events stream, progress hash, lease, global active zset, tenant active zset.
# ARGV: JSON list of allowed current statuses, new status, new record JSON,
#       TTL seconds to set when the new status is terminal (0: none), events maxlen,
#       worker id (start only, "" otherwise), lease TTL ms, active member, job id, summary.
# Returns 1 when applied, 0 when the current status is not allowed, -1 when unknown,
# -2 when another worker holds the job's lease (start only).
_CAS = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local allowed = cjson.decode(ARGV[1])
for _, s in ipairs(allowed) do
  if s == current then
    if ARGV[6] ~= '' then
      local holder = redis.call('GET', KEYS[4])
      if holder and holder ~= ARGV[6] then return -2 end
      redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[7])
    end
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'record', ARGV[3], 'summary', ARGV[10])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
               'event', 'status', 'status', ARGV[2])
    local ttl = tonumber(ARGV[4])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[1], ttl)
      redis.call('EXPIRE', KEYS[2], ttl)
      redis.call('DEL', KEYS[3], KEYS[4])
      redis.call('ZREM', KEYS[5], ARGV[8])
      redis.call('ZREM', KEYS[6], ARGV[9])
    end
    return 1
  end
end
return 0
"""

# KEYS: job hash, tenant index, global active, tenant active, idempotency key.
# ARGV: status, record JSON, created ts, job id, active member, quota (0: none),
#       safety TTL seconds of the unfinished record, summary JSON,
#       body hash ("" when no Idempotency-Key), idempotency TTL s, index retention s.
# Returns {"created", id}, {"quota", ""}, {"same", original id} or {"conflict", original id}.
_CREATE = """
if ARGV[9] ~= '' then
  local seen = redis.call('GET', KEYS[5])
  if seen then
    local sep = string.find(seen, '|', 1, true)
    local original = string.sub(seen, 1, sep - 1)
    if string.sub(seen, sep + 1) == ARGV[9] then return {'same', original} end
    return {'conflict', original}
  end
end
if tonumber(ARGV[6]) > 0 and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then
  return {'quota', ''}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'record', ARGV[2], 'summary', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[11])))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[5], ARGV[4] .. '|' .. ARGV[9], 'EX', ARGV[10])
end
return {'created', ARGV[4]}
"""

# KEYS: job hash, events stream. ARGV: record JSON, summary JSON.
# A cancelled job's partial output is attached once; returns 1 when attached.
_PARTIAL = """
if redis.call('HGET', KEYS[1], 'status') ~= 'cancelled' then return 0 end
if redis.call('HSETNX', KEYS[1], 'partial', '1') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'summary', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 20000, '*', 'event', 'partial')
return 1
"""

# KEYS: job hash. ARGV: WebhookDelivery JSON. Records a pending delivery once per job, and
# only on a record that still exists (HSETNX alone would recreate an expired one, forever).
_WEBHOOK_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'webhook', ARGV[1])
"""

# KEYS: job hash. ARGV: the webhook field as read, its new value. A compare-and-set of the
# field alone: 1 when written, 0 when it changed since it was read, -1 when gone.
_WEBHOOK_UPDATE = """
local current = redis.call('HGET', KEYS[1], 'webhook')
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[2])
return 1
"""

# KEYS: secret hash. ARGV: mode ("get": create when missing; "rotate"), new secret, now
# (ISO 8601), previous_until (ISO 8601, rotate only). Returns the hash's fields.
_WEBHOOK_SECRET = """
if ARGV[1] == 'rotate' then
  local current = redis.call('HGET', KEYS[1], 'secret')
  if current then
    redis.call('HSET', KEYS[1], 'previous', current, 'previous_until', ARGV[4])
  end
  redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'created_at', ARGV[3])
elseif redis.call('HSETNX', KEYS[1], 'secret', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[3])
end
return redis.call('HMGET', KEYS[1], 'secret', 'created_at', 'previous', 'previous_until')
"""

# KEYS: session hash. ARGV: "job:{id}" field, count. Returns the job's first turn number.
_RESERVE_TURNS = """
local first = redis.call('HGET', KEYS[1], ARGV[1])
if first then return tonumber(first) end
local after = redis.call('HINCRBY', KEYS[1], 'next_turn', tonumber(ARGV[2]))
first = after - tonumber(ARGV[2]) + 1
redis.call('HSET', KEYS[1], ARGV[1], first)
return first
"""

# KEYS: session hash. ARGV: claim TTL seconds. The claim is a timestamp field.
_CLAIM_SUMMARY = """
local now = redis.call('TIME')[1]
local held = redis.call('HGET', KEYS[1], 'summarizing')
if held and tonumber(held) > tonumber(now) then return 0 end
redis.call('HSET', KEYS[1], 'summarizing', tonumber(now) + tonumber(ARGV[1]))
return 1
"""

# KEYS: session hash. ARGV: turn. Moves summarized_through forward and drops the claim.
_ADVANCE_SUMMARY = """
local current = tonumber(redis.call('HGET', KEYS[1], 'summarized_through') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'summarized_through', ARGV[1])
end
redis.call('HDEL', KEYS[1], 'summarizing')
return 1
"""

# KEYS: lease. ARGV: worker id, TTL ms, mode ("take": only when free or ours;
# "renew": only when ours; "release": delete when ours). Returns 1 when done.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
  return 0
end
if holder and holder ~= ARGV[1] then return 0 end
if ARGV[3] == 'renew' and not holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


# KEYS: tenant index, global active zset, group hash, then one job hash per job.
# ARGV: created ts, safety TTL s, index retention s, then per job: id, active member,
# record JSON, summary JSON, group value. Creates the jobs that do not exist yet (a retried
# bulk creation makes only what is missing); returns the ids created.
_CREATE_MANY = """
local created = {}
for i = 4, #KEYS do
  local base = 3 + (i - 4) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'status', 'queued', 'record', ARGV[base + 3],
               'summary', ARGV[base + 4])
    redis.call('EXPIRE', KEYS[i], ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[base + 1])
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[base + 2])
    redis.call('HSET', KEYS[3], ARGV[base + 1], ARGV[base + 5])
    created[#created + 1] = ARGV[base + 1]
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[3])))
return created
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _parse_events(found: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for _, entries in found or []:
        for entry_id, fields in entries:
            event: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
            for numeric in ("tokens", "offset", "step", "total"):
                if numeric in event:
                    event[numeric] = int(event[numeric])
            if "loss" in event:
                event["loss"] = float(event["loss"])
            out.append((_text(entry_id), event))
    return out


def encode_cursor(position: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]!r}|{position[1]}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError for a cursor this store did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        score, _, job_id = raw.partition("|")
        value = float(score)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor this service issued") from exc
    if not job_id or value != value:  # NaN
        raise ValueError("not a cursor this service issued")
    return value, job_id


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

    def lease(self, tenant: str, job_id: str) -> str:
        return f"{self.job(tenant, job_id)}:lease"

    def index(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:jobs"

    def session(self, tenant: str, session_id: str) -> str:
        return f"{self.prefix}:{tenant}:session:{session_id}"

    def idempotency(self, tenant: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.prefix}:{tenant}:idem:{digest}"

    def tenant_active(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:active"

    def active(self) -> str:
        return f"{self.prefix}:active"

    @staticmethod
    def active_member(tenant: str, job_id: str) -> str:
        return f"{tenant}/{job_id}"

    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def reconciler(self) -> str:
        return f"{self.prefix}:reconciler"

    def model(self) -> str:
        return f"{self.prefix}:model"

    def api_key(self, key_id: str) -> str:
        """Hash of one API key (`memq.keystore`): digest, tenant, name, created_at."""
        return f"{self.prefix}:apikey:{key_id}"

    def api_keys(self) -> str:
        """Zset of every API key id by creation time."""
        return f"{self.prefix}:apikeys"

    def rate_limits(self) -> str:
        """Prefix of the rate limiter's counters (the `limits` library names the rest)."""
        return f"{self.prefix}:ratelimit"

    def webhook_secret(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:webhook_secret"

    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    # files and batches (memq.files, memq.batches) ------------------------------------------
    def file(self, tenant: str, file_id: str) -> str:
        """String: the file's record (FileRecord JSON); its bytes are in the file storage."""
        return f"{self.prefix}:{tenant}:file:{file_id}"

    def files(self, tenant: str) -> str:
        """Zset: the tenant's file ids by creation time."""
        return f"{self.prefix}:{tenant}:files"

    def batch(self, tenant: str, batch_id: str) -> str:
        """Hash: status, meta (BatchMeta JSON), at:{status} timestamps, counters."""
        return f"{self.prefix}:{tenant}:batch:{batch_id}"

    def batch_lines(self, tenant: str, batch_id: str) -> str:
        """Hash: input line number → its output or error line, each written once."""
        return f"{self.batch(tenant, batch_id)}:lines"

    def batch_pending(self, tenant: str, batch_id: str) -> str:
        """Hash: job id → input line number, of every line job without its line yet."""
        return f"{self.batch(tenant, batch_id)}:pending"

    def batch_lease(self, tenant: str, batch_id: str) -> str:
        """String: the gateway process working on the batch (expires)."""
        return f"{self.batch(tenant, batch_id)}:lease"

    def batches(self, tenant: str) -> str:
        """Zset: the tenant's batch ids by creation time."""
        return f"{self.prefix}:{tenant}:batches"

    def active_batches(self) -> str:
        """Zset: "{tenant}/{id}" of every batch not yet finished (the gateways' sweeper)."""
        return f"{self.prefix}:batches:active"

    # adapters (memq.adapters) ---------------------------------------------------------------
    def adapter(self, tenant: str, name: str) -> str:
        """Hash: v{n} → AdapterVersionRecord JSON, stale:{n} → staleness JSON, job:{id} → the
        version that job made, next → the last version number handed out."""
        return f"{self.prefix}:{tenant}:adapter:{name}"

    def adapters(self, tenant: str) -> str:
        """Zset: the tenant's adapter names by creation time."""
        return f"{self.prefix}:{tenant}:adapters"

    def forgotten_namespaces(self, tenant: str) -> str:
        """Hash: namespace → when it was last forgotten (a training that started before is
        stale as soon as it is registered)."""
        return f"{self.prefix}:{tenant}:forgotten"


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

    engine: str | None = None
    lost_workers: int = 0

    def public(self, status_url: str | None = None) -> JobPublic:
        data = self.model_dump(exclude={"engine", "lost_workers"})
        data["status_url"] = status_url
        return JobPublic.model_validate(data)

    def summary(self) -> JobSummary:
        return JobSummary(
            id=self.id,
            type=self.type,
            status=self.status,
            priority=self.request.priority,
            created_at=self.created_at,
            timestamps=self.timestamps,
            metadata=self.request.metadata,
            replay_of=self.replay_of,
            error=self.error.error if self.error else None,
        )


@dataclass(frozen=True)
class Created:
    """What `create` did: a new job, or (`existing`) the job an Idempotency-Key named."""

    record: JobRecord
    existing: bool = False


@dataclass(frozen=True)
class StartOutcome:
    """What `JobStore.start` decided: run `record`, or skip with `reason`."""

    record: JobRecord | None
    reason: str = ""


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "memq",
        ttl_s: int = 7 * 86400,
        *,
        lease_ttl_s: float = 10.0,
        max_unfinished_age_s: int = 7 * 86400,
    ):
        self.r = client
        self.keys = JobKeys(prefix)
        self.ttl_s = ttl_s
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self.max_unfinished_age_s = max_unfinished_age_s
        self._cas = self.r.register_script(_CAS)
        self._create = self.r.register_script(_CREATE)
        self._lease = self.r.register_script(_LEASE)
        self._partial = self.r.register_script(_PARTIAL)
        self._reserve = self.r.register_script(_RESERVE_TURNS)
        self._claim = self.r.register_script(_CLAIM_SUMMARY)
        self._advance = self.r.register_script(_ADVANCE_SUMMARY)
        self._webhook_begin = self.r.register_script(_WEBHOOK_BEGIN)
        self._webhook_update = self.r.register_script(_WEBHOOK_UPDATE)
        self._webhook_secret = self.r.register_script(_WEBHOOK_SECRET)
        self._terminal_hooks: list[Callable[[JobRecord], None]] = []

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> JobStore:
        return cls(
            redis.Redis.from_url(settings.redis_url),
            prefix=settings.key_prefix,
            ttl_s=settings.job_ttl_seconds,
            lease_ttl_s=settings.lease_ttl_s,
            max_unfinished_age_s=settings.max_queued_s + settings.job_timeout_s,
        )

    def ping(self) -> None:
        self.r.ping()

    # create / read ------------------------------------------------------------------
    def create(
        self,
        tenant: str,
        job_id: str,
        request: JobRequest,
        *,
        quota: int = 0,
        idempotency_key: str | None = None,
        replay_of: str | None = None,
    ) -> Created:
        """Record a queued job.

        Raises QuotaExceeded when the tenant already has `quota` unfinished jobs (0: no
        quota). With an `idempotency_key` seen in the last `IDEMPOTENCY_TTL_S` the job it
        created is returned instead (`existing=True`) when the request is the same, and
        IdempotencyConflict is raised when it differs. An unfinished record expires after
        `max_unfinished_age_s` + `ttl_s` at the latest, so nothing lives forever.
        """
        now = utcnow()
        record = JobRecord(
            id=job_id,
            type=JobType(request.type),
            status=JobStatus.queued,
            tenant=tenant,
            created_at=now,
            timestamps={JobStatus.queued: now},
            request=request,
            replay_of=replay_of,
        )
        body_hash = ""
        if idempotency_key is not None:
            canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True)
            body_hash = hashlib.sha256(canonical.encode()).hexdigest()
        outcome, found = self._create(
            keys=[
                self.keys.job(tenant, job_id),
                self.keys.index(tenant),
                self.keys.active(),
                self.keys.tenant_active(tenant),
                self.keys.idempotency(tenant, idempotency_key or ""),
            ],
            args=[
                record.status.value,
                record.model_dump_json(),
                now.timestamp(),
                job_id,
                self.keys.active_member(tenant, job_id),
                quota,
                self.max_unfinished_age_s + self.ttl_s,
                record.summary().model_dump_json(),
                body_hash,
                IDEMPOTENCY_TTL_S,
                self.index_retention_s,
            ],
        )
        outcome, found = _text(outcome), _text(found)
        if outcome == "quota":
            raise QuotaExceeded(f"tenant {tenant!r} already has {quota} unfinished jobs")
        if outcome == "conflict":
            raise IdempotencyConflict(found)
        if outcome == "same":
            existing = self.get(tenant, found)
            if existing is None:  # expired since: the key is stale, forget it
                self.r.delete(self.keys.idempotency(tenant, idempotency_key or ""))
                return self.create(
                    tenant, job_id, request, quota=quota, idempotency_key=idempotency_key
                )
            return Created(existing, existing=True)
        return Created(record)

    @property
    def index_retention_s(self) -> int:
        """How long a job id stays in its tenant's index: past its record's expiry, so an
        expired job answers 410 rather than 404 for a while."""
        return self.max_unfinished_age_s + self.ttl_s + TOMBSTONE_S

    def delete(self, tenant: str, job_id: str, idempotency_key: str | None = None) -> None:
        """Remove every trace of a job that was never accepted (its dispatch failed)."""
        pipe = self.r.pipeline(transaction=True)
        if idempotency_key is not None:
            pipe.delete(self.keys.idempotency(tenant, idempotency_key))
        pipe.delete(
            self.keys.job(tenant, job_id),
            self.keys.progress(tenant, job_id),
            self.keys.events(tenant, job_id),
            self.keys.lease(tenant, job_id),
        )
        pipe.zrem(self.keys.index(tenant), job_id)
        pipe.zrem(self.keys.tenant_active(tenant), job_id)
        pipe.zrem(self.keys.active(), self.keys.active_member(tenant, job_id))
        pipe.execute()

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.keys.job(tenant, job_id), "record", "webhook")
        pipe.hgetall(self.keys.progress(tenant, job_id))
        (raw, webhook), progress = pipe.execute()
        if raw is None:
            return None
        record = JobRecord.model_validate_json(raw)
        if webhook is not None:
            record.webhook = WebhookDelivery.model_validate_json(webhook)
        if record.status == JobStatus.running and progress:
            record.progress = JobProgress(
                tokens=int(progress.get(b"tokens", 0)), text=_text(progress.get(b"text", b""))
            )
            if b"step" in progress:
                record.progress.step = int(progress[b"step"])
                record.progress.total_steps = int(progress[b"total"])
                record.progress.loss = float(progress[b"loss"])
        return record

    def expired(self, tenant: str, job_id: str) -> bool:
        """True for a job this tenant had whose record has expired (and not for an id the
        tenant never had)."""
        known = self.r.zscore(self.keys.index(tenant), job_id) is not None
        return known and not self.r.exists(self.keys.job(tenant, job_id))

    def list_jobs(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        statuses: Sequence[JobStatus] = (),
        types: Sequence[JobType] = (),
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[list[JobSummary], str | None]:
        """The tenant's jobs, newest first, filtered; `cursor` continues a listing.
        Raises ValueError for a cursor this store did not issue."""
        high: float | str = f"({created_before.timestamp()}" if created_before else "+inf"
        low: float | str = created_after.timestamp() if created_after else "-inf"
        after = decode_cursor(cursor) if cursor else None
        if after is not None:
            high = after[0]
        found: list[JobSummary] = []
        offset, page = 0, max(limit * 2, 50)
        while True:
            entries: Any = self.r.zrevrangebyscore(
                self.keys.index(tenant), high, low, start=offset, num=page, withscores=True
            )
            offset += len(entries)
            candidates = [
                (_text(member), float(score))
                for member, score in entries
                # entries at the cursor's instant up to its id were listed already
                if after is None or score != after[0] or _text(member) < after[1]
            ]
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in candidates:
                pipe.hget(self.keys.job(tenant, job_id), "summary")
            for (job_id, score), raw in zip(candidates, pipe.execute(), strict=True):
                if raw is None:
                    continue  # expired
                summary = JobSummary.model_validate_json(raw)
                if (statuses and summary.status not in statuses) or (
                    types and summary.type not in types
                ):
                    continue
                found.append(summary)
                if len(found) == limit:
                    return found, encode_cursor((score, job_id))
            if len(entries) < page:
                return found, None

    def status(self, tenant: str, job_id: str) -> JobStatus | None:
        raw: Any = self.r.hget(self.keys.job(tenant, job_id), "status")
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
    def _transition(
        self,
        record: JobRecord,
        allowed: Iterable[JobStatus],
        new: JobStatus,
        *,
        worker: str = "",
    ) -> int:
        now = utcnow()
        record.status = new
        record.timestamps.setdefault(new, now)  # a redelivery keeps the first `running`
        tenant, job_id = record.tenant, record.id
        result: int = self._cas(
            keys=[
                self.keys.job(tenant, job_id),
                self.keys.events(tenant, job_id),
                self.keys.progress(tenant, job_id),
                self.keys.lease(tenant, job_id),
                self.keys.active(),
                self.keys.tenant_active(tenant),
            ],
            args=[
                json.dumps([s.value for s in allowed]),
                new.value,
                record.model_dump_json(),
                self.ttl_s if new.terminal else 0,
                EVENTS_MAXLEN,
                worker,
                self.lease_ttl_ms,
                self.keys.active_member(tenant, job_id),
                job_id,
                record.summary().model_dump_json(),
            ],
        )
        if result == 1 and new.terminal:
            self._ended(record)
        return result

    def start(
        self, tenant: str, job_id: str, *, worker: str, engine: str, max_lost: int = 0
    ) -> StartOutcome:
        """queued → running, or running → running when the job's worker was lost (a
        redelivery keeps the first `running` timestamp and counts the loss). Takes the
        job's lease for `worker`.

        Skips (record None) a job that is unknown, finished, cancelled or leased by
        another worker. A job whose worker was lost `max_lost` times (0: no limit) fails
        with `worker_lost` instead of running again.
        """
        record = self.get(tenant, job_id)
        if record is None:
            return StartOutcome(None, "unknown (expired or never accepted)")
        if record.status.terminal:
            return StartOutcome(None, f"already {record.status.value}")
        if record.status == JobStatus.running and record.worker != worker:
            record.lost_workers += 1
            if max_lost and record.lost_workers >= max_lost:
                if self.leased([(tenant, job_id)])[0]:
                    return StartOutcome(None, "held by another worker")
                error = ErrorResponse(
                    error="worker_lost",
                    message=f"the job's worker was lost {record.lost_workers} times (killed or "
                    "crashed while running it); it is not retried again",
                )
                self.fail(record, error)
                return StartOutcome(None, f"failed after {record.lost_workers} lost workers")
        record.attempts += 1
        record.engine = engine
        record.worker = worker
        record.progress = None
        applied = self._transition(
            record, (JobStatus.queued, JobStatus.running), JobStatus.running, worker=worker
        )
        if applied == 1:
            return StartOutcome(record)
        if applied == -2:
            return StartOutcome(None, "held by another worker")
        return StartOutcome(None, "changed while starting (cancelled or finished)")

    def requeue(self, record: JobRecord) -> bool:
        """running → queued: the job will run again on purpose (a planned retry), so its
        next start does not count as a lost worker."""
        record.progress = None
        return self._transition(record, (JobStatus.running,), JobStatus.queued) == 1

    def succeed(self, record: JobRecord, result: JobResult) -> bool:
        """running → succeeded; False when another attempt already committed or it was
        cancelled, so a result is never committed twice."""
        record.result = result
        record.progress = None
        return self._transition(record, (JobStatus.running,), JobStatus.succeeded) == 1

    def fail(self, record: JobRecord, error: ErrorResponse) -> bool:
        """queued/running → failed; False when the job already ended."""
        record.error = error
        record.progress = None
        allowed = (JobStatus.queued, JobStatus.running)
        return self._transition(record, allowed, JobStatus.failed) == 1

    def cancel(self, tenant: str, job_id: str) -> JobRecord | None:
        """queued/running → cancelled. Returns the cancelled record, or None when the job
        is unknown or already ended (the caller tells which with `status`)."""
        record = self.get(tenant, job_id)
        if record is None or record.status.terminal:
            return None
        record.progress = None
        allowed = (JobStatus.queued, JobStatus.running)
        if self._transition(record, allowed, JobStatus.cancelled) == 1:
            return record
        return None

    def attach_partial(self, record: JobRecord, result: JobResult) -> bool:
        """Keep what a cancelled job had generated (once; the job stays cancelled)."""
        current = self.get(record.tenant, record.id)
        if current is None or current.status != JobStatus.cancelled:
            return False
        record = current
        record.result = result
        record.progress = None
        attached = self._partial(
            keys=[
                self.keys.job(record.tenant, record.id),
                self.keys.events(record.tenant, record.id),
            ],
            args=[record.model_dump_json(), record.summary().model_dump_json()],
        )
        return bool(attached == 1)

    # chat sessions --------------------------------------------------------------------------
    def reserve_turns(self, tenant: str, session_id: str, job_id: str, count: int) -> int:
        """The first of `count` consecutive turn numbers for a job's messages in a session;
        the same numbers again for the same job (a redelivery writes the same turns)."""
        first: Any = self._reserve(
            keys=[self.keys.session(tenant, session_id)], args=[f"job:{job_id}", count]
        )
        return int(first)

    def session_state(self, tenant: str, session_id: str) -> tuple[int, int]:
        """(turns so far, turns covered by the rolling summary)."""
        raw: Any = self.r.hmget(
            self.keys.session(tenant, session_id), "next_turn", "summarized_through"
        )
        return int(raw[0] or 0), int(raw[1] or 0)

    def claim_summary(self, tenant: str, session_id: str, ttl_s: int) -> bool:
        """One rolling-summary job per session at a time (the claim expires by itself)."""
        key = self.keys.session(tenant, session_id)
        claimed: Any = self._claim(keys=[key], args=[ttl_s])
        return bool(claimed)

    def summarized(self, tenant: str, session_id: str, through_turn: int) -> None:
        """The rolling summary now covers turns up to `through_turn` (never moves back)."""
        self._advance(keys=[self.keys.session(tenant, session_id)], args=[through_turn])

    def forget_session(self, tenant: str, session_id: str) -> None:
        self.r.delete(self.keys.session(tenant, session_id))

    # leases and workers -------------------------------------------------------------------
    def take_lease(self, tenant: str, job_id: str, worker: str) -> bool:
        """Lease a job for `worker` unless another worker holds it."""
        lease_key = self.keys.lease(tenant, job_id)
        return bool(self._lease(keys=[lease_key], args=[worker, self.lease_ttl_ms, "take"]))

    def renew_leases(self, jobs: Sequence[tuple[str, str]], worker: str) -> list[bool]:
        """Extend `worker`'s leases; False for a job whose lease it no longer holds."""
        if not jobs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tenant, job_id in jobs:
            self._lease(
                keys=[self.keys.lease(tenant, job_id)],
                args=[worker, self.lease_ttl_ms, "renew"],
                client=pipe,
            )
        return [bool(v) for v in pipe.execute()]

    def release_lease(self, tenant: str, job_id: str, worker: str) -> None:
        self._lease(keys=[self.keys.lease(tenant, job_id)], args=[worker, 0, "release"])

    def leased(self, jobs: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each job is held by a live worker, in one round trip."""
        if not jobs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tenant, job_id in jobs:
            pipe.exists(self.keys.lease(tenant, job_id))
        return [bool(v) for v in pipe.execute()]

    def heartbeat(self, worker: str) -> None:
        self.r.zadd(self.keys.workers(), {worker: time.time()})

    def forget_worker(self, worker: str) -> None:
        self.r.zrem(self.keys.workers(), worker)

    def live_workers(self, within_s: float) -> list[str]:
        """Workers whose last heartbeat is at most `within_s` old (older ones are pruned)."""
        cutoff = time.time() - within_s
        pipe = self.r.pipeline(transaction=False)
        pipe.zremrangebyscore(self.keys.workers(), "-inf", f"({cutoff - 3600}")
        pipe.zrangebyscore(self.keys.workers(), cutoff, "+inf")
        return [_text(w) for w in pipe.execute()[1]]

    def active_jobs(
        self, limit: int = 100_000, *, tenant: str | None = None
    ) -> list[tuple[str, str]]:
        """(tenant, job id) of unfinished jobs (of one tenant, if given), oldest first."""
        if tenant is not None:
            ids: Any = self.r.zrange(self.keys.tenant_active(tenant), 0, limit - 1)
            return [(tenant, _text(i)) for i in ids]
        members: Any = self.r.zrange(self.keys.active(), 0, limit - 1)
        out = []
        for m in members:
            owner, _, job_id = _text(m).partition("/")
            out.append((owner, job_id))
        return out

    def drop_active(self, tenant: str, job_id: str) -> None:
        """Remove a job from the unfinished indexes (the reconciler's cleanup of records
        that expired or ended without the index noticing)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(self.keys.active(), self.keys.active_member(tenant, job_id))
        pipe.zrem(self.keys.tenant_active(tenant), job_id)
        pipe.execute()

    def unfinished_count(self, tenant: str) -> int:
        count: Any = self.r.zcard(self.keys.tenant_active(tenant))
        return int(count)

    def try_lock_reconciler(self, worker: str, ttl_s: float) -> bool:
        """Hold the reconciler lock for `ttl_s` (taken or renewed); one worker reconciles."""
        lease_key = self.keys.reconciler()
        return bool(self._lease(keys=[lease_key], args=[worker, int(ttl_s * 1000), "take"]))

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

    def publish_progress(
        self, tenant: str, job_id: str, *, step: int, total: int, loss: float
    ) -> None:
        """A training step: a `progress` event (`step`, `total`, `loss`) on the job's stream
        and its latest progress (consolidation jobs; generation reports tokens)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xadd(
            self.keys.events(tenant, job_id),
            {"event": "progress", "step": step, "total": total, "loss": repr(loss)},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        key = self.keys.progress(tenant, job_id)
        pipe.hset(key, mapping={"step": step, "total": total, "loss": repr(loss)})
        pipe.expire(key, self.ttl_s)
        pipe.expire(self.keys.events(tenant, job_id), self.ttl_s)
        pipe.execute()

    def read_events(
        self, tenant: str, job_id: str, after: str = "0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after the stream id `after` ("0": from the start), waiting up to
        `block_ms` for the first one when given. Returns (event id, event) pairs."""
        found: Any = self.r.xread({self.keys.events(tenant, job_id): after}, block=block_ms)
        return _parse_events(found)

    async def read_events_async(
        self,
        client: redis.asyncio.Redis,
        tenant: str,
        job_id: str,
        after: str = "0",
        block_ms: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """`read_events` on an asyncio client (the gateway's SSE streams wait here)."""
        found: Any = await client.xread({self.keys.events(tenant, job_id): after}, block=block_ms)
        return _parse_events(found)

    # model info -------------------------------------------------------------------------
    def publish_model(self, info: ModelInfo) -> None:
        self.r.set(self.keys.model(), info.model_dump_json())

    def model_info(self) -> ModelInfo | None:
        raw: Any = self.r.get(self.keys.model())
        return ModelInfo.model_validate_json(raw) if raw else None

    # job ends: metrics and hooks ----------------------------------------------------------
    def on_terminal(self, hook: Callable[[JobRecord], None]) -> None:
        """Call `hook(record)` after each terminal transition this store makes. Only the
        transition that won the compare-and-set calls it, so once per job whoever ends it."""
        self._terminal_hooks.append(hook)

    def _ended(self, record: JobRecord) -> None:
        # The transition is committed: an observer that fails must neither undo nor repeat it.
        try:
            self.add_metrics(metrics.job_ended(record))
        except redis.RedisError as exc:
            log.warning("job %s: not counted in the metrics (%s)", record.id, exc)
        except Exception:
            log.exception("job %s: not counted in the metrics", record.id)
        for hook in self._terminal_hooks:
            try:
                hook(record)
            except Exception:
                log.exception("job %s: what follows its end (%r) failed", record.id, hook)

    # webhooks -----------------------------------------------------------------------------
    def begin_webhook(self, tenant: str, job_id: str, url: str) -> bool:
        """Record the job's webhook as pending; False when it was already recorded (the
        caller queues the delivery only on True) or the job's record is gone."""
        pending = WebhookDelivery(url=url).model_dump_json()
        return bool(self._webhook_begin(keys=[self.keys.job(tenant, job_id)], args=[pending]))

    def webhook(self, tenant: str, job_id: str) -> WebhookDelivery | None:
        raw: Any = self.r.hget(self.keys.job(tenant, job_id), "webhook")
        return WebhookDelivery.model_validate_json(raw) if raw is not None else None

    def record_webhook_attempt(
        self, tenant: str, job_id: str, attempt: WebhookAttempt, *, delivered: bool, gave_up: bool
    ) -> WebhookDelivery | None:
        """Append one delivery attempt (and its outcome) to the job's webhook; rewrites only
        that field, retrying when it changed meanwhile. None when the job's record is gone."""
        key = self.keys.job(tenant, job_id)
        while True:
            raw: Any = self.r.hget(key, "webhook")
            if raw is None:
                return None
            delivery = WebhookDelivery.model_validate_json(raw)
            delivery.attempts.append(attempt)
            if delivered:
                delivery.delivered_at = attempt.at
            delivery.gave_up = gave_up
            written = self._webhook_update(keys=[key], args=[raw, delivery.model_dump_json()])
            if written == 1:
                return delivery
            if written == -1:
                return None

    def webhook_secret(self, tenant: str, *, rotate: bool = False) -> WebhookSecret:
        """The tenant's webhook signing secret, created on first use. `rotate` replaces it;
        the replaced one keeps signing for `ROTATION_OVERLAP_S` (one previous secret is kept:
        rotating twice in that window retires the older one at once)."""
        now = utcnow()
        until = datetime.fromtimestamp(now.timestamp() + ROTATION_OVERLAP_S, UTC)
        found: Any = self._webhook_secret(
            keys=[self.keys.webhook_secret(tenant)],
            args=["rotate" if rotate else "get", new_secret(), now.isoformat(), until.isoformat()],
        )
        secret, created_at, _, previous_until = (_text(v) if v else None for v in found)
        valid_until = datetime.fromisoformat(previous_until) if previous_until else None
        assert secret is not None and created_at is not None  # the script set both
        return WebhookSecret(
            secret=secret,
            created_at=datetime.fromisoformat(created_at),
            previous_valid_until=valid_until if valid_until and valid_until > now else None,
        )

    def webhook_signing_secrets(self, tenant: str) -> list[str]:
        """The secrets a delivery is signed with: the current one, and the one it replaced
        while the rotation overlap lasts."""
        current = self.webhook_secret(tenant)
        secrets = [current.secret]
        if current.previous_valid_until is not None:
            previous: Any = self.r.hget(self.keys.webhook_secret(tenant), "previous")
            if previous:
                secrets.append(_text(previous))
        return secrets

    # metrics ------------------------------------------------------------------------------
    def add_metrics(self, update: metrics.MetricUpdate) -> None:
        """Count `update` into the shared metrics (atomically: a scrape sees all or none)."""
        if not update:
            return
        key = self.keys.metrics()
        pipe = self.r.pipeline(transaction=True)
        for field, amount in update.counts.items():
            pipe.hincrby(key, field, amount)
        for field, value in update.sums.items():
            pipe.hincrbyfloat(key, field, value)
        pipe.execute()

    def read_metrics(self) -> dict[str, float]:
        raw: Any = self.r.hgetall(self.keys.metrics())
        return {_text(k): float(v) for k, v in raw.items()}

    def queue_depths(self, queues: Mapping[str, str]) -> dict[str, int]:
        """Messages waiting in each queue (label → Redis list of the queue)."""
        pipe = self.r.pipeline(transaction=False)
        for queue in queues.values():
            pipe.llen(queue)
        return {label: int(n) for label, n in zip(queues, pipe.execute(), strict=True)}

    def unfinished_total(self) -> int:
        count: Any = self.r.zcard(self.keys.active())
        return int(count)

    # bulk creation and cancellation (batches) ----------------------------------------------
    def create_many(
        self, tenant: str, jobs: Sequence[tuple[str, JobRequest, str]], *, group: str
    ) -> list[str]:
        """Record queued jobs `(job id, request, group value)` in one round trip, skipping
        ids that exist already (so a retried batch creation makes only what is missing), and
        set `group[job id] = group value` for each one created. They are in the tenant's
        listing and in the unfinished index the reconciler watches, but not in the tenant's
        unfinished-job quota (a batch is bounded by its own limits). Returns the ids created."""
        if not jobs:
            return []
        now = utcnow()
        keys = [self.keys.index(tenant), self.keys.active(), group]
        args: list[Any] = [now.timestamp(), self.max_unfinished_age_s + self.ttl_s]
        args.append(self.index_retention_s)
        for job_id, request, value in jobs:
            record = JobRecord(
                id=job_id,
                type=JobType(request.type),
                status=JobStatus.queued,
                tenant=tenant,
                created_at=now,
                timestamps={JobStatus.queued: now},
                request=request,
            )
            keys.append(self.keys.job(tenant, job_id))
            args += [
                job_id,
                self.keys.active_member(tenant, job_id),
                record.model_dump_json(),
                record.summary().model_dump_json(),
                value,
            ]
        created: Any = self.r.register_script(_CREATE_MANY)(keys=keys, args=args)
        return [_text(c) for c in created]

    def cancel_queued(self, tenant: str, job_id: str) -> JobRecord | None:
        """queued → cancelled, leaving a running job alone. Returns the cancelled record, or
        None when the job is unknown, running or finished."""
        record = self.get(tenant, job_id)
        if record is None or record.status != JobStatus.queued:
            return None
        record.progress = None
        if self._transition(record, (JobStatus.queued,), JobStatus.cancelled) == 1:
            return record
        return None
