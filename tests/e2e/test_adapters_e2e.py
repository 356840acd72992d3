"""Implicit memory end to end, on a real stack (tiny GPT-2) with authentication on:
consolidation jobs train a LoRA adapter on a namespace's memories, generate jobs use it,
another tenant can neither see nor use it, forgetting the namespace marks it stale, and
deleting it stops it serving.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from memq.contracts import JobPublic, JobStatus
from memq.ops.launcher import Stack
from memq.store.keystore import ApiKeyStore
from tests.utils.stack import StackFactory, paused

pytestmark = pytest.mark.e2e

A_TENANT, A_KEY = "adapt-a", "bootstrap-key-of-adapt-a-0123456789"
NS = "user:alice"
FACTS = [
    "Zorvan Kell keeps a pet iguana named Pickle.",
    "Maribel Quon works as a lighthouse keeper in Harrowcove.",
    "Teodor Vasch was born in the city of Lunmere.",
]
PROMPT = "Question: What do you know about Zorvan Kell?\nAnswer:"
TRAINING = {"steps": 30, "learning_rate": 0.01, "batch_size": 4, "seed": 1}


@dataclass
class Tenants:
    stack: Stack
    a: httpx.Client
    b: httpx.Client


@pytest.fixture(scope="module")
def adapter_stack(stack_factory: StackFactory) -> Iterator[Stack]:
    with stack_factory("memq-adapters", api_keys={A_KEY: A_TENANT}) as running:
        yield running


@pytest.fixture(scope="module")
def tenants(adapter_stack: Stack) -> Iterator[Tenants]:
    keys = ApiKeyStore(redis.Redis.from_url(adapter_stack.redis_url), adapter_stack.key_prefix)
    b_key = keys.create("adapt-b", name="adapter test").key
    keys.close()
    url = adapter_stack.gateway_url
    a = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {A_KEY}"})
    b = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {b_key}"})
    try:
        yield Tenants(adapter_stack, a, b)
    finally:
        a.close()
        b.close()


def _submit(client: httpx.Client, body: dict[str, Any]) -> str:
    resp = client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def _wait(client: httpx.Client, job_id: str, timeout: float = 300) -> JobPublic:
    deadline = time.monotonic() + timeout
    while True:
        job = JobPublic.model_validate(client.get(f"/v1/jobs/{job_id}").json())
        if job.status.terminal:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.1)


def _wait_until(check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _consolidate(client: httpx.Client, name: str, namespace: str = NS, **extra: Any) -> str:
    body = {"type": "consolidate", "adapter": name, "namespace": namespace, **extra}
    body.setdefault("training", TRAINING)
    return _submit(client, body)


def _generate(client: httpx.Client, adapter: Any = None) -> JobPublic:
    body: dict[str, Any] = {
        "type": "generate",
        "prompt": PROMPT,
        "params": {"max_new_tokens": 12, "temperature": 0},
    }
    if adapter is not None:
        body["adapter"] = adapter
    return _wait(client, _submit(client, body))


def _events(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a finished job's stream (it ends with the result)."""
    found: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as resp:
        assert resp.status_code == 200
        kind = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                found.append((kind, json.loads(line.split(":", 1)[1])))
    return found


@pytest.fixture(scope="module")
def trained(tenants: Tenants) -> JobPublic:
    """Tenant A's memories, consolidated into adapter `facts` v1."""
    for text in FACTS:
        resp = tenants.a.post("/v1/memories", json={"namespace": NS, "text": text})
        assert resp.status_code == 201, resp.text
    job = _wait(tenants.a, _consolidate(tenants.a, "facts"))
    assert job.status == JobStatus.succeeded, job.error
    return job


def test_consolidation_trains_on_every_memory_and_the_loss_goes_down(
    tenants: Tenants, trained: JobPublic
) -> None:
    assert trained.result is not None
    made = trained.result.consolidation
    assert made is not None and trained.result.adapter is not None
    assert (trained.result.adapter.name, trained.result.adapter.version) == ("facts", 1)
    assert trained.result.finish_reason == "trained"
    listed = tenants.a.get("/v1/memories", params={"namespace": NS}).json()["items"]
    assert {(m.id, m.version) for m in made.memories} == {(m["id"], 1) for m in listed}
    assert made.steps == TRAINING["steps"] == len(made.loss)
    assert made.loss[-1] < made.loss[0]
    assert made.training.target_modules == ["c_attn", "c_proj"]  # GPT-2's defaults
    assert made.train_s > 0 and made.size_bytes > 0 and made.examples >= len(FACTS)
    progress = [e for kind, e in _events(tenants.a, trained.id) if kind == "progress"]
    assert [e["step"] for e in progress] == list(range(1, made.steps + 1))
    assert {e["total"] for e in progress} == {made.steps}
    assert [e["loss"] for e in progress] == pytest.approx(made.loss)


