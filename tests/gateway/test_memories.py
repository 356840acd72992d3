"""The gateway's memory routes and sessions against a scripted memory service: requests are
forwarded with the authenticated tenant, answers relayed byte for byte whatever their status,
an unreachable service is a 503, forgetting a namespace cancels the queued jobs that would
read it, export and import stream, and a session is read and forgotten through the same
client. Against the real memory service: tests/e2e/test_isolation_e2e.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from gateway.api.deps import get_memory_client
from gateway.core.config import GatewaySettings
from gateway.main import create_app
from gateway.services.sessions import SessionService
from memq.memory_client import TENANT_HEADER, AsyncMemoryClient
from tests.utils.scripted_gateway import memory_json as _memory

NDJSON = "application/x-ndjson"


class MemoryService:
    """Answers by (method, path) with a scripted response; records what it was sent."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], httpx.Response] = {}
        self.requests: list[tuple[httpx.Request, bytes]] = []
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append((request, request.read()))
        answer = self.answers.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"error": "not_found", "message": "unscripted"})
        # Unread, as from the network: the gateway may stream it.
        return httpx.Response(
            answer.status_code, headers=answer.headers, stream=httpx.ByteStream(answer.content)
        )

    def client(self) -> AsyncMemoryClient:
        return AsyncMemoryClient("http://memory.invalid", "t", transport=httpx.MockTransport(self))


@pytest.fixture
def memory() -> MemoryService:
    return MemoryService()


@pytest.fixture
def api(
    redis_server: str, redis_client: redis.Redis, memory: MemoryService
) -> Iterator[TestClient]:
    settings = GatewaySettings.model_validate(
        {"redis_url": redis_server, "service_token": "t", "queue": "memq.memories"}
    )
    app = create_app(settings)
    app.dependency_overrides[get_memory_client] = memory.client
    with TestClient(app) as client:
        app.state.sessions = SessionService(app.state.jobs, memory.client())
        yield client


def test_a_memory_is_forwarded_with_the_callers_tenant_and_relayed_as_is(
    api: TestClient, memory: MemoryService
) -> None:
    upstream = json.dumps({**_memory("m1"), "deduplicated": True}).encode()
    memory.answers[("POST", "/v1/memories")] = httpx.Response(
        200, content=upstream, headers={"content-type": "application/json"}
    )
    resp = api.post("/v1/memories", json={"namespace": "user:42", "text": "memory m1"})
    assert (resp.status_code, resp.content) == (200, upstream)
    [(sent, body)] = memory.requests
    assert sent.headers[TENANT_HEADER] == "default"
    assert json.loads(body) == {"namespace": "user:42", "text": "memory m1"}


def test_an_error_from_the_memory_service_is_relayed_unchanged(
    api: TestClient, memory: MemoryService
) -> None:
    refusal = b'{"error":"memory_not_found","message":"no memory m9"}'
    memory.answers[("GET", "/v1/memories/m9")] = httpx.Response(404, content=refusal)
    resp = api.get("/v1/memories/m9")
    assert (resp.status_code, resp.content) == (404, refusal)


def test_an_unreachable_memory_service_is_503_memory_unavailable(
    api: TestClient, memory: MemoryService
) -> None:
    memory.down = True
    resp = api.get("/v1/memories", params={"namespace": "user:42"})
    assert resp.status_code == 503
    assert resp.json()["error"] == "memory_unavailable"
    assert "the memory service is unreachable" in resp.json()["message"]


