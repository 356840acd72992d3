"""memq.metrics on a real Redis: every store (one per process) counts into the same hash, a
job is counted once when it ends whoever ends it, and the scrape is valid Prometheus text
with cumulative histograms."""

from __future__ import annotations

import json
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from memq import metrics
from memq.contracts import (
    ChatJobRequest,
    ChatMessage,
    ErrorResponse,
    GenerateJobRequest,
    JobPublic,
    JobResult,
    JobStatus,
    JobTimings,
    JobType,
    MemoryOptions,
    RetrievedMemory,
    SummarizeJobRequest,
    TokenUsage,
)
from memq.store.jobs import JobStore, utcnow


def _result(tokens: int, hits: int) -> JobResult:
    usage = TokenUsage(
        prompt_tokens=1,
        context_tokens=0,
        input_tokens=1,
        completion_tokens=tokens,
        total_tokens=1 + tokens,
    )
    memories = [RetrievedMemory(id=f"m{i}", score=1.0, text="t", used=True) for i in range(hits)]
    return JobResult(
        text="out",
        model="m",
        finish_reason="length",
        usage=usage,
        timings=JobTimings(retrieval_s=0.02),
        prompt="p",
        memories=memories,
    )


def scrape(store: JobStore) -> dict[str, float]:
    """Every sample of the scrape, keyed `name{label="value",...}`."""
    registry = CollectorRegistry(auto_describe=False)
    queues = {"high": "q.high", "normal": "q", "low": "q.low"}
    registry.register(
        metrics.RedisCollector(
            store.metrics.read,
            lambda: store.metrics.queue_depths(queues),
            store.metrics.unfinished_total,
        )
    )
    text = generate_latest(registry).decode()
    return {_key(s): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def _key(sample: Sample) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}"


def _stores(client: redis.Redis, n: int) -> Iterator[JobStore]:
    for _ in range(n):
        yield JobStore(redis.Redis(connection_pool=client.connection_pool))


def test_jobs_ended_by_different_processes_add_up_once_each(redis_client: redis.Redis) -> None:
    worker_a, worker_b, gateway = _stores(redis_client, 3)
    searching = GenerateJobRequest(prompt="hi", memory=MemoryOptions(namespace="ns", top_k=3))
    worker_a.create("t1", "ok1", searching)
    worker_a.create("t1", "ok2", GenerateJobRequest(prompt="hi"))
    worker_a.create("t2", "bad", SummarizeJobRequest(text="long text"))
    worker_a.create("t2", "gone", GenerateJobRequest(prompt="hi"))

    record = worker_a.start("t1", "ok1", worker="a", engine="e").record
    assert record is not None and worker_a.succeed(record, _result(tokens=5, hits=2))
    record = worker_b.start("t1", "ok2", worker="b", engine="e").record
    assert record is not None and worker_b.succeed(record, _result(tokens=7, hits=0))
    assert not worker_a.succeed(record, _result(tokens=7, hits=0))  # committed once: counted once
    record = worker_b.start("t2", "bad", worker="b", engine="e").record
    assert record is not None
    assert worker_b.fail(record, ErrorResponse(error="internal_error", message="x"))
    assert gateway.cancel("t2", "gone") is not None
    assert gateway.cancel("t2", "gone") is None

    found = scrape(gateway)
    assert found['memq_jobs_finished_total{status="succeeded",type="generate"}'] == 2
    assert found['memq_jobs_finished_total{status="failed",type="summarize"}'] == 1
    assert found['memq_jobs_finished_total{status="cancelled",type="generate"}'] == 1
    assert found['memq_generated_tokens_total{type="generate"}'] == 12
    # only the job that searched memory is in the retrieval and hits histograms
    assert found["memq_retrieval_seconds_count{}"] == 1
    assert found["memq_job_memory_hits_count{}"] == 1
    assert found['memq_job_memory_hits_bucket{le="1.0"}'] == 0
    assert found['memq_job_memory_hits_bucket{le="2.0"}'] == 1
    assert found['memq_job_memory_hits_bucket{le="+Inf"}'] == 1
    assert found["memq_job_memory_hits_sum{}"] == 2
    # a job cancelled while queued never waited to start: only its total latency counts
    assert found['memq_job_duration_seconds_count{status="cancelled",type="generate"}'] == 1
    assert 'memq_job_queue_wait_seconds_count{status="cancelled",type="generate"}' not in found
    assert found['memq_job_queue_wait_seconds_count{status="succeeded",type="generate"}'] == 2
    assert found["memq_jobs_unfinished{}"] == 0


