"""Authentication on a real Redis: stored and bootstrap keys, the open dev default, 401
messages, open routes, and the resolution cache's bound on a revoked key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from gateway.core.config import GatewaySettings
from gateway.main import create_app
from gateway.services.auth import Authenticator
from memq.errors import Unauthorized
from memq.store.keystore import ApiKeyInfo, ApiKeyStore

JOB = {"type": "generate", "prompt": "hi"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingKeyStore(ApiKeyStore):
    """The real store, counting how often the gateway asks Redis."""

    resolves = 0
    scans = 0

    def resolve(self, key: str) -> ApiKeyInfo | None:
        self.resolves += 1
        return super().resolve(key)

    def any_keys(self) -> bool:
        self.scans += 1
        return super().any_keys()


def _settings(redis_server: str, **extra: Any) -> GatewaySettings:
    return GatewaySettings(
        redis_url=redis_server,
        queue="memq.test",
        service_token="t",  # type: ignore[arg-type]
        **extra,
    )


@pytest.fixture
def keys(redis_client: redis.Redis) -> ApiKeyStore:
    return ApiKeyStore(redis_client)


@pytest.fixture
def app_factory(redis_server: str, redis_client: redis.Redis) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**extra: Any) -> TestClient:
        client = TestClient(create_app(_settings(redis_server, **extra)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _tenant_of_new_job(api: TestClient, headers: dict[str, str]) -> str:
    resp = api.post("/v1/jobs", json=JOB, headers=headers)
    assert resp.status_code == 202, resp.text
    job = api.get(f"/v1/jobs/{resp.json()['id']}", headers=headers).json()
    return str(job["tenant"])


def test_without_any_key_every_caller_is_the_default_tenant(app_factory: Any) -> None:
    api = app_factory()
    assert _tenant_of_new_job(api, {}) == "default"
    # A stray key while no key exists anywhere is ignored, not refused.
    assert _tenant_of_new_job(api, _bearer("left-over")) == "default"


def test_require_api_key_refuses_callers_even_before_any_key_exists(app_factory: Any) -> None:
    api = app_factory(require_api_key=True)
    resp = api.get("/v1/jobs")
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert "Authorization: Bearer <key>" in resp.json()["message"]
    assert resp.headers["www-authenticate"] == "Bearer"


def test_a_stored_key_turns_authentication_on_and_names_the_tenant(
    app_factory: Any, keys: ApiKeyStore
) -> None:
    acme = keys.create("acme")
    api = app_factory()
    assert _tenant_of_new_job(api, _bearer(acme.key)) == "acme"
    assert _tenant_of_new_job(api, {"X-API-Key": acme.key}) == "acme"
    missing = api.get("/v1/jobs")
    assert missing.status_code == 401
    assert "missing API key" in missing.json()["message"]


def test_an_unknown_key_is_401_naming_its_prefix_but_never_its_secret(
    app_factory: Any, keys: ApiKeyStore
) -> None:
    acme = keys.create("acme")
    api = app_factory()
    forged = acme.prefix + "_" + "A" * 43
    resp = api.get("/v1/jobs", headers=_bearer(forged))
    assert resp.status_code == 401
    message = resp.json()["message"]
    assert f"API key {acme.prefix} is unknown or revoked" in message
    assert "A" * 43 not in message
    other = api.get("/v1/jobs", headers=_bearer("some-random-secret")).json()["message"]
    assert "unknown or revoked" in other and "some-random-secret" not in other


def test_a_key_created_while_the_gateway_runs_works_at_once(
    app_factory: Any, keys: ApiKeyStore
) -> None:
    api = app_factory()
    assert _tenant_of_new_job(api, {}) == "default"  # caches "no key exists"
    beta = keys.create("beta")
    assert _tenant_of_new_job(api, _bearer(beta.key)) == "beta"


def test_bootstrap_and_stored_keys_work_side_by_side(app_factory: Any, keys: ApiKeyStore) -> None:
    stored = keys.create("stored-tenant")
    api = app_factory(api_keys={"boot-key": "boot-tenant"})
    assert _tenant_of_new_job(api, _bearer("boot-key")) == "boot-tenant"
    assert _tenant_of_new_job(api, _bearer(stored.key)) == "stored-tenant"
    assert api.get("/v1/jobs", headers=_bearer("boot-kez")).status_code == 401


def test_a_non_bearer_authorization_header_says_what_to_send(app_factory: Any) -> None:
    api = app_factory(api_keys={"k": "acme"})
    resp = api.get("/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert resp.status_code == 401
    assert "'Basic'" in resp.json()["message"] and "Bearer <key>" in resp.json()["message"]
    assert api.get("/v1/jobs", headers={"Authorization": "Bearer "}).status_code == 401


def test_health_docs_and_schema_stay_open(app_factory: Any) -> None:
    api = app_factory(api_keys={"k": "acme"})
    for path in ("/livez", "/docs", "/openapi.json"):
        assert api.get(path).status_code == 200, path
    # No worker or memory service here: not ready, but not a 401 either.
    assert api.get("/readyz").status_code == 503


def test_the_schema_declares_both_ways_to_send_a_key(app_factory: Any) -> None:
    schema = app_factory().get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert schema["paths"]["/v1/jobs"]["post"]["security"]


# ------------------------------------------------------------------ the resolution cache


def test_a_resolved_key_is_cached_for_the_bound_and_no_longer(
    redis_client: redis.Redis,
) -> None:
    keys = CountingKeyStore(redis_client)
    acme = keys.create("acme")
    clock = Clock()
    auth = Authenticator(keys, {}, cache_s=5.0, clock=clock)
    assert auth.authenticate(acme.key).tenant == "acme"
    assert auth.authenticate(acme.key).tenant == "acme"
    assert keys.resolves == 1  # the second request did not ask Redis
    clock.now += 5.0
    auth.authenticate(acme.key)
    assert keys.resolves == 2


def test_a_revoked_key_stops_working_within_the_cache_bound(redis_client: redis.Redis) -> None:
    keys = ApiKeyStore(redis_client)
    acme = keys.create("acme")
    keys.create("other")  # authentication stays on after the revocation
    clock = Clock()
    auth = Authenticator(keys, {}, cache_s=5.0, clock=clock)
    auth.authenticate(acme.key)
    keys.revoke(acme.prefix)
    clock.now += 4.999
    assert auth.authenticate(acme.key).tenant == "acme"  # still inside the bound
    clock.now += 0.001
    with pytest.raises(Unauthorized, match="unknown or revoked"):
        auth.authenticate(acme.key)


def test_revocation_reaches_http_callers_within_the_bound(
    app_factory: Any, keys: ApiKeyStore
) -> None:
    acme = keys.create("acme")
    keys.create("other")
    api = app_factory()
    clock = Clock()
    api.app.state.auth = Authenticator(keys, {}, cache_s=2.0, clock=clock)  # type: ignore[attr-defined]
    assert api.get("/v1/jobs", headers=_bearer(acme.key)).status_code == 200
    keys.revoke(acme.id)
    assert api.get("/v1/jobs", headers=_bearer(acme.key)).status_code == 200
    clock.now += 2.0
    resp = api.get("/v1/jobs", headers=_bearer(acme.key))
    assert resp.status_code == 401
    assert "unknown or revoked" in resp.json()["message"]


def test_whether_keys_exist_is_cached_too(redis_client: redis.Redis) -> None:
    keys = CountingKeyStore(redis_client)
    clock = Clock()
    auth = Authenticator(keys, {}, cache_s=5.0, clock=clock)
    assert auth.authenticate(None).tenant == "default"
    assert auth.authenticate(None).tenant == "default"
    assert keys.scans == 1
    keys.create("acme")
    clock.now += 5.0
    with pytest.raises(Unauthorized, match="missing API key"):
        auth.authenticate(None)


def test_bootstrap_keys_never_ask_redis(redis_client: redis.Redis) -> None:
    keys = CountingKeyStore(redis_client)
    auth = Authenticator(keys, {"boot": "acme"}, clock=Clock())
    assert auth.authenticate("boot").tenant == "acme"
    with pytest.raises(Unauthorized):
        auth.authenticate(None)
    assert (keys.resolves, keys.scans) == (0, 0)
