"""Hostile input at the gateway (issue 8 findings): every case is a clear 4xx, nothing
reaches Redis or the memory service that should not, and nothing is a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from gateway.api.deps import get_memory_client
from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.memory_client import AsyncMemoryClient

MIB = 1024 * 1024


class Recorder:
    """Stands in for the memory service: records what the gateway forwards."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"items": [], "next_cursor": None})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _settings(redis_server: str, **extra: object) -> GatewaySettings:
    return GatewaySettings.model_validate(
        {"redis_url": redis_server, "service_token": "t", "queue": "memq.hostile", **extra}
    )


@pytest.fixture
def api(redis_server: str, redis_client: redis.Redis, recorder: Recorder) -> Iterator[TestClient]:
    app = create_app(_settings(redis_server, max_unfinished_jobs=3))
    memory = AsyncMemoryClient(
        "http://memory.invalid", "t", transport=httpx.MockTransport(recorder.handler)
    )
    app.dependency_overrides[get_memory_client] = lambda: memory
    with TestClient(app) as client:
        yield client


def _job(**params: object) -> dict[str, object]:
    return {"type": "generate", "prompt": "hi", "params": params}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_job(temperature=1e-308), "temperature must be 0 (greedy) or at least 0.01"),
        (_job(temperature=True), "params.temperature: Input should be a valid number"),
        (_job(max_new_tokens="8"), "params.max_new_tokens: Input should be a valid integer"),
        (_job(max_new_tokens=8.0), "params.max_new_tokens: Input should be a valid integer"),
        (_job(seed="1"), "params.seed: Input should be a valid integer"),
        (_job(top_k=True), "params.top_k: Input should be a valid integer"),
        ({"type": "generate", "prompt": "\u200b\u200d\u2060"}, "prompt must contain visible"),
        ({"type": "generate", "prompt": " \n\t"}, "prompt must contain visible"),
        ({"type": "summarize", "text": "\u200b"}, "text must contain visible"),
        (
            {"type": "generate", "prompt": "hi", "metadata": {"k": "x" * (5 * MIB)}},
            "at most 1024 characters",
        ),
        (
            {"type": "generate", "prompt": "hi", "metadata": {f"k{i}": "v" for i in range(33)}},
            "at most 32 items",
        ),
        ({"type": "generate", "prompt": "hi", "metadata": {"bad key!": "v"}}, "metadata"),
        ({"type": "generate", "prompt": "hi", "metadata": {"k": 1}}, "valid string"),
    ],
)
def test_bad_job_parameters_are_422_and_never_queued(
    api: TestClient, redis_client: redis.Redis, body: dict[str, object], field: str
) -> None:
    resp = api.post("/v1/jobs", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "validation_error"
    assert field in resp.json()["message"]
    assert redis_client.llen("memq.hostile") == 0


def test_a_declared_huge_body_is_413_before_it_is_read(api: TestClient) -> None:
    resp = api.post(
        "/v1/jobs",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(100 * MIB)},
    )
    assert resp.status_code == 413
    assert resp.json()["error"] == "request_too_large"
    assert "16,777,216 bytes" in resp.json()["message"]


def test_a_streamed_huge_body_is_cut_off_with_413(api: TestClient, recorder: Recorder) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"namespace": "user:1", "text": "'
        for _ in range(40):
            sent += MIB
            yield b"x" * MIB
        yield b'"}'

    resp = api.post("/v1/memories", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert recorder.paths == []  # never forwarded


def test_the_tenants_unfinished_job_quota_is_429_with_retry_after(api: TestClient) -> None:
    for _ in range(3):
        assert api.post("/v1/jobs", json=_job()).status_code == 202
    resp = api.post("/v1/jobs", json=_job())
    assert resp.status_code == 429
    assert resp.json()["error"] == "too_many_jobs"
    assert "3 unfinished jobs" in resp.json()["message"]
    assert resp.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/memories/%00",
        "/v1/memories/..%2F..%2Flivez",
        "/v1/memories/..%2Fv1%2Fnamespaces%2Fx",
        "/v1/memories/a%2Fb/history",
        "/v1/namespaces/..%2Fmemories/export",
        "/v1/memories/" + "a" * 500,
    ],
)
def test_memory_paths_are_validated_and_never_forwarded_as_given(
    api: TestClient, recorder: Recorder, path: str
) -> None:
    resp = api.get(path)
    assert resp.status_code in (404, 422), resp.text
    assert resp.json()["error"] in ("validation_error", "not_found")
    assert recorder.paths == []


def test_valid_memory_requests_are_forwarded_to_the_fixed_route(
    api: TestClient, recorder: Recorder
) -> None:
    resp = api.get("/v1/memories", params={"namespace": "user:1", "limit": 5})
    assert resp.status_code == 200
    assert recorder.paths == ["/v1/memories?namespace=user%3A1&limit=5"]


def test_unknown_routes_are_404_not_forwarded(api: TestClient, recorder: Recorder) -> None:
    assert api.get("/v1/memories/x/y/z").status_code == 404
    assert api.post("/v1/livez").status_code == 404
    assert recorder.paths == []


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("key1:tenant1,key2:tenant2", {"key1": "tenant1", "key2": "tenant2"}),
        (" key1 : tenant1 , key2:tenant2 ", {"key1": "tenant1", "key2": "tenant2"}),
        ('{"key1": "tenant1"}', {"key1": "tenant1"}),
        ("", {}),
    ],
)
def test_api_keys_parse_in_both_documented_forms(
    monkeypatch: pytest.MonkeyPatch, raw: str, parsed: dict[str, str]
) -> None:
    monkeypatch.setenv("MEMQ_API_KEYS", raw)
    monkeypatch.setenv("MEMQ_SERVICE_TOKEN", "t")
    assert GatewaySettings().api_keys == parsed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("key1", "is not `key:tenant`"),
        ("key1:", "is not `key:tenant`"),
        ("key1:bad tenant!", "must be 1-128 characters"),
        ('{"key1": ', "not valid JSON"),
    ],
)
def test_malformed_api_keys_fail_at_start_with_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("MEMQ_API_KEYS", raw)
    monkeypatch.setenv("MEMQ_SERVICE_TOKEN", "t")
    with pytest.raises(ValueError, match=message):
        GatewaySettings()


def test_status_url_ignores_the_host_header(api: TestClient) -> None:
    resp = api.post("/v1/jobs", json=_job(), headers={"Host": "evil.example"})
    assert resp.status_code == 202
    assert resp.json()["status_url"].startswith("http://127.0.0.1:8000/v1/jobs/")
    assert json.dumps(resp.json()).count("evil") == 0


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/memories/search", "/v1/completions"])
def test_a_body_that_is_not_utf8_is_a_422_like_malformed_json(
    api: TestClient, redis_client: redis.Redis, path: str
) -> None:
    resp = api.post(path, content=b"\x12\xff\x04", headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    error = body["error"] if isinstance(body["error"], dict) else body  # OpenAI's shape
    assert "UTF-8 JSON" in error["message"]
    assert redis_client.llen("memq.hostile") == 0
