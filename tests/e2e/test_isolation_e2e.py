"""Tenant isolation with authentication on, over real HTTP on the real stack (OWASP API1:
broken object level authorization).

Tenant A holds a bootstrap key (MEMQ_API_KEYS), tenant B a key made with `ApiKeyStore`
while the stack runs. For every job and memory route of the gateway (read from the app, so a
new route fails `test_every_route_is_checked` until it gets a check here), B reaching for
A's job, memory or namespace gets exactly what an unknown id gets, and changes nothing of
A's. The tenant the memory service sees comes from the key, never from the client's
`X-Memq-Tenant` header.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.contracts import JobPublic, JobStatus
from memq.ops.launcher import Stack
from memq.store.keystore import ApiKeyStore
from tests.utils.stack import StackFactory, paused

pytestmark = pytest.mark.e2e

A_TENANT, B_TENANT = "tenant-a", "tenant-b"
A_KEY = "bootstrap-key-of-tenant-a-0123456789"
NS = "user:shared"
SHARED_TEXT = "The office coffee machine is on the third floor."
SECRET_TEXT = "Tenant A's vault code is 4417 and it opens the archive room."
SPOOF = {"X-Memq-Tenant": A_TENANT}
OPEN = {
    "/livez",
    "/readyz",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    *("/ui", "/ui/app.js", "/ui/style.css"),  # the playground: static files
}
"""Routes anyone may call; every other route must authenticate."""


@dataclass
class World:
    stack: Stack
    a: httpx.Client
    b: httpx.Client
    b_key: str
    a_memories: dict[str, dict[str, Any]] = field(default_factory=dict)
    a_job: str = ""
    idempotency_key: str = "shared-idempotency-key"
    a_adapter: str = ""


@pytest.fixture(scope="module")
def iso_stack(stack_factory: StackFactory) -> Iterator[Stack]:
    """A stack of its own with authentication on (the shared e2e stack runs without)."""
    with stack_factory("memq-isolation", api_keys={A_KEY: A_TENANT}) as running:
        yield running


@pytest.fixture(scope="module")
def world(iso_stack: Stack) -> Iterator[World]:
    store = ApiKeyStore(redis.Redis.from_url(iso_stack.redis_url), prefix=iso_stack.key_prefix)
    b_key = store.create(B_TENANT, name="isolation test").key
    store.close()
    a = httpx.Client(
        base_url=iso_stack.gateway_url, timeout=60, headers={"Authorization": f"Bearer {A_KEY}"}
    )
    b = httpx.Client(base_url=iso_stack.gateway_url, timeout=60, headers={"X-API-Key": b_key})
    w = World(iso_stack, a, b, b_key)
    for text in (SHARED_TEXT, SECRET_TEXT):
        resp = a.post("/v1/memories", json={"namespace": NS, "text": text})
        assert resp.status_code == 201, resp.text
        w.a_memories[resp.json()["id"]] = resp.json()
    secret_id = _a_id_of(w, SECRET_TEXT)
    patched = a.patch(f"/v1/memories/{secret_id}", json={"metadata": {"room": "archive"}})
    assert patched.status_code == 200, patched.text
    w.a_memories[secret_id] = patched.json()
    resp = a.post(
        "/v1/jobs",
        json=_job(prompt="Where is the vault code?"),
        headers={"Idempotency-Key": w.idempotency_key},
    )
    assert resp.status_code == 202, resp.text
    w.a_job = resp.json()["id"]
    done = _wait(a, w.a_job)
    assert done.status == JobStatus.succeeded, done.error
    assert done.result is not None
    # A's retrieval finds A's memories: B finding none below is isolation, not a dead search.
    assert {m.id for m in done.result.memories} == set(w.a_memories)
    try:
        yield w
    finally:
        a.close()
        b.close()


def _a_id_of(w: World, text: str) -> str:
    return next(i for i, m in w.a_memories.items() if m["text"] == text)


def _job(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "generate",
        "prompt": "Question: what do you know?\nAnswer:",
        "params": {"max_new_tokens": 4, "temperature": 0},
        "memory": {"namespace": NS, "top_k": 10},
        **overrides,
    }


def _wait(client: httpx.Client, job_id: str, timeout: float = 120) -> JobPublic:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        job = JobPublic.model_validate(resp.json())
        if job.status.terminal:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status}")
        time.sleep(0.05)


def _a_state(w: World) -> tuple[dict[str, Any], list[str]]:
    """A's view of its memories (by id) and of its job ids: what B must never change."""
    memories = {}
    for memory_id in w.a_memories:
        resp = w.a.get(f"/v1/memories/{memory_id}")
        assert resp.status_code == 200, resp.text
        memories[memory_id] = resp.json()
    listed = w.a.get("/v1/jobs", params={"limit": 200}).json()["items"]
    return memories, sorted(j["id"] for j in listed)


