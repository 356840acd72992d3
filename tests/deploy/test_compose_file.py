"""docker-compose.yml read without a Docker daemon: what `docker compose up` would start, and
whether each memq service would accept the environment it is given."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from gateway.core.config import GatewaySettings
from memory_service.core.config import MemorySettings
from tests.deploy.composefile import (
    COMPOSE_FILE,
    REPO,
    REQUIRED_ENV,
    MissingVariable,
    dockerfile_instructions,
    load_compose,
    resolve,
    service_environment,
)
from worker.config import WorkerSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "memory_service": MemorySettings,
    "worker": WorkerSettings,
    "gateway": GatewaySettings,
}
LONG_RUNNING = ("redis", "qdrant", "memory_service", "worker", "gateway", "flower")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    resolved = resolve(compose, REQUIRED_ENV)["services"]
    assert isinstance(resolved, dict)
    return resolved


def _settings(monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str]) -> BaseSettings:
    """The service's settings class built from exactly the container's MEMQ_* variables."""
    for key in [k for k in os.environ if k.startswith("MEMQ_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return SETTINGS[service](_env_file=None)


def test_compose_file_defines_the_stack(services: dict[str, Any]) -> None:
    assert set(services) == set(LONG_RUNNING)
    for name in SETTINGS:
        assert services[name]["command"][:2] == ["python", "-m"]
        module = services[name]["command"][2]
        assert (REPO / module / "__main__.py").exists(), f"{name} runs a module that is not there"


def test_every_service_has_a_healthcheck_and_restarts(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert service.get("restart") == "unless-stopped", f"{name} is not restarted"


def test_workers_are_scalable(services: dict[str, Any]) -> None:
    worker = services["worker"]
    # `docker compose up --scale worker=N` refuses a fixed name and would collide on a port.
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert "ports" not in worker
    assert "expose" not in worker
    assert "replicas" not in worker.get("deploy", {}), "set the count with --scale, not here"


def test_redis_and_qdrant_data_persist_in_named_volumes(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    services = compose["services"]

    def mounts(service: str) -> dict[str, str]:
        """Container path → volume."""
        pairs = (v.split(":")[:2] for v in services[service]["volumes"])
        return {path: volume for volume, path in pairs}

    assert mounts("redis")["/data"] in named
    assert mounts("qdrant")["/qdrant/storage"] in named
    # The Hugging Face cache is one volume, at the image's HF_HOME, for the workers and the
    # memory service: GPT-2 downloads once however many workers there are.
    env = {
        k: v
        for i in dockerfile_instructions()
        if i.keyword == "ENV"
        for k, v in (pair.split("=", 1) for pair in i.args.split() if "=" in pair)
    }
    hf_home, data_dir = env["HF_HOME"], env["MEMQ_DATA_DIR"]
    for service in ("worker", "memory_service"):
        assert mounts(service)[hf_home] == "hf-cache"
    # Adapters are files under the data dir: written by the worker that trained them, read by
    # every worker, deleted by the gateway, so all of them mount the same volume there.
    for service in ("worker", "memory_service", "gateway"):
        assert mounts(service)[data_dir] == "memq-data"
        assert services[service]["environment"]["MEMQ_DATA_DIR"] == data_dir


def test_redis_keeps_every_acknowledged_write(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"


def test_dependencies_wait_until_healthy(services: dict[str, Any]) -> None:
    waited = set()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form"
        for target, how in depends.items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {target}"
            assert services[target].get("healthcheck"), target
            waited.add((name, target))
    assert {
        ("memory_service", "qdrant"),
        ("worker", "redis"),
        ("worker", "memory_service"),
        ("gateway", "redis"),
        ("gateway", "memory_service"),
    } <= waited


@pytest.mark.parametrize("secret", sorted(REQUIRED_ENV))
def test_secrets_have_no_default(compose: dict[str, Any], secret: str) -> None:
    for missing in ({}, {secret: ""}):
        env = {k: v for k, v in REQUIRED_ENV.items() if k != secret} | missing
        with pytest.raises(MissingVariable, match=secret):
            resolve(compose, env)


def test_both_sides_of_each_secret_get_the_same_value(services: dict[str, Any]) -> None:
    token = REQUIRED_ENV["MEMQ_SERVICE_TOKEN"]
    for name in SETTINGS:
        assert services[name]["environment"]["MEMQ_SERVICE_TOKEN"] == token
    key = REQUIRED_ENV["MEMQ_QDRANT_API_KEY"]
    assert services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == key
    assert services["memory_service"]["environment"]["MEMQ_QDRANT_API_KEY"] == key


def test_model_is_passed_only_when_the_user_sets_it(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = compose["services"]["worker"]
    env = service_environment(worker, REQUIRED_ENV)
    assert "MEMQ_MODEL" not in env
    settings = _settings(monkeypatch, "worker", env)
    assert isinstance(settings, WorkerSettings)
    # Not explicit: a worker that cannot reach gpt2 takes the offline fallback.
    assert settings.model == "gpt2" and not settings.model_explicit

    env = service_environment(worker, REQUIRED_ENV | {"MEMQ_MODEL": "distilgpt2"})
    settings = _settings(monkeypatch, "worker", env)
    assert isinstance(settings, WorkerSettings)
    assert settings.model == "distilgpt2" and settings.model_explicit


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_memq_variable_is_a_setting_and_validates(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    declared = compose["services"][service]["environment"]
    fields = set(SETTINGS[service].model_fields)
    # The settings ignore unknown variables, so a misspelt one would do nothing.
    unknown = [k for k in declared if k.startswith("MEMQ_") and k[5:].lower() not in fields]
    assert not unknown, f"{service} sets variables no setting reads: {unknown}"
    user = REQUIRED_ENV | {"MEMQ_WORKER_CPUS": "3"}
    _settings(monkeypatch, service, service_environment(compose["services"][service], user))


def test_memory_service_listens_beyond_loopback_only_inside_compose(
    services: dict[str, Any],
) -> None:
    assert MemorySettings.model_fields["memory_host"].default == "127.0.0.1"
    memory = services["memory_service"]
    assert memory["environment"]["MEMQ_MEMORY_HOST"] == "0.0.0.0"
    assert "ports" not in memory, "the memory service must not be published on the host"


def test_worker_torch_threads_follow_its_cpu_limit(compose: dict[str, Any]) -> None:
    for cpus in ("1", "4"):
        worker = resolve(compose, REQUIRED_ENV | {"MEMQ_WORKER_CPUS": cpus})["services"]["worker"]
        assert worker["cpus"] == cpus
        assert worker["environment"]["MEMQ_TORCH_THREADS"] == cpus


def test_gateway_is_published_on_loopback_unless_asked(compose: dict[str, Any]) -> None:
    def published(env: dict[str, str]) -> tuple[list[str], str]:
        gateway = resolve(compose, REQUIRED_ENV | env)["services"]["gateway"]
        return gateway["ports"], gateway["environment"]["MEMQ_GATEWAY_URL"]

    assert published({}) == (["127.0.0.1:8000:8000"], "http://localhost:8000")
    assert published({"MEMQ_PUBLISH_PORT": "9000"}) == (
        ["127.0.0.1:9000:8000"],
        "http://localhost:9000",
    )
    ports, _ = published({"MEMQ_PUBLISH_ADDRESS": "0.0.0.0"})
    assert ports == ["0.0.0.0:8000:8000"]


def test_flower_is_optional_and_needs_no_memq_code(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert "build" not in flower
    assert "--broker=redis://redis:6379/0" in flower["command"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert all("profiles" not in s for n, s in services.items() if n != "flower")


def test_third_party_images_are_pinned(services: dict[str, Any]) -> None:
    for name in ("redis", "qdrant", "flower"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), image


def test_healthchecks_ask_the_ports_the_services_listen_on(services: dict[str, Any]) -> None:
    memory_port = MemorySettings.model_fields["memory_port"].default
    gateway_port = GatewaySettings.model_fields["gateway_port"].default
    memory_check = " ".join(services["memory_service"]["healthcheck"]["test"])
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    assert f"127.0.0.1:{memory_port}/readyz" in memory_check
    assert f"127.0.0.1:{gateway_port}/readyz" in gateway_check
    assert f":{memory_port}" in services["worker"]["environment"]["MEMQ_MEMORY_URL"]
    assert services["gateway"]["ports"][0].endswith(f":{gateway_port}")


def test_docker_compose_config_accepts_the_file(tmp_path: Any) -> None:
    """`docker compose config` parses and validates without a daemon, when the client has
    the compose plugin."""
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if docker
        else None
    )
    if probe is None or probe.returncode != 0:
        reason = "docker compose config not run: no docker client with the compose plugin"
        print(reason)
        pytest.skip(reason)
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in REQUIRED_ENV.items()))
    assert docker is not None
    compose = [docker, "compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
    result = subprocess.run(
        [*compose, "--profile", "monitoring", "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
