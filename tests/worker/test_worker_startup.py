"""A worker that cannot load its model exits loudly instead of consuming jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_worker_with_unloadable_model_exits_non_zero_naming_the_model(
    redis_server: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MEMQ_MODEL": str(tmp_path / "no-such-model"),
        "MEMQ_REDIS_URL": redis_server,
        "MEMQ_DATA_DIR": str(tmp_path),
        "MEMQ_SERVICE_TOKEN": "test-token",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "cannot start the worker" in proc.stderr + proc.stdout
    assert "no-such-model" in proc.stderr + proc.stdout


def test_worker_without_a_service_token_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEMQ_SERVICE_TOKEN"}
    env["MEMQ_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "worker"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "cannot start the worker" in proc.stderr
    assert "MEMQ_SERVICE_TOKEN is not set" in proc.stderr


def test_worker_refuses_autoscale_which_the_threads_pool_cannot_do(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "--autoscale=4,1"],
        env={**os.environ, "MEMQ_SERVICE_TOKEN": "t", "MEMQ_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--autoscale" in proc.stderr and "more worker processes" in proc.stderr