def _assert_same_as_unknown(
    w: World, method: str, template: str, real_id: str, **kwargs: Any
) -> None:
    """B asking for A's `real_id` and for an id that never existed get the same answer."""
    unknown = str(uuid.uuid4())
    theirs = w.b.request(method, template.format(id=real_id), **kwargs)
    nobody = w.b.request(method, template.format(id=unknown), **kwargs)
    assert theirs.status_code == nobody.status_code == 404, (theirs.text, nobody.text)
    assert theirs.json()["error"] == nobody.json()["error"]
    assert theirs.text.replace(real_id, "<id>") == nobody.text.replace(unknown, "<id>")


def _b_memories(w: World, **headers: str) -> list[dict[str, Any]]:
    resp = w.b.get("/v1/memories", params={"namespace": NS, "limit": 1000}, headers=headers)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


# ------------------------------------------------------------------ one check per route

CHECKS: dict[tuple[str, str], Callable[[World], None]] = {}


def covers(method: str, path: str) -> Callable[[Callable[[World], None]], Callable[[World], None]]:
    def register(check: Callable[[World], None]) -> Callable[[World], None]:
        CHECKS[(method, path)] = check
        return check

    return register


@covers("POST", "/v1/jobs")
def _submit(w: World) -> None:
    before = _a_state(w)
    # Same Idempotency-Key as A's job, and a forged tenant header: still B's own new job.
    resp = w.b.post(
        "/v1/jobs", json=_job(), headers={"Idempotency-Key": w.idempotency_key, **SPOOF}
    )
    assert resp.status_code == 202, resp.text
    assert "idempotent-replayed" not in resp.headers
    job_id = resp.json()["id"]
    assert job_id != w.a_job
    job = _wait(w.b, job_id)
    assert job.tenant == B_TENANT and job.status == JobStatus.succeeded
    assert job.result is not None
    # The worker retrieved from B's namespace of that name: none of A's memories.
    assert not {m.id for m in job.result.memories} & set(w.a_memories)
    assert SECRET_TEXT not in job.result.prompt
    assert _a_state(w) == before


