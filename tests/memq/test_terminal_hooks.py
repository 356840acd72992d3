"""What follows a job's end is wired once (memq.broker.terminal_hooks): a job ended through
the job store of the gateway, of a worker or of the launcher, each built the way that
component builds it, queues its webhook delivery on the high queue and, when it is a
batch's line job, writes its batch line. The CLI builds no job store (it reaches jobs
through the gateway), so it has none to wire."""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.batch_format import ERROR, line_job_id
from memq.broker import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from memq.contracts import BATCH_ID_KEY, BatchEndpoint, GenerateJobRequest, JobStatus
from memq.ops.launcher import Stack
from memq.ops.process import RestartPolicy
from memq.store.batches import BatchMeta, BatchStore
from memq.store.jobs import JobStore
from tests.worker.helpers import worker_settings
from worker.celery_app import create_celery_app

TENANT = "acme"
QUEUE = "memq.hooks"
GATEWAY_URL = "https://memq.example"
CALLBACK = "https://hook.example/done"


@contextmanager
def gateway_store(redis_url: str, tmp_path: Path) -> Iterator[JobStore]:
    settings = GatewaySettings(
        redis_url=redis_url,
        api_keys={"k-acme": TENANT},
        queue=QUEUE,
        service_token="t",  # type: ignore[arg-type]
        gateway_url=GATEWAY_URL,
        files_dir=tmp_path / "files",
    )
    with TestClient(create_app(settings)) as client:
        app: Any = client.app
        yield app.state.jobs.store


@contextmanager
def worker_store(redis_url: str, tiny_model_dir: Path) -> Iterator[JobStore]:
    settings = worker_settings(
        redis_url=redis_url,
        queue=QUEUE,
        gateway_url=GATEWAY_URL,
        model=str(tiny_model_dir),
        engine="simple",
        engine_process=False,
    )
    app = create_celery_app(settings)
    task: Any = app.tasks[RUN_JOB_TASK]
    runtime = task.runtime
    try:
        yield runtime.store
    finally:
        runtime.close()
        task._runtime = None
        app.close()


@contextmanager
def launcher_store(redis_url: str, tmp_path: Path) -> Iterator[JobStore]:
    stack = Stack(
        tmp_path,
        {"MEMQ_QUEUE": QUEUE},
        gateway_url=GATEWAY_URL,
        memory_url="http://127.0.0.1:1",
        redis_url=redis_url,
        key_prefix="memq",
        policy=RestartPolicy(0.1, 1.0, 5.0, 1),
    )
    store = stack.job_store()
    try:
        yield store
    finally:
        store.r.close()


def _batch(client: redis.Redis, store: JobStore, batch_id: str, job_id: str) -> None:
    """A running batch of one line whose job `job_id` is created and pending."""
    batches = BatchStore(client)
    now = int(time.time())
    batches.create(
        BatchMeta(
            id=batch_id,
            tenant=TENANT,
            endpoint=BatchEndpoint.jobs,
            input_file_id="file-in",
            completion_window="24h",
            created_at=now,
            expires_at=now + 86400,
            output_file_id="file-out",
            error_file_id="file-err",
        )
    )
    batches.planned(TENANT, batch_id, 1, with_files=False)
    request = GenerateJobRequest(
        prompt="hi", callback_url=CALLBACK, metadata={BATCH_ID_KEY: batch_id}
    )
    group = batches.keys.batch_pending(TENANT, batch_id)
    assert store.create_many(TENANT, [(job_id, request, "0")], group=group) == [job_id]


@pytest.mark.parametrize("component", ["gateway", "worker", "launcher"])
def test_a_job_ended_through_each_components_store_fires_its_webhook_and_writes_its_line(
    component: str,
    redis_server: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    tiny_model_dir: Path,
) -> None:
    if component == "gateway":
        built = gateway_store(redis_server, tmp_path)
    elif component == "worker":
        built = worker_store(redis_server, tiny_model_dir)
    else:
        built = launcher_store(redis_server, tmp_path)
    batch_id = f"batch_{component}"
    line_job = line_job_id(batch_id, 0)
    with built as store:
        _batch(redis_client, store, batch_id, line_job)
        store.create(TENANT, "plain", GenerateJobRequest(prompt="hi", callback_url=CALLBACK))
        for job_id in (line_job, "plain"):
            assert store.cancel(TENANT, job_id) is not None
            assert store.status(TENANT, job_id) == JobStatus.cancelled

        for job_id in (line_job, "plain"):
            delivery = store.webhooks.get(TENANT, job_id)
            assert delivery is not None and delivery.url == CALLBACK
        high: Any = redis_client.lrange(f"{QUEUE}.high", 0, -1)
        headers = [json.loads(raw)["headers"] for raw in high]
        webhooks = [h for h in headers if h["task"] == DELIVER_WEBHOOK_TASK]
        ended = sorted(ast.literal_eval(h["argsrepr"])[1] for h in webhooks)
        assert ended == sorted([line_job, "plain"])
        lines = BatchStore(redis_client).lines(TENANT, batch_id, ERROR)
        assert len(lines) == 1 and b'"code":"cancelled"' in lines[0]