def test_forgetting_a_namespace_cancels_the_queued_jobs_that_would_read_it(
    api: TestClient, memory: MemoryService
) -> None:
    reads = api.post(
        "/v1/jobs", json={"type": "generate", "prompt": "hi", "memory": {"namespace": "user:42"}}
    )
    other = api.post("/v1/jobs", json={"type": "generate", "prompt": "hi"})
    assert reads.status_code == other.status_code == 202
    memory.answers[("DELETE", "/v1/namespaces/user:42")] = httpx.Response(
        200, json={"namespace": "user:42", "deleted": 3}
    )
    resp = api.delete("/v1/namespaces/user:42")
    assert resp.status_code == 200
    assert resp.json() == {
        "namespace": "user:42",
        "deleted": 3,
        "cancelled_jobs": 1,
        "stale_adapters": 0,
    }
    assert api.get(f"/v1/jobs/{reads.json()['id']}").json()["status"] == "cancelled"
    assert api.get(f"/v1/jobs/{other.json()['id']}").json()["status"] == "queued"


def test_a_refused_forget_cancels_nothing(api: TestClient, memory: MemoryService) -> None:
    job = api.post(
        "/v1/jobs", json={"type": "generate", "prompt": "hi", "memory": {"namespace": "user:42"}}
    )
    memory.answers[("DELETE", "/v1/namespaces/user:42")] = httpx.Response(500, content=b"boom")
    resp = api.delete("/v1/namespaces/user:42")
    assert (resp.status_code, resp.content) == (500, b"boom")
    assert api.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "queued"


def test_export_streams_the_lines_and_import_streams_them_back(
    api: TestClient, memory: MemoryService
) -> None:
    lines = b'{"id": "m1"}\n{"id": "m2"}\n'
    memory.answers[("GET", "/v1/namespaces/user:42/export")] = httpx.Response(
        200, content=lines, headers={"content-type": NDJSON}
    )
    memory.answers[("POST", "/v1/namespaces/user:42/import")] = httpx.Response(
        200, json={"namespace": "user:42", "imported": 2}
    )
    exported = api.get("/v1/namespaces/user:42/export")
    assert exported.status_code == 200 and exported.content == lines
    assert exported.headers["content-type"].startswith(NDJSON)
    imported = api.post(
        "/v1/namespaces/user:42/import", content=lines, headers={"content-type": NDJSON}
    )
    assert imported.status_code == 200 and imported.json()["imported"] == 2
    sent, body = memory.requests[-1]
    assert body == lines and sent.headers["content-type"] == NDJSON
    assert sent.headers[TENANT_HEADER] == "default"


def test_a_failed_export_is_relayed(api: TestClient, memory: MemoryService) -> None:
    resp = api.get("/v1/namespaces/user:42/export")
    assert resp.status_code == 404 and resp.json()["message"] == "unscripted"


def _turn(turn: int, role: str, text: str) -> dict[str, Any]:
    found = _memory(f"t{turn}")
    found.update(kind="message", text=text, metadata={"turn": str(turn), "role": role})
    return found


def test_a_session_is_read_and_forgotten_through_the_memory_client(
    api: TestClient, memory: MemoryService
) -> None:
    memory.answers[("GET", "/v1/memories")] = httpx.Response(
        200,
        json={
            "items": [_turn(2, "assistant", "Hello!"), _turn(1, "user", "Hi")],
            "next_cursor": None,
        },
    )
    resp = api.get("/v1/sessions/s1")
    assert resp.status_code == 200, resp.text
    session = resp.json()
    assert [(t["turn"], t["content"]) for t in session["turns"]] == [(1, "Hi"), (2, "Hello!")]
    assert session["summary"] is None  # the summary memory answered 404

    memory.answers[("DELETE", "/v1/namespaces/session:s1")] = httpx.Response(
        200, json={"namespace": "session:s1", "deleted": 2}
    )
    gone = api.delete("/v1/sessions/s1")
    assert gone.status_code == 200
    assert gone.json() == {"session_id": "s1", "deleted_memories": 2, "cancelled_jobs": 0}


def test_a_session_read_while_the_memory_service_fails_is_503(
    api: TestClient, memory: MemoryService
) -> None:
    memory.answers[("GET", "/v1/memories")] = httpx.Response(502, content=b"bad gateway")
    resp = api.get("/v1/sessions/s1")
    assert resp.status_code == 503 and resp.json()["error"] == "memory_unavailable"
