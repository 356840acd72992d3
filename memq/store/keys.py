"""Every Redis key memq writes, named once (`Keys`); no other module spells a key.

Every key starts with the prefix (`MEMQ_KEY_PREFIX`, default "memq"); every per-tenant key
carries the tenant right after it, so another tenant's record is a key that does not exist.

Jobs (memq.store.jobs):
    {prefix}:{tenant}:job:{id}            hash: status, record (JobRecord JSON), summary
                                          (JobSummary JSON, for listings), partial (flag),
                                          webhook (WebhookDelivery JSON: its own field, so
                                          delivery bookkeeping never races a transition)
    {prefix}:{tenant}:job:{id}:progress   hash: tokens, text (or step, total, loss) while running
    {prefix}:{tenant}:job:{id}:events     stream: status, token and progress events (SSE)
    {prefix}:{tenant}:jobs                zset: job ids by creation time (listing; an id whose
                                          record is gone has expired: 410)
    {prefix}:{tenant}:idem:{sha256}       string: "{job id}|{body hash}" of an Idempotency-Key
    {prefix}:{tenant}:active              zset: the tenant's unfinished job ids (quotas)
    {prefix}:active                       zset: "{tenant}/{id}" of every unfinished job
    {prefix}:model                        string: ModelInfo JSON published by workers
Leases and workers (memq.store.leases):
    {prefix}:{tenant}:job:{id}:lease      string: id of the worker holding the job (expires)
    {prefix}:workers                      zset: worker ids by last heartbeat
    {prefix}:reconciler                   string: lock of the worker running the reconciler
Chat sessions (memq.store.sessions):
    {prefix}:{tenant}:session:{id}        hash: next_turn, summarized_through, summarizing,
                                          job:{job id} → the first turn number of that job
Webhooks (memq.store.webhooks; a delivery's state is the job hash's `webhook` field):
    {prefix}:{tenant}:webhook_secret      hash: secret, created_at, previous, previous_until
Metrics (memq.store.metrics):
    {prefix}:metrics                      hash: Prometheus counters and histogram buckets
                                          (memq.metrics), incremented by every process
API keys (memq.store.keystore):
    {prefix}:apikey:{id}                  hash: digest, tenant, name, created_at
    {prefix}:apikeys                      zset: every key id by creation time
Rate limits (gateway/core/limits.py):
    {prefix}:ratelimit:*                  the moving windows of the `limits` library, one
                                          per API key and rate (the library names the rest)
Adapters (memq.store.adapters):
    {prefix}:{tenant}:adapter:{name}      hash: v{n} → AdapterVersionRecord JSON, stale:{n},
                                          job:{id} → the version that job made, next
    {prefix}:{tenant}:adapters            zset: the tenant's adapter names
    {prefix}:{tenant}:forgotten           hash: namespace → when it was last forgotten
Files (memq.store.files; their bytes are in the gateway's file storage):
    {prefix}:{tenant}:file:{id}           string: FileRecord JSON
    {prefix}:{tenant}:files               zset: the tenant's file ids by creation time
Batches (memq.store.batches):
    {prefix}:{tenant}:batch:{id}          hash: status, meta (BatchMeta JSON), at:{status},
                                          counters, enqueued, files, outcome, errors
    {prefix}:{tenant}:batch:{id}:lines    hash: input line number → its output or error line
    {prefix}:{tenant}:batch:{id}:pending  hash: job id → line number, until its line is written
    {prefix}:{tenant}:batch:{id}:lease    string: the gateway process working on the batch
    {prefix}:{tenant}:batches             zset: the tenant's batch ids by creation time
    {prefix}:batches:active               zset: "{tenant}/{id}" of every unfinished batch

Not memq's and not prefixed: the Celery queues (lists named `MEMQ_QUEUE` and its
`.high`, `.low`, `.train` siblings) and kombu's `unacked` / `unacked_index` (memq.broker
reads them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from memq.settings import DEFAULT_KEY_PREFIX


@dataclass(frozen=True)
class Keys:
    """The key schema of the table above, for one prefix."""

    prefix: str = DEFAULT_KEY_PREFIX

    # jobs -----------------------------------------------------------------------------
    def job(self, tenant: str, job_id: str) -> str:
        return f"{self.prefix}:{tenant}:job:{job_id}"

    def progress(self, tenant: str, job_id: str) -> str:
        return f"{self.job(tenant, job_id)}:progress"

    def events(self, tenant: str, job_id: str) -> str:
        return f"{self.job(tenant, job_id)}:events"

    def index(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:jobs"

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

    def model(self) -> str:
        return f"{self.prefix}:model"

    # leases and workers -------------------------------------------------------------------
    def lease(self, tenant: str, job_id: str) -> str:
        return f"{self.job(tenant, job_id)}:lease"

    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def reconciler(self) -> str:
        return f"{self.prefix}:reconciler"

    # sessions, webhooks, metrics -------------------------------------------------------------
    def session(self, tenant: str, session_id: str) -> str:
        return f"{self.prefix}:{tenant}:session:{session_id}"

    def webhook_secret(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:webhook_secret"

    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    # API keys and rate limits ---------------------------------------------------------------
    def api_key(self, key_id: str) -> str:
        return f"{self.prefix}:apikey:{key_id}"

    def api_keys(self) -> str:
        return f"{self.prefix}:apikeys"

    def rate_limits(self) -> str:
        """Prefix of the rate limiter's keys (the `limits` library names the rest)."""
        return f"{self.prefix}:ratelimit"

    # adapters -------------------------------------------------------------------------------
    def adapter(self, tenant: str, name: str) -> str:
        return f"{self.prefix}:{tenant}:adapter:{name}"

    def adapters(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:adapters"

    def forgotten_namespaces(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:forgotten"

    # files and batches ----------------------------------------------------------------------
    def file(self, tenant: str, file_id: str) -> str:
        return f"{self.prefix}:{tenant}:file:{file_id}"

    def files(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:files"

    def batch(self, tenant: str, batch_id: str) -> str:
        return f"{self.prefix}:{tenant}:batch:{batch_id}"

    def batch_lines(self, tenant: str, batch_id: str) -> str:
        return f"{self.batch(tenant, batch_id)}:lines"

    def batch_pending(self, tenant: str, batch_id: str) -> str:
        return f"{self.batch(tenant, batch_id)}:pending"

    def batch_lease(self, tenant: str, batch_id: str) -> str:
        return f"{self.batch(tenant, batch_id)}:lease"

    def batches(self, tenant: str) -> str:
        return f"{self.prefix}:{tenant}:batches"

    def active_batches(self) -> str:
        return f"{self.prefix}:batches:active"


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (bytes from a client that does not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value