@covers("GET", "/v1/jobs")
def _list_jobs(w: World) -> None:
    own = w.b.post("/v1/jobs", json=_job(memory={})).json()["id"]
    for query in ({}, {"status": "succeeded"}, {"type": "generate"}, {"limit": 1}):
        seen: list[str] = []
        cursor = None
        while True:
            params = {**query, **({"cursor": cursor} if cursor else {})}
            page = w.b.get("/v1/jobs", params=params, headers=SPOOF)
            assert page.status_code == 200, page.text
            seen += [j["id"] for j in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert w.a_job not in seen, query
        if query in ({}, {"type": "generate"}, {"limit": 1}):
            assert own in seen, query


@covers("GET", "/v1/jobs/{job_id}")
def _get_job(w: World) -> None:
    _assert_same_as_unknown(w, "GET", "/v1/jobs/{id}", w.a_job)
    _assert_same_as_unknown(w, "GET", "/v1/jobs/{id}", w.a_job, headers=SPOOF)


@covers("POST", "/v1/jobs/{job_id}/cancel")
def _cancel(w: World) -> None:
    before = _a_state(w)
    # A's job is finished: its owner gets 409, anyone else the 404 of an unknown id.
    assert w.a.post(f"/v1/jobs/{w.a_job}/cancel").status_code == 409
    _assert_same_as_unknown(w, "POST", "/v1/jobs/{id}/cancel", w.a_job)
    assert _a_state(w) == before


@covers("POST", "/v1/jobs/{job_id}/replay")
def _replay(w: World) -> None:
    before = _a_state(w)
    _assert_same_as_unknown(w, "POST", "/v1/jobs/{id}/replay", w.a_job)
    assert _a_state(w) == before


@covers("GET", "/v1/jobs/{job_id}/events")
def _events(w: World) -> None:
    _assert_same_as_unknown(w, "GET", "/v1/jobs/{id}/events", w.a_job)


@covers("POST", "/v1/memories")
def _add_memory(w: World) -> None:
    before = _a_state(w)
    # A's exact text: a new memory of B's, never "deduplicated" onto A's.
    resp = w.b.post("/v1/memories", json={"namespace": NS, "text": SHARED_TEXT}, headers=SPOOF)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["id"] not in w.a_memories
    assert created["tenant"] == B_TENANT and not created["deduplicated"]
    # What the memory service stored it under: B, asked directly with the service token.
    token = w.stack.env["MEMQ_SERVICE_TOKEN"]
    with httpx.Client(
        base_url=w.stack.memory_url, headers={"Authorization": f"Bearer {token}"}
    ) as memory:
        url = f"/v1/memories/{created['id']}"
        assert memory.get(url, headers={"X-Memq-Tenant": B_TENANT}).status_code == 200
        assert memory.get(url, headers={"X-Memq-Tenant": A_TENANT}).status_code == 404
    assert _a_state(w) == before


@covers("POST", "/v1/memories/batch")
def _add_batch(w: World) -> None:
    before = _a_state(w)
    items = [{"namespace": NS, "text": t} for t in (SHARED_TEXT, SECRET_TEXT)]
    resp = w.b.post("/v1/memories/batch", json={"items": items}, headers=SPOOF)
    assert resp.status_code in (200, 201), resp.text
    for item in resp.json()["items"]:
        assert item["id"] not in w.a_memories and item["tenant"] == B_TENANT
    assert _a_state(w) == before


@covers("POST", "/v1/memories/documents")
def _ingest(w: World) -> None:
    before = _a_state(w)
    body = {"namespace": NS, "text": f"{SECRET_TEXT} {SHARED_TEXT}", "document_id": "doc-1"}
    resp = w.b.post("/v1/memories/documents", json=body, headers=SPOOF)
    assert resp.status_code == 201, resp.text
    assert all(c["tenant"] == B_TENANT for c in resp.json()["chunks"])
    assert _a_state(w) == before


@covers("POST", "/v1/memories/search")
def _search(w: World) -> None:
    for mode in ("dense", "keyword", "hybrid"):
        for headers in ({}, SPOOF):
            body = {"namespace": NS, "query": SECRET_TEXT, "top_k": 100, "mode": mode}
            resp = w.b.post("/v1/memories/search", json=body, headers=headers)
            assert resp.status_code == 200, resp.text
            hits = {h["id"] for h in resp.json()["hits"]}
            assert not hits & set(w.a_memories), (mode, headers)
    # The same search as A finds A's memory: the query is not simply failing.
    mine = w.a.post("/v1/memories/search", json={"namespace": NS, "query": SECRET_TEXT})
    assert _a_id_of(w, SECRET_TEXT) in {h["id"] for h in mine.json()["hits"]}


@covers("GET", "/v1/memories")
def _list_memories(w: World) -> None:
    w.b.post("/v1/memories", json={"namespace": NS, "text": "B's own note."})
    for headers in ({}, SPOOF):
        listed = _b_memories(w, **headers)
        assert listed, "B's own memory is listed"
        assert not {m["id"] for m in listed} & set(w.a_memories)
        assert all(m["tenant"] == B_TENANT for m in listed)


@covers("GET", "/v1/memories/{memory_id}")
def _get_memory(w: World) -> None:
    for memory_id in w.a_memories:
        _assert_same_as_unknown(w, "GET", "/v1/memories/{id}", memory_id)
        _assert_same_as_unknown(w, "GET", "/v1/memories/{id}", memory_id, headers=SPOOF)


@covers("GET", "/v1/memories/{memory_id}/history")
def _history(w: World) -> None:
    secret_id = _a_id_of(w, SECRET_TEXT)
    assert len(w.a.get(f"/v1/memories/{secret_id}/history").json()["versions"]) == 2
    _assert_same_as_unknown(w, "GET", "/v1/memories/{id}/history", secret_id)


@covers("POST", "/v1/memories/{memory_id}/restore")
def _restore(w: World) -> None:
    before = _a_state(w)
    for memory_id in w.a_memories:
        _assert_same_as_unknown(w, "POST", "/v1/memories/{id}/restore", memory_id)
        _assert_same_as_unknown(w, "POST", "/v1/memories/{id}/restore", memory_id, headers=SPOOF)
    assert _a_state(w) == before


@covers("PATCH", "/v1/memories/{memory_id}")
def _update(w: World) -> None:
    before = _a_state(w)
    for memory_id in w.a_memories:
        _assert_same_as_unknown(
            w, "PATCH", "/v1/memories/{id}", memory_id, json={"text": "overwritten by B"}
        )
    assert _a_state(w) == before


@covers("DELETE", "/v1/memories/{memory_id}")
def _delete(w: World) -> None:
    before = _a_state(w)
    for memory_id in w.a_memories:
        _assert_same_as_unknown(w, "DELETE", "/v1/memories/{id}", memory_id, headers=SPOOF)
    assert _a_state(w) == before


@covers("DELETE", "/v1/namespaces/{namespace}")
def _forget(w: World) -> None:
    with paused(w.stack):
        queued = w.a.post("/v1/jobs", json=_job()).json()["id"]
        before = _a_state(w)
        resp = w.b.delete(f"/v1/namespaces/{NS}", headers=SPOOF)
        assert resp.status_code == 200, resp.text
        assert resp.json()["cancelled_jobs"] == 0
        assert w.a.get(f"/v1/jobs/{queued}").json()["status"] == JobStatus.queued
        assert _a_state(w) == before
    assert _b_memories(w) == []
    assert _wait(w.a, queued).status == JobStatus.succeeded


@covers("GET", "/v1/namespaces/{namespace}/export")
def _export(w: World) -> None:
    own = w.b.post("/v1/memories", json={"namespace": NS, "text": "B's exported note."})
    resp = w.b.get(f"/v1/namespaces/{NS}/export", headers=SPOOF)
    assert resp.status_code == 200, resp.text
    records = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    ids = {r["id"] for r in records}
    assert own.json()["id"] in ids
    assert not ids & set(w.a_memories)
    assert SECRET_TEXT not in resp.text


@covers("POST", "/v1/namespaces/{namespace}/import")
def _import(w: World) -> None:
    before = _a_state(w)
    exported = w.a.get(f"/v1/namespaces/{NS}/export")
    assert exported.status_code == 200
    # B imports records carrying A's ids: B gets copies, A's memories are not overwritten.
    resp = w.b.post(
        f"/v1/namespaces/{NS}/import",
        content=exported.content,
        headers={"content-type": "application/x-ndjson", **SPOOF},
    )
    assert resp.status_code == 200, resp.text
    try:
        assert _a_state(w) == before
        for memory_id in w.a_memories:
            changed = w.b.patch(f"/v1/memories/{memory_id}", json={"text": "B's copy, edited"})
            assert changed.status_code == 200 and changed.json()["tenant"] == B_TENANT
        assert _a_state(w) == before
    finally:
        for memory_id in w.a_memories:
            w.b.delete(f"/v1/memories/{memory_id}")
    assert _a_state(w) == before


A_SESSION = "iso-session-of-a"


def _a_session(w: World) -> None:
    """Tenant A talks in a session once (idempotent across checks)."""
    if w.a.get(f"/v1/sessions/{A_SESSION}").status_code == 200:
        return
    body = {
        "type": "chat",
        "messages": [{"role": "user", "content": SECRET_TEXT}],
        "session_id": A_SESSION,
        "params": {"max_new_tokens": 3},
    }
    resp = w.a.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    assert _wait(w.a, resp.json()["id"]).status == JobStatus.succeeded


@covers("GET", "/v1/sessions/{session_id}")
def _read_session(w: World) -> None:
    _a_session(w)
    assert w.a.get(f"/v1/sessions/{A_SESSION}").json()["turns"][0]["content"] == SECRET_TEXT
    theirs = w.b.get(f"/v1/sessions/{A_SESSION}", headers=SPOOF)
    nobody = w.b.get(f"/v1/sessions/never-{uuid.uuid4().hex[:6]}")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["error"] == nobody.json()["error"]


@covers("DELETE", "/v1/sessions/{session_id}")
def _forget_session(w: World) -> None:
    _a_session(w)
    before = w.a.get(f"/v1/sessions/{A_SESSION}").json()
    resp = w.b.delete(f"/v1/sessions/{A_SESSION}", headers=SPOOF)
    assert resp.status_code == 200, resp.text
    assert resp.json()["deleted_memories"] == 0 and resp.json()["cancelled_jobs"] == 0
    assert w.a.get(f"/v1/sessions/{A_SESSION}").json() == before


@covers("POST", "/v1/chat/completions")
def _chat_completion(w: World) -> None:
    _a_session(w)
    body = {
        "model": "memq",
        "messages": [{"role": "user", "content": "What is the vault code?"}],
        "max_tokens": 3,
        "temperature": 0,
        "session_id": A_SESSION,  # B's own session of that name: empty
        "memory": {"namespaces": [NS], "top_k": 10, "min_similarity": -1},
    }
    resp = w.b.post("/v1/chat/completions", json=body, headers=SPOOF)
    assert resp.status_code == 200, resp.text
    job = w.b.get(f"/v1/jobs/{resp.json()['memq']['job_id']}").json()
    assert job["tenant"] == B_TENANT
    assert SECRET_TEXT not in job["result"]["prompt"]
    assert not {m["id"] for m in job["result"]["memories"]} & set(w.a_memories)


@covers("POST", "/v1/completions")
def _completion(w: World) -> None:
    body = {
        "model": "memq",
        "prompt": "The vault code is",
        "max_tokens": 3,
        "memory": {"namespaces": [NS], "top_k": 10, "min_similarity": -1},
    }
    resp = w.b.post("/v1/completions", json=body, headers=SPOOF)
    assert resp.status_code == 200, resp.text
    assert not {m["id"] for m in resp.json()["memq"]["memories"]} & set(w.a_memories)


@covers("GET", "/v1/models")
def _models(w: World) -> None:
    assert w.a.get("/v1/models").json() == w.b.get("/v1/models", headers=SPOOF).json()


def _a_adapter(w: World) -> str:
    """Tenant A's adapter, trained once (a few steps on A's namespace)."""
    if not w.a_adapter:
        body = {
            "type": "consolidate",
            "adapter": "a-facts",
            "namespace": NS,
            "training": {"steps": 2},
        }
        resp = w.a.post("/v1/jobs", json=body)
        assert resp.status_code == 202, resp.text
        job = _wait(w.a, resp.json()["id"])
        assert job.status == JobStatus.succeeded, job.error
        w.a_adapter = "a-facts"
    return w.a_adapter


@covers("GET", "/v1/adapters")
def _list_adapters(w: World) -> None:
    _a_adapter(w)
    assert [a["name"] for a in w.a.get("/v1/adapters").json()["items"]] == ["a-facts"]
    resp = w.b.get("/v1/adapters", headers=SPOOF)
    assert resp.status_code == 200 and resp.json()["items"] == []


@covers("GET", "/v1/adapters/{name}")
def _get_adapter(w: World) -> None:
    _assert_same_as_unknown(w, "GET", "/v1/adapters/{id}", _a_adapter(w), headers=SPOOF)
    # Nor can B use it: the job is refused like one naming an adapter nobody has.
    job = _job(adapter=_a_adapter(w))
    resp = w.b.post("/v1/jobs", json=job, headers=SPOOF)
    assert resp.status_code == 404 and resp.json()["error"] == "adapter_not_found"


@covers("DELETE", "/v1/adapters/{name}")
def _delete_adapter(w: World) -> None:
    _assert_same_as_unknown(w, "DELETE", "/v1/adapters/{id}", _a_adapter(w), headers=SPOOF)
    assert w.a.get(f"/v1/adapters/{_a_adapter(w)}").status_code == 200


@covers("GET", "/v1/webhooks/secret")
def _webhook_secret(w: World) -> None:
    a = w.a.get("/v1/webhooks/secret").json()
    b = w.b.get("/v1/webhooks/secret", headers=SPOOF).json()
    assert a != b and a == w.a.get("/v1/webhooks/secret").json()


@covers("POST", "/v1/webhooks/secret/rotate")
def _rotate_webhook_secret(w: World) -> None:
    a = w.a.get("/v1/webhooks/secret").json()
    assert w.b.post("/v1/webhooks/secret/rotate", headers=SPOOF).status_code == 200
    assert w.a.get("/v1/webhooks/secret").json() == a


# Files and batches (OpenAI-shaped errors: the whole answer is compared, ids masked).
A_BATCH: dict[str, str] = {}


def _a_batch(w: World) -> dict[str, str]:
    """Tenant A's input file and finished batch, with its output and error files (once)."""
    if A_BATCH:
        return A_BATCH
    body = {"model": "memq", "prompt": SECRET_TEXT, "max_tokens": 2}
    rows = [
        json.dumps({"custom_id": "a-1", "method": "POST", "url": "/v1/completions", "body": body}),
        "not json",
    ]
    uploaded = w.a.post(
        "/v1/files",
        files={"file": ("a.jsonl", "\n".join(rows).encode(), "application/jsonl")},
        data={"purpose": "batch"},
    )
    assert uploaded.status_code == 200, uploaded.text
    created = w.a.post(
        "/v1/batches",
        json={"input_file_id": uploaded.json()["id"], "endpoint": "/v1/completions"},
    )
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 120
    while (batch := w.a.get(f"/v1/batches/{created.json()['id']}").json())["status"] != (
        "completed"
    ):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    A_BATCH.update(
        input=uploaded.json()["id"],
        batch=batch["id"],
        output=batch["output_file_id"],
        error=batch["error_file_id"],
    )
    return A_BATCH


def _same_404(w: World, method: str, template: str, real_id: str, **kwargs: Any) -> None:
    unknown = f"file-{uuid.uuid4().hex}" if real_id.startswith("file-") else uuid.uuid4().hex
    theirs = w.b.request(method, template.format(id=real_id), headers=SPOOF, **kwargs)
    nobody = w.b.request(method, template.format(id=unknown), **kwargs)
    assert theirs.status_code == nobody.status_code == 404, (theirs.text, nobody.text)
    assert theirs.text.replace(real_id, "<id>") == nobody.text.replace(unknown, "<id>")


def _a_files(w: World) -> dict[str, Any]:
    listed = w.a.get("/v1/files").json()["data"]
    return {f["id"]: (f["bytes"], w.a.get(f"/v1/files/{f['id']}/content").text) for f in listed}


@covers("POST", "/v1/files")
def _upload_file(w: World) -> None:
    a = _a_batch(w)
    before = _a_files(w)
    resp = w.b.post(
        "/v1/files",
        files={"file": ("b.jsonl", b'{"custom_id": "b"}\n', "application/jsonl")},
        data={"purpose": "batch"},
        headers=SPOOF,
    )
    assert resp.status_code == 200, resp.text
    own = resp.json()["id"]
    assert own not in a.values()
    assert w.a.get(f"/v1/files/{own}").status_code == 404
    assert _a_files(w) == before


@covers("GET", "/v1/files")
def _list_files(w: World) -> None:
    a = _a_batch(w)
    seen = {f["id"] for f in w.b.get("/v1/files", headers=SPOOF).json()["data"]}
    assert not seen & {a["input"], a["output"], a["error"]}
    assert {a["input"], a["output"], a["error"]} <= {
        f["id"] for f in w.a.get("/v1/files").json()["data"]
    }


@covers("GET", "/v1/files/{file_id}")
def _get_file(w: World) -> None:
    a = _a_batch(w)
    for file_id in (a["input"], a["output"], a["error"]):
        _same_404(w, "GET", "/v1/files/{id}", file_id)


@covers("GET", "/v1/files/{file_id}/content")
def _file_content(w: World) -> None:
    a = _a_batch(w)
    assert SECRET_TEXT in w.a.get(f"/v1/files/{a['input']}/content").text
    for file_id in (a["input"], a["output"], a["error"]):
        _same_404(w, "GET", "/v1/files/{id}/content", file_id)


@covers("DELETE", "/v1/files/{file_id}")
def _delete_file(w: World) -> None:
    a = _a_batch(w)
    before = _a_files(w)
    for file_id in (a["input"], a["output"], a["error"]):
        _same_404(w, "DELETE", "/v1/files/{id}", file_id)
    assert _a_files(w) == before


@covers("POST", "/v1/batches")
def _create_batch(w: World) -> None:
    a = _a_batch(w)
    before = w.a.get("/v1/batches").json()["data"]
    # B names A's input file: exactly what an unknown file id gets, and nothing runs.
    unknown = f"file-{uuid.uuid4().hex}"
    theirs = w.b.post(
        "/v1/batches",
        json={"input_file_id": a["input"], "endpoint": "/v1/completions"},
        headers=SPOOF,
    )
    nobody = w.b.post("/v1/batches", json={"input_file_id": unknown, "endpoint": "/v1/completions"})
    assert theirs.status_code == nobody.status_code == 404, (theirs.text, nobody.text)
    assert theirs.text.replace(a["input"], "<id>") == nobody.text.replace(unknown, "<id>")
    assert w.b.get("/v1/batches").json()["data"] == []
    assert w.a.get("/v1/batches").json()["data"] == before


@covers("GET", "/v1/batches")
def _list_batches(w: World) -> None:
    a = _a_batch(w)
    assert a["batch"] not in {b["id"] for b in w.b.get("/v1/batches", headers=SPOOF).json()["data"]}
    assert a["batch"] in {b["id"] for b in w.a.get("/v1/batches").json()["data"]}


@covers("GET", "/v1/batches/{batch_id}")
def _get_batch(w: World) -> None:
    _same_404(w, "GET", "/v1/batches/{id}", _a_batch(w)["batch"])


@covers("POST", "/v1/batches/{batch_id}/cancel")
def _cancel_batch(w: World) -> None:
    a = _a_batch(w)
    before = w.a.get(f"/v1/batches/{a['batch']}").json()
    _same_404(w, "POST", "/v1/batches/{id}/cancel", a["batch"])
    assert w.a.get(f"/v1/batches/{a['batch']}").json() == before


# ---------------------------------------------------------------------------- the tests


def _routes() -> set[tuple[str, str]]:
    app = create_app(GatewaySettings(service_token="unused"))  # type: ignore[arg-type]
    routes: Iterable[Any] = app.routes
    with contextlib.suppress(ImportError):
        # FastAPI >= 0.13x includes routers lazily: app.routes holds the routers, not theirs.
        from fastapi.routing import iter_route_contexts

        routes = iter_route_contexts(app.routes)
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, getattr(route, "path", "")))
    return found