def test_histogram_buckets_are_cumulative_and_end_with_the_count(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    update = metrics.MetricUpdate()
    for value in (0.001, 0.3, 0.3, 7.0, 99_999.0):
        update.observe(metrics.JOB_DURATION, ("generate", "succeeded"), value)
    store.metrics.add(update)
    found = scrape(store)
    labels = 'status="succeeded",type="generate"'

    def bucket(le: str) -> float:
        return found[f'memq_job_duration_seconds_bucket{{le="{le}",{labels}}}']

    assert (bucket("0.05"), bucket("0.25"), bucket("0.5"), bucket("5.0")) == (1, 1, 3, 3)
    assert (bucket("10.0"), bucket("3600.0"), bucket("+Inf")) == (4, 4, 5)
    assert found[f"memq_job_duration_seconds_count{{{labels}}}"] == 5
    assert found[f"memq_job_duration_seconds_sum{{{labels}}}"] == sum(
        (0.001, 0.3, 0.3, 7.0, 99_999.0)
    )


def test_a_bucket_bound_from_an_older_layout_is_counted_in_the_next_bound_up(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    old_field = json.dumps(["memq_retrieval_seconds", [], "le:0.007"], separators=(",", ":"))
    redis_client.hset(store.keys.metrics(), mapping={old_field: 3, "not json": 1})
    found = scrape(store)
    assert found['memq_retrieval_seconds_bucket{le="0.005"}'] == 0
    assert found['memq_retrieval_seconds_bucket{le="0.01"}'] == 3
    assert found["memq_retrieval_seconds_count{}"] == 3


def test_queue_depth_is_read_live_per_priority(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    redis_client.rpush("q.high", "m1")
    redis_client.rpush("q.low", "m1", "m2", "m3")
    found = scrape(store)
    assert found['memq_queue_depth{priority="high"}'] == 1
    assert found['memq_queue_depth{priority="normal"}'] == 0
    assert found['memq_queue_depth{priority="low"}'] == 3


def test_a_cancelled_jobs_partial_tokens_and_webhook_outcomes_are_counted(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    store.create("t", "j", SummarizeJobRequest(text="x"))
    record = store.get("t", "j")
    assert record is not None
    store.metrics.add(metrics.partial_tokens(record, 4))
    store.metrics.add(metrics.webhook_attempt(failed=True, outcome=None))
    store.metrics.add(metrics.webhook_attempt(failed=True, outcome="gave_up"))
    store.metrics.add(metrics.webhook_attempt(failed=False, outcome="delivered"))
    found = scrape(store)
    assert found['memq_generated_tokens_total{type="summarize"}'] == 4
    assert found["memq_webhook_failed_attempts_total{}"] == 2
    assert found['memq_webhook_deliveries_total{outcome="gave_up"}'] == 1
    assert found['memq_webhook_deliveries_total{outcome="delivered"}'] == 1


def test_only_jobs_that_searched_memory_are_in_the_retrieval_histograms() -> None:
    def observed(request: GenerateJobRequest | ChatJobRequest) -> bool:
        now = utcnow()
        job = JobPublic(
            id="j",
            type=JobType(request.type),
            status=JobStatus.succeeded,
            tenant="t",
            created_at=now,
            timestamps={JobStatus.succeeded: now},
            request=request,
            result=_result(tokens=1, hits=1),
        )
        return _sum_field(metrics.RETRIEVAL) in metrics.job_ended(job).sums

    hi = [ChatMessage.model_validate({"role": "user", "content": "hi"})]
    no_search = MemoryOptions(namespace="a", top_k=0)
    assert observed(GenerateJobRequest(prompt="x", memory=MemoryOptions(namespaces=["a", "b"])))
    assert not observed(GenerateJobRequest(prompt="x", memory=no_search))
    assert not observed(GenerateJobRequest(prompt="x"))
    assert observed(ChatJobRequest(messages=hi, session_id="s1"))  # its session's memories
    assert not observed(ChatJobRequest(messages=hi))


def _sum_field(histogram: metrics.Histogram) -> str:
    return json.dumps([histogram.name, [], "sum"], separators=(",", ":"))
