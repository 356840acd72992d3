"""Supervision: SIGKILL one part of a running stack at a time; it comes back on its own, on the
same data, and the gateway answers throughout (issue 8, "Supervision")."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from memq.contracts import JobStatus
from memq.ops.launcher import Stack
from memq.sdk import Client
from memq.settings import SERVICE_TOKEN_FILE
from tests.chaos.probe import GatewayProbe, eventually
from tests.utils.stack import StackFactory

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

JOB: dict[str, Any] = {
    "type": "generate",
    "prompt": "Question: what does a supervisor do?\nAnswer:",
    "params": {"max_new_tokens": 8, "temperature": 0},
}
RECOVERY_S = 180.0  # generous bound on a restart: the memory service reloads its embedder


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> Iterator[Stack]:
    with stack_factory("memq-chaos", kills=True) as running:
        yield running


@pytest.fixture
def probe(stack: Stack) -> Iterator[GatewayProbe]:
    with GatewayProbe(stack.gateway_url) as running:
        running.wait_answers(1)
        yield running


def _kill_and_wait_for_restart(stack: Stack, name: str) -> None:
    child = stack.procs[name]
    starts, crashes, pid = child.starts, child.crashes, child.pid
    child.kill()
    child.wait_started(starts + 1, timeout=RECOVERY_S)
    assert child.crashes == crashes + 1
    assert child.pid != pid


def _assert_gateway_answered_throughout(probe: GatewayProbe) -> None:
    # One more answer after recovery proves the probe kept running until now.
    probe.wait_answers(probe.answered + 1)
    assert probe.refused == [], f"the gateway refused connections: {probe.refused[:3]}"


def test_every_child_got_the_service_token_generated_for_the_data_dir(stack: Stack) -> None:
    path = stack.data_dir / SERVICE_TOKEN_FILE
    assert stack.service_token_file == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert {child.env["MEMQ_SERVICE_TOKEN"] for child in stack.procs.values()} == {token}
    wrong = httpx.get(
        f"{stack.memory_url}/v1/memories",
        params={"namespace": "user:x"},
        headers={"Authorization": "Bearer not-the-token", "X-Memq-Tenant": "default"},
    )
    assert wrong.status_code == 401


def test_killed_worker_is_restarted_and_runs_the_next_job(
    stack: Stack, client: Client, probe: GatewayProbe
) -> None:
    _kill_and_wait_for_restart(stack, "worker")

    accepted = client.submit(JOB)
    job = client.wait(accepted.id, timeout=RECOVERY_S)

    assert job.status == JobStatus.succeeded, job.error
    _assert_gateway_answered_throughout(probe)


def test_killed_memory_service_is_restarted_and_still_has_an_acknowledged_memory(
    stack: Stack, client: Client, probe: GatewayProbe
) -> None:
    written = client.add_memory("user:chaos", "The lighthouse keeper's cat is called Biscuit.")

    _kill_and_wait_for_restart(stack, "memory")

    with httpx.Client(base_url=stack.gateway_url, timeout=10.0) as http:

        def read_back() -> dict[str, Any]:
            resp = http.get(f"/v1/memories/{written.id}")
            resp.raise_for_status()
            body: dict[str, Any] = resp.json()
            return body

        found = eventually(read_back, timeout=RECOVERY_S)
    assert found["text"] == written.text
    _assert_gateway_answered_throughout(probe)


def test_killed_redis_is_restarted_on_its_data_and_an_accepted_job_is_still_there(
    stack: Stack, client: Client, probe: GatewayProbe
) -> None:
    accepted = client.submit(JOB)

    _kill_and_wait_for_restart(stack, "redis")

    record = eventually(lambda: client.get(accepted.id), timeout=RECOVERY_S)
    assert record.id == accepted.id
    # The rest of the stack reconnected: a new job goes all the way through.
    after = client.submit(JOB)
    assert client.wait(after.id, timeout=RECOVERY_S).status == JobStatus.succeeded
    _assert_gateway_answered_throughout(probe)
