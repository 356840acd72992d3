"""Prometheus metrics, aggregated in Redis so that every worker and gateway process counts
into the same numbers and a restart loses nothing.

Whoever observes something (the job store when a job ends, the webhook task after an
attempt) turns it into a `MetricUpdate`: counter increments and histogram bucket counts,
written with HINCRBY / HINCRBYFLOAT into one Redis hash (`MetricStore.add` in
memq.store.metrics). The gateway's `/metrics` reads that hash at scrape time through
`RedisCollector`, which also reads the gauges (queue depth per priority, unfinished jobs)
live from Redis.

A hash field is `json([metric name, [label values], part])`: `part` is "" for a counter,
`"le:<bound>"` for the (non-cumulative) count of one histogram bucket and `"sum"` for a
histogram's sum; the collector cumulates buckets, so a bucket layout that changes between
versions still yields valid histograms (an old bound is counted in the next bound up).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from memq.contracts import ChatJobRequest, JobPublic, JobStatus, MemoryOptions


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    labels: tuple[str, ...] = ()

    def bucket(self, value: float) -> str:
        """The bound of the bucket `value` falls in (`+Inf` beyond the last)."""
        for bound in self.buckets:
            if value <= bound:
                return _bound(bound)
        return "+Inf"


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

JOBS_FINISHED = Counter(
    "memq_jobs_finished", "Jobs that reached a terminal state.", ("type", "status")
)
GENERATED_TOKENS = Counter(
    "memq_generated_tokens",
    "Tokens generated: by succeeded jobs, and the partial text of cancelled ones, counted when "
    "the job ends. Tokens per second: rate(memq_generated_tokens_total[1m]).",
    ("type",),
)
WEBHOOK_FAILED_ATTEMPTS = Counter(
    "memq_webhook_failed_attempts",
    "Webhook delivery attempts that failed (non-2xx answer, timeout, connection error, refused "
    "address).",
)
WEBHOOK_DELIVERIES = Counter(
    "memq_webhook_deliveries",
    "Webhook deliveries that ended: `delivered` (a 2xx) or `gave_up` (refused by the receiver, "
    "a refused address, or out of attempts).",
    ("outcome",),
)
QUEUE_WAIT = Histogram(
    "memq_job_queue_wait_seconds",
    "From submission to the first start, of jobs that started, by terminal state.",
    LATENCY_BUCKETS,
    ("type", "status"),
)
JOB_DURATION = Histogram(
    "memq_job_duration_seconds",
    "From submission to the terminal state.",
    LATENCY_BUCKETS,
    ("type", "status"),
)
RETRIEVAL = Histogram(
    "memq_retrieval_seconds",
    "Memory search of a succeeded job that searched (pinned memories are not searched).",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MEMORY_HITS = Histogram(
    "memq_job_memory_hits",
    "Memories a succeeded job's search returned.",
    (0, 1, 2, 3, 5, 10, 20, 50),
)
COUNTERS = (JOBS_FINISHED, GENERATED_TOKENS, WEBHOOK_FAILED_ATTEMPTS, WEBHOOK_DELIVERIES)
HISTOGRAMS = (QUEUE_WAIT, JOB_DURATION, RETRIEVAL, MEMORY_HITS)


def _field(name: str, labels: tuple[str, ...], part: str) -> str:
    return json.dumps([name, list(labels), part], separators=(",", ":"))


@dataclass
class MetricUpdate:
    """Increments to write in one round trip: integer counts and float sums by hash field."""

    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def inc(self, counter: Counter, labels: tuple[str, ...] = (), amount: int = 1) -> None:
        if amount:
            key = _field(counter.name, labels, "")
            self.counts[key] = self.counts.get(key, 0) + amount

    def observe(self, histogram: Histogram, labels: tuple[str, ...], value: float) -> None:
        key = _field(histogram.name, labels, f"le:{histogram.bucket(value)}")
        self.counts[key] = self.counts.get(key, 0) + 1
        total = _field(histogram.name, labels, "sum")
        self.sums[total] = self.sums.get(total, 0.0) + value

    def __bool__(self) -> bool:
        return bool(self.counts or self.sums)


def job_ended(job: JobPublic) -> MetricUpdate:
    """What a job that just reached its terminal state adds."""
    update = MetricUpdate()
    kind, status = job.type.value, job.status.value
    update.inc(JOBS_FINISHED, (kind, status))
    started = job.timestamps.get(JobStatus.running)
    if started is not None:
        update.observe(QUEUE_WAIT, (kind, status), _seconds(started - job.created_at))
    ended = job.timestamps.get(job.status)
    if ended is not None:
        update.observe(JOB_DURATION, (kind, status), _seconds(ended - job.created_at))
    result = job.result
    if result is not None and job.status == JobStatus.succeeded:
        update.inc(GENERATED_TOKENS, (kind,), result.usage.completion_tokens)
        if _searched(job.request):
            if result.timings.retrieval_s is not None:
                update.observe(RETRIEVAL, (), result.timings.retrieval_s)
            update.observe(MEMORY_HITS, (), len(result.memories))
    return update


def _searched(request: object) -> bool:
    """Whether the job searched memory (as the worker's pipeline decides)."""
    memory = getattr(request, "memory", None)  # a consolidate job has no memory options
    if not isinstance(memory, MemoryOptions) or memory.pinned is not None or memory.top_k == 0:
        return False
    if isinstance(request, ChatJobRequest):
        return bool(request.memory_namespaces())  # a chat job defaults to its session's
    return bool(memory.search_namespaces())


def partial_tokens(job: JobPublic, tokens: int) -> MetricUpdate:
    """A cancelled job's partial text, attached after it ended."""
    update = MetricUpdate()
    update.inc(GENERATED_TOKENS, (job.type.value,), tokens)
    return update


def webhook_attempt(*, failed: bool, outcome: str | None) -> MetricUpdate:
    """One delivery attempt; `outcome` (`delivered` / `gave_up`) when it ended the delivery."""
    update = MetricUpdate()
    if failed:
        update.inc(WEBHOOK_FAILED_ATTEMPTS)
    if outcome is not None:
        update.inc(WEBHOOK_DELIVERIES, (outcome,))
    return update


def _seconds(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0)


class RedisCollector(Collector):
    """Reads the aggregated metrics at scrape time. `read` returns the metrics hash
    (field → value); `queue_depths` the messages waiting per priority; `unfinished` the
    jobs queued or running."""

    def __init__(
        self,
        read: Callable[[], Mapping[str, float]],
        queue_depths: Callable[[], Mapping[str, int]],
        unfinished: Callable[[], int],
    ) -> None:
        self.read = read
        self.queue_depths = queue_depths
        self.unfinished = unfinished

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "memq_queue_depth",
            "Messages waiting in each priority's queue (jobs, and webhook deliveries on high).",
            labels=["priority"],
        )
        for priority, n in self.queue_depths().items():
            depth.add_metric([priority], n)
        yield depth
        yield GaugeMetricFamily(
            "memq_jobs_unfinished", "Jobs queued or running.", value=self.unfinished()
        )
        stored = _decode(self.read())
        for counter in COUNTERS:
            family = CounterMetricFamily(counter.name, counter.help, labels=list(counter.labels))
            for labels, parts in sorted(stored.get(counter.name, {}).items()):
                family.add_metric(list(labels), parts.get("", 0.0))
            yield family
        for histogram in HISTOGRAMS:
            yield _histogram(histogram, stored.get(histogram.name, {}))


