"""Prometheus /metrics on the real stack: open (no API key), valid exposition text, and the
counts move by exactly what the test ran (jobs by state, latency histograms, tokens,
retrieval latency and memory hits), summed from the worker and the gateway through Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memq.contracts import JobStatus
from memq.ops.launcher import Stack
from tests.e2e.ops import submit, wait_for_job
from tests.utils.stack import paused

pytestmark = pytest.mark.e2e

Samples = dict[str, float]


def scrape(stack: Stack) -> Samples:
    """Every sample of an unauthenticated scrape, keyed `name{label="value",...}`."""
    resp = httpx.get(f"{stack.gateway_url}/metrics", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def _until(stack: Stack, ready: Callable[[Samples], bool], timeout: float = 60) -> Samples:
    """Scrape until `ready(samples)` holds (the counts of a job are written just after its
    status, so a poller may see the status first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(stack)
        if ready(found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"the metrics never got there: {found}")
        time.sleep(0.1)


def delta(after: Samples, before: Samples, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_by_exactly_the_jobs_that_ran(
    ops_stack: Stack, ops_http: httpx.Client
) -> None:
    namespace = "metrics-e2e"
    for text in ("Alice lives in Paris.", "Bob lives in Rome.", "Carol likes tea."):
        resp = ops_http.post("/v1/memories", json={"namespace": namespace, "text": text})
        assert resp.status_code == 201, resp.text
    # Nothing else running: every count below is this test's own.
    before = _until(ops_stack, lambda m: m["memq_jobs_unfinished{}"] == 0, timeout=300)

    with paused(ops_stack):
        cancelled = submit(ops_http, params={"max_new_tokens": 2})
        # (its message may wait in the queue or in the paused worker's prefetch)
        assert scrape(ops_stack)["memq_jobs_unfinished{}"] == 1
        assert ops_http.post(f"/v1/jobs/{cancelled}/cancel").status_code == 200
    searching = submit(
        ops_http, prompt="Where does Alice live?", memory={"namespace": namespace, "top_k": 2}
    )
    plain = submit(ops_http, params={"max_new_tokens": 3})
    jobs = {job_id: wait_for_job(ops_http, job_id) for job_id in (searching, plain)}
    assert all(j.status == JobStatus.succeeded for j in jobs.values())
    results = {job_id: j.result for job_id, j in jobs.items() if j.result is not None}
    tokens = sum(r.usage.completion_tokens for r in results.values())
    hits = results[searching].memories

    succeeded = 'status="succeeded",type="generate"'
    done = f"memq_jobs_finished_total{{{succeeded}}}"
    after = _until(ops_stack, lambda m: delta(m, before, done) >= 2)
    cancelled_labels = 'status="cancelled",type="generate"'
    assert delta(after, before, f"memq_jobs_finished_total{{{succeeded}}}") == 2
    assert delta(after, before, f"memq_jobs_finished_total{{{cancelled_labels}}}") == 1
    assert delta(after, before, 'memq_jobs_finished_total{status="failed",type="generate"}') == 0
    assert delta(after, before, f"memq_job_duration_seconds_count{{{succeeded}}}") == 2
    assert delta(after, before, f"memq_job_queue_wait_seconds_count{{{succeeded}}}") == 2
    assert delta(after, before, f"memq_job_duration_seconds_count{{{cancelled_labels}}}") == 1
    # it never started, so it has no queue wait
    assert delta(after, before, f"memq_job_queue_wait_seconds_count{{{cancelled_labels}}}") == 0
    assert delta(after, before, 'memq_generated_tokens_total{type="generate"}') == tokens
    assert delta(after, before, "memq_retrieval_seconds_count{}") == 1
    assert delta(after, before, "memq_job_memory_hits_count{}") == 1
    assert delta(after, before, "memq_job_memory_hits_sum{}") == len(hits)
    assert after["memq_jobs_unfinished{}"] == 0
    assert {k for k in after if k.startswith("memq_queue_depth")} == {
        'memq_queue_depth{priority="high"}',
        'memq_queue_depth{priority="normal"}',
        'memq_queue_depth{priority="low"}',
    }
    # histogram buckets are cumulative and end with the count
    bucket = f'memq_job_duration_seconds_bucket{{le="+Inf",{succeeded}}}'
    assert after[bucket] == after[f"memq_job_duration_seconds_count{{{succeeded}}}"]