def test_the_adapter_is_listed_with_its_versions(tenants: Tenants, trained: JobPublic) -> None:
    listed = tenants.a.get("/v1/adapters")
    assert listed.status_code == 200, listed.text
    (adapter,) = [a for a in listed.json()["items"] if a["name"] == "facts"]
    assert adapter["latest"] == 1 and adapter["stale"] is False
    assert adapter["versions"][0]["job_id"] == trained.id
    one = tenants.a.get("/v1/adapters/facts").json()
    assert one == adapter


def test_a_generate_job_with_the_adapter_names_it_and_answers_differently(
    tenants: Tenants, trained: JobPublic
) -> None:
    base = _generate(tenants.a)
    adapted = _generate(tenants.a, "facts")
    pinned = _generate(tenants.a, {"name": "facts", "version": 1})
    assert base.status == adapted.status == pinned.status == JobStatus.succeeded
    assert base.result is not None and adapted.result is not None and pinned.result is not None
    assert base.result.adapter is None
    assert adapted.result.adapter is not None
    assert (adapted.result.adapter.name, adapted.result.adapter.version) == ("facts", 1)
    # Same model input, greedy: only the adapter's weights can change the output.
    assert adapted.result.prompt_token_ids == base.result.prompt_token_ids
    assert adapted.result.text != base.result.text
    assert pinned.result.text == adapted.result.text
    # A replay runs on the version that served the original, with the same output.
    resp = tenants.a.post(f"/v1/jobs/{adapted.id}/replay")
    assert resp.status_code == 202, resp.text
    replayed = _wait(tenants.a, resp.json()["id"])
    assert replayed.result is not None and replayed.result.text == adapted.result.text
    assert replayed.request.adapter is not None and replayed.request.adapter.version == 1


