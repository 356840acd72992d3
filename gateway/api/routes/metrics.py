"""Prometheus metrics (open, like /livez): read from Redis at scrape time, so they are the
sum over every worker and gateway process (see memq.metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.api.deps import Settings, Store
from memq.broker import queue_name
from memq.contracts import Priority
from memq.metrics import RedisCollector

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(store: Store, settings: Settings) -> Response:
    """Queue depth per priority, job latency histograms per type and state, tokens
    generated, retrieval latency, memory hits per job, webhook deliveries."""
    queues = {p.value: queue_name(settings, p) for p in Priority}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        RedisCollector(
            store.metrics.read,
            lambda: store.metrics.queue_depths(queues),
            store.metrics.unfinished_total,
        )
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
