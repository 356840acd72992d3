"""Job records in Redis: the source of truth for a job's lifecycle.

Celery only carries `(job_id, tenant)`; the request, status, timestamps, progress and
result live here, so an unknown id is a 404 (never an eternal "queued") and a result is
committed at most once: every transition is a compare-and-set on the status, done in one
Lua script (memq.store.lua) together with its status event and its expiry.

`JobStore` is the job's record, index, events and transitions; the bookkeeping around a job
lives beside it, in small stores on the same client and keys that `JobStore` composes:
`store.leases` (memq.store.leases: who holds a job, heartbeats, the reconciler lock),
`store.sessions` (memq.store.sessions), `store.webhooks` (memq.store.webhooks) and
`store.metrics` (memq.store.metrics). Keys: memq.store.keys, which lists every key.

A store is given its terminal hooks when built (`hooks`): a process that can end jobs builds
its store with `memq.broker.job_store`, which wires the webhook queue and the batch line
writer in; a store built without them (a reader, a benchmark) fires nothing.

Events on a job's stream (`JobEvent`): `{"event": "status", "status": ...}` on every
transition (appended atomically with it), `{"event": "token", "tokens": n, "offset": k,
"delta": s}` while generating: the partial text is `text[:offset] + delta` (offset <
len(text) when a stop sequence or a multi-byte character rewrote the tail),
`{"event": "progress", "step", "total", "loss"}` while training, and `{"event": "partial"}`
when a cancelled job's partial output is attached.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
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
    WebhookDelivery,
)
from memq.errors import IdempotencyConflict, QuotaExceeded
from memq.settings import DEFAULT_KEY_PREFIX, CommonSettings
from memq.store import lua
from memq.store.keys import Keys, as_text
from memq.store.leases import DEFAULT_LEASE_TTL_S, LeaseStore
from memq.store.metrics import MetricStore
from memq.store.sessions import SessionStore
from memq.store.webhooks import WebhookStore

log = logging.getLogger("memq.store.jobs")

EVENTS_MAXLEN = 20_000
"""Events kept per job: more than the most tokens one job can stream."""
IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an Idempotency-Key names the job it created."""
TOMBSTONE_S = 30 * 86400
"""How long after its record expired a job still answers 410 (not 404)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _parse_events(found: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for _, entries in found or []:
        for entry_id, fields in entries:
            event: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
            for numeric in ("tokens", "offset", "step", "total"):
                if numeric in event:
                    event[numeric] = int(event[numeric])
            if "loss" in event:
                event["loss"] = float(event["loss"])
            out.append((as_text(entry_id), event))
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


TerminalHook = Callable[[JobRecord], None]
"""What follows a job's end (memq.broker.terminal_hooks builds them): called once per job,
after the terminal transition is committed, by the store that made it."""


class JobStore:
    """Jobs in Redis, with the stores of their bookkeeping (`leases`, `sessions`,
    `webhooks`, `metrics`) on the same client and keys."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_KEY_PREFIX,
        ttl_s: int = 7 * 86400,
        *,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        max_unfinished_age_s: int = 7 * 86400,
        hooks: Sequence[TerminalHook] = (),
    ):
        self.r = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        self.max_unfinished_age_s = max_unfinished_age_s
        self.leases = LeaseStore(client, self.keys, ttl_s=lease_ttl_s)
        self.sessions = SessionStore(client, self.keys)
        self.webhooks = WebhookStore(client, self.keys)
        self.metrics = MetricStore(client, self.keys)
        self._create = client.register_script(lua.CREATE)
        self._create_many = client.register_script(lua.CREATE_MANY)
        self._cas = client.register_script(lua.TRANSITION)
        self._attach_partial = client.register_script(lua.ATTACH_PARTIAL)
        self._terminal_hooks = list(hooks)

    @classmethod
    def from_settings(
        cls,
        settings: CommonSettings,
        *,
        client: redis.Redis | None = None,
        hooks: Sequence[TerminalHook] = (),
    ) -> JobStore:
        """The store as `settings` configure it. A store that can end jobs gets its
        `hooks` from `memq.broker.terminal_hooks` (`memq.broker.job_store` does both)."""
        return cls(
            client if client is not None else redis.Redis.from_url(settings.redis_url),
            prefix=settings.key_prefix,
            ttl_s=settings.job_ttl_seconds,
            lease_ttl_s=settings.lease_ttl_s,
            max_unfinished_age_s=settings.max_queued_s + settings.job_timeout_s,
            hooks=hooks,
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
        outcome, found = as_text(outcome), as_text(found)
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
                tokens=int(progress.get(b"tokens", 0)), text=as_text(progress.get(b"text", b""))
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
                (as_text(member), float(score))
                for member, score in entries
                # entries at the cursor's instant up to its id were listed already
                if after is None or score != after[0] or as_text(member) < after[1]
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
        return JobStatus(as_text(raw)) if raw is not None else None

    def statuses(self, jobs: Sequence[tuple[str, str]]) -> list[JobStatus | None]:
        """The status of each `(tenant, job_id)`, in one round trip."""
        if not jobs:
            return []
        pipe = self.r.pipeline(transaction=False)
        for tenant, job_id in jobs:
            pipe.hget(self.keys.job(tenant, job_id), "status")
        return [JobStatus(as_text(s)) if s is not None else None for s in pipe.execute()]

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
                self.leases.ttl_ms,
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
                if self.leases.leased([(tenant, job_id)])[0]:
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
        attached = self._attach_partial(
            keys=[
                self.keys.job(record.tenant, record.id),
                self.keys.events(record.tenant, record.id),
            ],
            args=[record.model_dump_json(), record.summary().model_dump_json()],
        )
        return bool(attached == 1)

    # unfinished jobs (the reconciler's index) -----------------------------------------------
    def active_jobs(
        self, limit: int = 100_000, *, tenant: str | None = None
    ) -> list[tuple[str, str]]:
        """(tenant, job id) of unfinished jobs (of one tenant, if given), oldest first."""
        if tenant is not None:
            ids: Any = self.r.zrange(self.keys.tenant_active(tenant), 0, limit - 1)
            return [(tenant, as_text(i)) for i in ids]
        members: Any = self.r.zrange(self.keys.active(), 0, limit - 1)
        out = []
        for m in members:
            owner, _, job_id = as_text(m).partition("/")
            out.append((owner, job_id))
        return out

    def drop_active(self, tenant: str, job_id: str) -> None:
        """Remove a job from the unfinished indexes (the reconciler's cleanup of records
        that expired or ended without the index noticing)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(self.keys.active(), self.keys.active_member(tenant, job_id))
        pipe.zrem(self.keys.tenant_active(tenant), job_id)
        pipe.execute()

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
    def _ended(self, record: JobRecord) -> None:
        # Each hook (given at construction) runs after each terminal transition this store
        # makes; only the transition that won the compare-and-set gets here, so once per job
        # whoever ends it.
        # The transition is committed: an observer that fails must neither undo nor repeat it.
        try:
            self.metrics.add(metrics.job_ended(record))
        except redis.RedisError as exc:
            log.warning("job %s: not counted in the metrics (%s)", record.id, exc)
        except Exception:
            log.exception("job %s: not counted in the metrics", record.id)
        for hook in self._terminal_hooks:
            try:
                hook(record)
            except Exception:
                log.exception("job %s: what follows its end (%r) failed", record.id, hook)

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
        created: Any = self._create_many(keys=keys, args=args)
        return [as_text(c) for c in created]

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
