"""Everything that knows memq's Redis: the key table (`keys`), the Lua scripts (`lua`) and
one store per concern. A process builds a `JobStore` and reaches the stores of a job's
bookkeeping through it (`store.leases`, `store.sessions`, `store.webhooks`,
`store.metrics`); the others are built on the same client where they are needed.

    keys.py      Keys: every key memq writes, with the whole table in its docstring
    lua.py       every Lua script (atomic compare-and-sets)
    jobs.py      JobStore: create, read, list, transitions, events, the terminal hooks
    leases.py    LeaseStore: who holds a job, worker heartbeats, the reconciler lock
    sessions.py  SessionStore: chat turn numbers and summary claims; memory ids
    webhooks.py  WebhookStore: delivery state per job, signing secrets per tenant
    metrics.py   MetricStore: the shared Prometheus counters and live gauges
    batches.py   BatchStore, BatchLines: batch state, lines written exactly once
    files.py     FileRecords: Files API records (the bytes are the gateway's)
    adapters.py  AdapterRegistry: LoRA adapter versions and their staleness
    keystore.py  ApiKeyStore: API keys (digests only)
"""

from memq.store.adapters import AdapterRegistry
from memq.store.batches import BatchLines, BatchStore
from memq.store.files import FileRecords
from memq.store.jobs import Created, JobRecord, JobStore, StartOutcome, TokenUpdate
from memq.store.keys import Keys
from memq.store.keystore import ApiKeyStore
from memq.store.leases import LeaseStore
from memq.store.metrics import MetricStore
from memq.store.sessions import SessionStore
from memq.store.webhooks import WebhookStore

__all__ = [
    "AdapterRegistry",
    "ApiKeyStore",
    "BatchLines",
    "BatchStore",
    "Created",
    "FileRecords",
    "JobRecord",
    "JobStore",
    "Keys",
    "LeaseStore",
    "MetricStore",
    "SessionStore",
    "StartOutcome",
    "TokenUpdate",
    "WebhookStore",
]