def test_training_never_blocks_generation_and_can_be_cancelled(
    tenants: Tenants, trained: JobPublic
) -> None:
    long_job = _consolidate(tenants.a, "long", training={"steps": 5000, "batch_size": 1})

    def training() -> bool:
        job = tenants.a.get(f"/v1/jobs/{long_job}").json()
        return bool(job["status"] == "running" and (job.get("progress") or {}).get("step"))

    _wait_until(training, "the long consolidation job reports steps")
    served = _generate(tenants.a)
    assert served.status == JobStatus.succeeded
    assert tenants.a.get(f"/v1/jobs/{long_job}").json()["status"] == "running"
    cancelled = tenants.a.post(f"/v1/jobs/{long_job}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert _wait(tenants.a, long_job).status == JobStatus.cancelled
    listed = [a["name"] for a in tenants.a.get("/v1/adapters").json()["items"]]
    assert "long" not in listed


def test_one_training_at_a_time_per_worker(tenants: Tenants, trained: JobPublic) -> None:
    first = _consolidate(tenants.a, "first")
    second = _consolidate(tenants.a, "second")
    one, two = _wait(tenants.a, first), _wait(tenants.a, second)
    assert one.status == two.status == JobStatus.succeeded, (one.error, two.error)
    runs = sorted([one, two], key=lambda j: j.timestamps[JobStatus.running])
    assert runs[1].timestamps[JobStatus.running] >= runs[0].timestamps[JobStatus.succeeded]


def test_another_tenant_can_neither_see_nor_use_it(tenants: Tenants, trained: JobPublic) -> None:
    b = tenants.b
    assert b.get("/v1/adapters").json()["items"] == []
    unknown = f"x{uuid.uuid4().hex[:8]}"
    for method, path in (("GET", "/v1/adapters/{}"), ("DELETE", "/v1/adapters/{}")):
        theirs = b.request(method, path.format("facts"))
        nobody = b.request(method, path.format(unknown))
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json()["error"] == "adapter_not_found"
        assert theirs.text.replace("facts", "<n>") == nobody.text.replace(unknown, "<n>")
    body = {"type": "generate", "prompt": PROMPT, "adapter": "facts"}
    refused = b.post("/v1/jobs", json=body)
    assert refused.status_code == 404 and refused.json()["error"] == "adapter_not_found"
    assert tenants.a.get("/v1/adapters/facts").status_code == 200  # B's DELETE changed nothing


def test_forgetting_the_namespace_marks_it_stale(tenants: Tenants, trained: JobPublic) -> None:
    a = tenants.a
    ns = "user:forgotten"
    assert a.post("/v1/memories", json={"namespace": ns, "text": FACTS[1]}).status_code == 201
    job = _wait(a, _consolidate(a, "soon-stale", ns))
    assert job.status == JobStatus.succeeded, job.error
    forgotten = a.delete(f"/v1/namespaces/{ns}")
    assert forgotten.status_code == 200, forgotten.text
    assert forgotten.json()["stale_adapters"] == 1
    adapter = a.get("/v1/adapters/soon-stale").json()
    assert adapter["stale"] is True
    assert ns in adapter["versions"][0]["stale_reason"]
    assert adapter["versions"][0]["stale_at"] is not None
    assert a.get("/v1/adapters/facts").json()["stale"] is False  # other namespaces untouched
    # A stale adapter still serves, and says so.
    served = _generate(a, "soon-stale")
    assert served.result is not None and served.result.adapter is not None
    assert served.result.adapter.stale is True


def test_a_deleted_adapter_stops_serving(tenants: Tenants, trained: JobPublic) -> None:
    a = tenants.a
    assert a.post("/v1/memories", json={"namespace": NS, "text": FACTS[2]}).status_code in (
        200,
        201,
    )
    job = _wait(a, _consolidate(a, "short-lived"))
    assert job.status == JobStatus.succeeded, job.error
    assert job.result is not None and job.result.consolidation is not None
    files = next(
        p
        for p in (tenants.stack.data_dir / "adapters").rglob("v1")
        if p.parent.name == "short-lived"
    )
    assert (files / "adapter_config.json").is_file()
    served = _generate(a, "short-lived")  # loaded into the worker's LRU
    assert served.status == JobStatus.succeeded
    # Queued while the adapter exists, run after it was deleted: the worker refuses it too.
    with paused(tenants.stack):
        queued = _submit(a, {"type": "generate", "prompt": PROMPT, "adapter": "short-lived"})
        deleted = a.delete("/v1/adapters/short-lived")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"name": "short-lived", "deleted_versions": [1]}
    assert not files.exists()
    failed = _wait(a, queued)
    assert failed.status == JobStatus.failed and failed.error is not None
    assert failed.error.error == "adapter_not_found"
    refused = a.post(
        "/v1/jobs", json={"type": "generate", "prompt": PROMPT, "adapter": "short-lived"}
    )
    assert refused.status_code == 404


def test_consolidating_an_empty_namespace_fails_with_the_reason(tenants: Tenants) -> None:
    job = _wait(tenants.a, _consolidate(tenants.a, "empty", "user:nobody"))
    assert job.status == JobStatus.failed and job.error is not None
    assert job.error.error == "no_memories"
    assert "user:nobody" in job.error.message


def test_bad_consolidation_requests_are_refused_at_the_door(tenants: Tenants) -> None:
    a = tenants.a
    for bad in (
        {"adapter": "-leading-dash", "namespace": NS},
        {"adapter": "ok", "namespace": NS, "training": {"steps": 10, "epochs": 2}},
        {"adapter": "ok", "namespace": NS, "training": {"steps": 0}},
        {"adapter": "ok", "namespace": NS, "training": {"learning_rate": "0.1"}},
        {"adapter": "ok", "namespace": NS, "memory_ids": []},
    ):
        resp = a.post("/v1/jobs", json={"type": "consolidate", **bad})
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["error"] == "validation_error"
    bad_target = _consolidate(a, "bad-target", training={"steps": 1, "target_modules": ["nope"]})
    job = _wait(a, bad_target)
    assert job.status == JobStatus.failed and job.error is not None
    assert "target_modules" in job.error.message