def _decode(raw: Mapping[str, float]) -> dict[str, dict[tuple[str, ...], dict[str, float]]]:
    """metric name → label values → part → value."""
    out: dict[str, dict[tuple[str, ...], dict[str, float]]] = {}
    for key, value in raw.items():
        try:
            name, labels, part = json.loads(key)
        except (ValueError, TypeError):
            continue  # not a field this module wrote
        parts = out.setdefault(str(name), {}).setdefault(tuple(str(v) for v in labels), {})
        parts[str(part)] = parts.get(str(part), 0.0) + value
    return out


def _histogram(
    histogram: Histogram, series: Mapping[tuple[str, ...], Mapping[str, float]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(histogram.name, histogram.help, labels=list(histogram.labels))
    bounds = [*histogram.buckets, math.inf]
    for labels, parts in sorted(series.items()):
        counts = [0.0] * len(bounds)
        for part, value in parts.items():
            if not part.startswith("le:"):
                continue
            stored = float(part.removeprefix("le:"))
            slot = next(i for i, b in enumerate(bounds) if stored <= b)
            counts[slot] += value
        cumulative, buckets = 0.0, []
        for bound, count in zip(bounds, counts, strict=True):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        family.add_metric(list(labels), buckets, sum_value=parts.get("sum", 0.0))
    return family
