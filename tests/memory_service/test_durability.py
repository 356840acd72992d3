"""A real `python -m memory_service` process: acknowledged writes survive SIGKILL and restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.memory_service.conftest import MODEL_CACHE, TOKEN, auth

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def memory_service_process(
    data_dir: Path, **extra_env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {
        **os.environ,
        **extra_env,
        "MEMQ_DATA_DIR": str(data_dir),
        "MEMQ_MEMORY_PORT": str(port),
        "MEMQ_SERVICE_TOKEN": TOKEN,
        "MEMQ_MODEL_CACHE_DIR": str(MODEL_CACHE),
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "memory_service"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"memory service exited with {proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("memory service did not become healthy within 90 s")
            time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("flush_on_write", ["true", "false"], ids=["flushed", "wal-only"])
def test_acknowledged_write_survives_sigkill_and_restart(
    tmp_path: Path, flush_on_write: str
) -> None:
    with memory_service_process(tmp_path, MEMQ_MEMORY_FLUSH_ON_WRITE=flush_on_write) as (
        proc,
        url,
    ):
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
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    with memory_service_process(tmp_path) as (_, url):
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
        env = {**os.environ, "MEMQ_DATA_DIR": str(tmp_path), "MEMQ_MEMORY_PORT": str(_free_port())}
        second = subprocess.run(
            [sys.executable, "-m", "memory_service"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert b"another process owns the Qdrant Edge shard" in second.stderr
