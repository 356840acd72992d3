"""JSON logs carry the job id across the three services: with MEMQ_LOG_FORMAT=json, one job
that retrieves memories leaves lines with its `job_id` in the gateway's, the worker's and
the memory service's log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from memq.contracts import JobStatus
from memq.ops.launcher import Stack
from tests.e2e.ops import submit, wait_for_job

pytestmark = pytest.mark.e2e

SERVICES = ("gateway", "worker", "memory")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines (a process may also print a few lines that are not logging)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def test_one_jobs_lines_carry_its_id_in_all_three_services(
    ops_stack: Stack, ops_http: httpx.Client
) -> None:
    resp = ops_http.post(
        "/v1/memories", json={"namespace": "logs-e2e", "text": "Alice lives in Paris."}
    )
    assert resp.status_code == 201, resp.text
    job_id = submit(
        ops_http, prompt="Where does Alice live?", memory={"namespace": "logs-e2e", "top_k": 1}
    )
    assert wait_for_job(ops_http, job_id).status == JobStatus.succeeded
    assert ops_http.get(f"/v1/jobs/{job_id}").status_code == 200

    # The worker logs the job's end just after committing it: wait for the line.
    deadline = time.monotonic() + 30
    while True:
        found = {
            name: [
                e
                for e in json_lines(ops_stack.log_dir / f"{name}.log")
                if e.get("job_id") == job_id
            ]
            for name in SERVICES
        }
        if all(found.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {name: len(lines) > 0 for name, lines in found.items()} == dict.fromkeys(SERVICES, True)
    for name, lines in found.items():
        for entry in lines:
            assert {"time", "level", "logger", "message"} <= entry.keys(), entry
            assert entry["service"] == name, entry
    assert any("queued" in e["message"] for e in found["gateway"])
    assert any("succeeded" in e["message"] for e in found["worker"])
    assert any("/v1/memories/search" in e["message"] for e in found["memory"])
