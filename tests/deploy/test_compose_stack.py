"""The deployment, running: the end-to-end scenario against `docker compose` (testcontainers;
skipped with the reason where no Docker engine is reachable) and, always, against the local
process stack; the compose file's healthcheck commands run against real services."""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memq.ops.launcher import Stack
from memq.ops.process import free_port
from memq.ops.redis_server import redis_server_binary
from tests.deploy.composefile import REPO, load_compose
from tests.deploy.scenario import add_memory_submit_poll
from tests.utils.stack import StackFactory

COMPOSE_FILES = ["docker-compose.yml", "tests/deploy/compose.test.yml"]


def docker_unavailable() -> str | None:
    """Why `docker compose` cannot run here, or None when it can."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker client on PATH"
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        return "the docker client has no compose plugin"
    try:
        info = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 30 s"
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine reachable ({last})"
    return None


@pytest.mark.e2e
@pytest.mark.slow
def test_compose_stack_serves_the_scenario_and_passes_the_store_contract(tmp_path: Path) -> None:
    reason = docker_unavailable()
    if reason is not None:
        message = f"docker compose stack not tested: {reason}"
        print(message)
        pytest.skip(message)
    from testcontainers.compose import DockerCompose

    port = free_port()
    qdrant_key = secrets.token_urlsafe(32)
    env_file = tmp_path / "compose.env"
    env_file.write_text(
        f"MEMQ_SERVICE_TOKEN={secrets.token_urlsafe(32)}\n"
        f"MEMQ_QDRANT_API_KEY={qdrant_key}\n"
        f"MEMQ_PUBLISH_PORT={port}\n"
        "MEMQ_WORKER_CPUS=1\n"
    )
    compose = DockerCompose(
        REPO, compose_file_name=COMPOSE_FILES, build=True, wait=True, env_file=str(env_file)
    )
    with compose:
        gateway = f"http://127.0.0.1:{port}"
        add_memory_submit_poll(gateway)
        # Both replicas joined the pool (`up --wait` waited for each one's healthcheck).
        ready = httpx.get(f"{gateway}/readyz", timeout=10).json()
        assert ready["workers"] == 2, ready

        host, qdrant_port = compose.get_service_host_and_port("qdrant", 6333)
        suite = "tests/memory_service/test_store_contract.py"
        contract = subprocess.run(
            [sys.executable, "-m", "pytest", suite, "-k", "server", "-q", "-rs"],
            cwd=REPO,
            env={
                **os.environ,
                "MEMQ_TEST_QDRANT_URL": f"http://{host}:{qdrant_port}",
                "MEMQ_TEST_QDRANT_API_KEY": qdrant_key,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        print(contract.stdout[-3000:])
        assert contract.returncode == 0, contract.stdout[-3000:] + contract.stderr[-3000:]
        assert " passed" in contract.stdout and "skipped" not in contract.stdout


@pytest.fixture(scope="module")
def local_stack(stack_factory: StackFactory) -> Iterator[Stack]:
    with stack_factory("memq-deploy") as running:
        yield running


@pytest.mark.e2e
def test_local_process_stack_serves_the_scenario(local_stack: Stack) -> None:
    job = add_memory_submit_poll(local_stack.gateway_url, timeout_s=120)
    pids = {str(w.pid) for w in local_stack.workers}
    assert job["worker"].split(":")[1] in pids


def _healthcheck(service: str, replace: dict[str, str] | None = None) -> list[str]:
    """The compose file's healthcheck command for `service`, as an argv to run here."""
    test = load_compose()["services"][service]["healthcheck"]["test"]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    if argv[0] == "python":
        argv[0] = sys.executable
    for old, new in (replace or {}).items():
        argv = [a.replace(old, new) for a in argv]
    return argv


def _passes(argv: list[str], env: dict[str, str] | None = None) -> bool:
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False, cwd=REPO)
    return done.returncode == 0


@pytest.mark.e2e
def test_service_healthchecks_pass_against_running_services(local_stack: Stack) -> None:
    memory = local_stack.memory_url.removeprefix("http://")
    gateway = local_stack.gateway_url.removeprefix("http://")
    assert _passes(_healthcheck("memory_service", {"127.0.0.1:8001": memory}))
    assert _passes(_healthcheck("gateway", {"127.0.0.1:8000": gateway}))
    # The worker's check looks for its own hostname's heartbeat in Redis: here every worker
    # runs on this host, in a container each has its own.
    assert _passes(_healthcheck("worker"), local_stack.env)


@pytest.mark.e2e
def test_service_healthchecks_fail_when_the_service_is_not_there(local_stack: Stack) -> None:
    closed = f"127.0.0.1:{free_port()}"
    assert not _passes(_healthcheck("memory_service", {"127.0.0.1:8001": closed}))
    assert not _passes(_healthcheck("gateway", {"127.0.0.1:8000": closed}))
    assert not _passes(_healthcheck("worker"), {**local_stack.env, "MEMQ_KEY_PREFIX": "nobody"})


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"all shards are ready")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(shutil.which("bash") is None, reason="the Qdrant healthcheck needs bash")
def test_qdrant_healthcheck_reads_the_readyz_status_line() -> None:
    """The Qdrant image has no curl: its check speaks HTTP through bash's /dev/tcp."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    argv = _healthcheck("qdrant", {"/6333": f"/{server.server_port}"})
    try:
        assert _passes(argv)
        _Readyz.status = 503
        assert not _passes(argv)
    finally:
        _Readyz.status = 200
        server.shutdown()
        server.server_close()
    assert not _passes(argv), "nothing listens any more"


def test_redis_healthcheck_answers_pong(redis_server: str) -> None:
    cli = str(Path(redis_server_binary()).with_name("redis-cli"))
    port = redis_server.rsplit(":", 1)[1].split("/")[0]
    assert _passes(_healthcheck("redis", {"redis-cli": f"{cli} -p {port}"}))
    assert not _passes(_healthcheck("redis", {"redis-cli": f"{cli} -p {free_port()}"}))