def _fill(path: str) -> str:
    values = {"job_id": str(uuid.uuid4()), "memory_id": str(uuid.uuid4()), "namespace": NS}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


def test_every_route_is_checked() -> None:
    guarded = {(m, p) for m, p in _routes() if p not in OPEN}
    assert guarded - set(CHECKS) == set(), "add an isolation check for these routes"
    assert set(CHECKS) - guarded == set(), "these checked routes no longer exist"


@pytest.mark.parametrize("route", sorted(CHECKS), ids=lambda r: f"{r[0]} {r[1]}")
def test_tenant_b_cannot_reach_tenant_a(route: tuple[str, str], world: World) -> None:
    CHECKS[route](world)


def test_every_guarded_route_refuses_a_missing_or_bad_key(world: World) -> None:
    forged = "mq_0123456789ab_" + "A" * 43
    with httpx.Client(base_url=world.stack.gateway_url, timeout=30) as anonymous:
        for method, path in sorted(_routes()):
            if path in OPEN:
                continue
            url = _fill(path)
            body = {"json": {}} if method in ("POST", "PATCH") else {}
            for headers, says in (
                ({}, "missing API key"),
                ({"Authorization": "Bearer not-a-key"}, "unknown or revoked"),
                ({"X-API-Key": forged}, "API key mq_0123456789ab is unknown or revoked"),
                ({**SPOOF}, "missing API key"),
            ):
                resp = anonymous.request(method, url, headers=headers, **body)
                assert resp.status_code == 401, (method, path, headers, resp.text)
                error = resp.json()["error"]
                if isinstance(error, dict):  # the OpenAI-compatible routes' error shape
                    error = {"error": error["code"], "message": error["message"]}
                else:
                    error = resp.json()
                assert error["error"] == "unauthorized"
                assert says in error["message"], (method, path, resp.text)


def test_open_routes_answer_without_a_key(world: World) -> None:
    with httpx.Client(base_url=world.stack.gateway_url, timeout=30) as anonymous:
        for method, path in sorted(_routes()):
            if path in OPEN:
                resp = anonymous.request(method, path)
                assert resp.status_code == 200, (path, resp.text)


def test_a_revoked_key_is_refused(world: World) -> None:
    store = ApiKeyStore(redis.Redis.from_url(world.stack.redis_url), prefix=world.stack.key_prefix)
    temporary = store.create(B_TENANT, name="revoked in the test")
    headers = {"Authorization": f"Bearer {temporary.key}"}
    assert world.b.get("/v1/jobs", headers=headers).status_code == 200
    store.revoke(temporary.prefix)
    store.close()
    # The gateway trusts a resolved key for MEMQ_API_KEY_CACHE_S (5 s): bounded wait.
    deadline = time.monotonic() + 30
    while (status := world.b.get("/v1/jobs", headers=headers).status_code) == 200:
        assert time.monotonic() < deadline, "a revoked key still works after 30 s"
        time.sleep(0.2)
    assert status == 401
