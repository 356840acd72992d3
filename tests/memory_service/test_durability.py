"""A real `python -m memory_service` process: acknowledged writes survive SIGKILL and restarts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from memq.ops.process import free_port
from tests.utils.memory_service import REPO_ROOT, TOKEN, auth, memory_service_process


@pytest.mark.slow
@pytest.mark.parametrize("flush_on_write", ["true", "false"], ids=["flushed", "wal-only"])
def test_acknowledged_write_survives_sigkill_and_restart(
    tmp_path: Path, flush_on_write: str
) -> None:
    with memory_service_process(tmp_path, MEMQ_MEMORY_FLUSH_ON_WRITE=flush_on_write) as proc:
        url = proc.url
        single = httpx.post(
            f"{url}/v1/memories",
            json={"namespace": "user:1", "text": "The launch code is OMEGA-7"},
            headers=auth(),
        )
        assert single.status_code == 201
        batch = httpx.post(
            f"{url}/v1/memories/batch",
            json={"items": [{"namespace": "user:1", "text": f"note number {i}"} for i in range(5)]},
            headers=auth(),
        )
        assert batch.status_code == 200
        # No pause, no graceful shutdown: the process dies right after the acknowledgements.
        proc.kill()

    with memory_service_process(tmp_path) as proc:
        url = proc.url
        got = httpx.get(f"{url}/v1/memories/{single.json()['id']}", headers=auth())
        assert got.status_code == 200
        assert got.json()["text"] == "The launch code is OMEGA-7"
        for item in batch.json()["items"]:
            assert httpx.get(f"{url}/v1/memories/{item['id']}", headers=auth()).status_code == 200
        hits = httpx.post(
            f"{url}/v1/memories/search",
            json={"namespace": "user:1", "query": "OMEGA-7", "top_k": 1},
            headers=auth(),
        ).json()["hits"]
        assert hits[0]["id"] == single.json()["id"]


@pytest.mark.slow
def test_second_process_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    with memory_service_process(tmp_path):
        env = {
            **os.environ,
            "MEMQ_DATA_DIR": str(tmp_path),
            "MEMQ_MEMORY_PORT": str(free_port()),
            "MEMQ_SERVICE_TOKEN": TOKEN,
        }
        second = subprocess.run(
            [sys.executable, "-m", "memory_service"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert b"another process owns the Qdrant Edge shard" in second.stderr
