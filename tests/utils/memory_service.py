"""The memory service alone as a real `python -m memory_service` process on a free port (for
tests that kill it), and the service token and headers every memory service test uses."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from memq.ops.process import Child, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-service-token"
MODEL_CACHE = Path(tempfile.gettempdir()) / "memq-test-models"
"""One ONNX export per test session, shared by every app and subprocess the tests start."""


def auth(tenant: str | None = "acme", token: str = TOKEN) -> dict[str, str]:
    """The headers of a caller of the memory service: the service token and a tenant."""
    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["X-Memq-Tenant"] = tenant
    return headers


class MemoryServiceProcess:
    """The service on `data_dir`, (re)started from the same command line on one port."""

    def __init__(self, data_dir: Path, log_path: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MEMQ_DATA_DIR": str(data_dir),
            "MEMQ_MEMORY_PORT": str(self.port),
            "MEMQ_SERVICE_TOKEN": TOKEN,
            "MEMQ_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO_ROOT),
            **extra_env,
        }
        self.child = Child("memory", [sys.executable, "-m", "memory_service"], env, log_path)

    def start(self, timeout: float = 120.0) -> None:
        """Start it and return once `/readyz` answers 200 (the store takes writes)."""
        self.child.start()
        deadline = time.monotonic() + timeout
        while True:
            if not self.child.alive():
                raise AssertionError(
                    f"memory service exited ({self.child.returncode}):\n{self.child.tail()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"memory service not ready in {timeout:.0f}s:\n{self.child.tail()}"
                )
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        self.child.kill()

    def stop(self) -> None:
        self.child.stop()


@contextmanager
def memory_service_process(
    data_dir: Path, log_path: Path | None = None, **extra_env: str
) -> Iterator[MemoryServiceProcess]:
    proc = MemoryServiceProcess(data_dir, log_path or data_dir / "memory.log", **extra_env)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
