"""Gateway HTTP behaviour on a real Redis (no worker needed: jobs stay queued)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from memq.contracts import JobStatus


@pytest.fixture
def api(redis_server: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    settings = GatewaySettings(
        redis_url=redis_server,
        api_keys={"k-acme": "acme", "k-beta": "beta"},
        queue="memq.test",
        service_token="t",  # type: ignore[arg-type]
        gateway_url="https://memq.example",
    )
    with TestClient(create_app(settings)) as client:
        yield client


ACME = {"Authorization": "Bearer k-acme"}
BETA = {"X-API-Key": "k-beta"}


def test_submit_returns_202_with_status_url_and_a_queued_record(
    api: TestClient, redis_client: redis.Redis
) -> None:
    resp = api.post(
        "/v1/jobs",
        json={"type": "generate", "prompt": "hi"},
        headers={**ACME, "Host": "evil.example"},
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued"
    # built from the configured public URL, never from the request's Host header
    assert body["status_url"] == f"https://memq.example/v1/jobs/{body['id']}"
    job = api.get(f"/v1/jobs/{body['id']}", headers=ACME).json()
    assert job["status"] == JobStatus.queued and job["tenant"] == "acme"
    # The job id is the Celery task id: the broker message on the queue carries it.
    assert redis_client.llen("memq.test") == 1
    assert body["id"].encode() in redis_client.lindex("memq.test", 0)


def test_other_tenant_cannot_see_a_job(api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json={"type": "generate", "prompt": "hi"}, headers=ACME).json()[
        "id"
    ]
    resp = api.get(f"/v1/jobs/{job_id}", headers=BETA)
    assert resp.status_code == 404


def test_missing_or_unknown_api_key_is_401(api: TestClient) -> None:
    assert api.post("/v1/jobs", json={"type": "generate", "prompt": "hi"}).status_code == 401
    resp = api.get("/v1/jobs/x", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"


def test_validation_error_names_the_field_and_bound(api: TestClient) -> None:
    resp = api.post(
        "/v1/jobs",
        json={"type": "generate", "prompt": "hi", "params": {"max_new_tokens": 2000}},
        headers=ACME,
    )
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "validation_error"
    assert "max_new_tokens" in body["message"] and "1024" in body["message"]


def test_malformed_json_is_422_not_500(api: TestClient) -> None:
    resp = api.post(
        "/v1/jobs", content=b"{not json", headers={**ACME, "content-type": "application/json"}
    )
    assert resp.status_code == 422


def test_redis_down_is_503_with_retry_after_not_500(redis_server: str) -> None:
    from memq.ops.process import free_port

    settings = GatewaySettings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        service_token="t",  # type: ignore[arg-type]
    )
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/jobs", json={"type": "generate", "prompt": "hi"})
        assert resp.status_code == 503
        assert resp.json()["error"] == "queue_unavailable"
        assert resp.headers["retry-after"] == "2"
        assert client.get("/v1/jobs/abc").status_code == 503
