"""Start and supervise the whole stack as real processes: Redis, memory service, worker(s), gateway.

`memq up`, the end-to-end and chaos tests and the benchmarks all start the stack here
(`start_stack`), on fixed or free ports. The parts it is built from sit beside it:
`memq.ops.process` (one supervised child, its restart policy, free ports) and
`memq.ops.redis_server` (the embedded Redis). `Stack.job_store()` is the stack's job store for
whoever drives it (tests, benchmarks): built by `memq.broker.job_store`, so a job it ends
fires its webhook and writes its batch line like one ended by the gateway or a worker.

Starting: every part is spawned, then awaited: the memory service on `/readyz`, the
gateway on `/livez`, and a worker publishing its model. A part that dies while the stack
starts fails the start at once with the tail of its log: restarting a misconfiguration
would only delay the message.

Supervision, once started: a child that dies (crash, OOM kill, a chaos test's SIGKILL) is
restarted on the same command line, ports and data, after a backoff that doubles with
each *fast* crash in a row (one less than `restart_window_s` after the child started):
0.5 s, 0.5 s, 1 s, 2 s, ... up to `restart_backoff_max_s`. Each crash is logged with the
exit code and the tail of the child's log. After `restart_max_fast_crashes` fast crashes
in a row the supervisor gives up: it stops everything and `Stack.failure` says which part
died and why. Stopping is never a crash: `Stack.stop()` is final, and `Child.stop()` parks
one child until its next `start()`.

Secrets: unless `MEMQ_SERVICE_TOKEN` is set, the stack generates a random service token
once per data dir (`DATA_DIR/service-token`, mode 0600) and passes it to every child.

The embedded Redis keeps its data in `DATA_DIR/redis` with AOF on, `appendfsync
everysec` and `maxmemory-policy noeviction` (docs/operations.md: what that promises).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from memq.broker import job_store, producer_app
from memq.ops.process import Child, LaunchError, RestartPolicy, check_alive, free_port
from memq.ops.redis_server import redis_args, wait_redis
from memq.settings import SERVICE_TOKEN_FILE, CommonSettings, LauncherSettings
from memq.store.jobs import JobStore

log = logging.getLogger("memq.launcher")

# Front to back: no new jobs first, then workers finish theirs, then the stores they use.
STOP_ORDER = ("gateway", "worker", "memory", "redis")


def resolve_service_token(data_dir: Path, configured: str | None) -> tuple[str, Path | None]:
    """The token every child gets, and the file it is kept in (None when it was configured).

    Without a configured token, one is generated for this data dir (random, file mode 0600)
    and reused by every later start on it.
    """
    if configured and configured.strip():
        return configured.strip(), None
    path = data_dir / SERVICE_TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside and linked into place, so a concurrent start never reads half a token
        # and two racing starts agree on one.
        tmp = data_dir / f".{SERVICE_TOKEN_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    os.chmod(path, 0o600)
    token = path.read_text().strip()
    if not token:
        raise LaunchError(f"{path} is empty: delete it to generate a new service token")
    return token, path


class Stack:
    """A running memq stack: its children, where they listen, and their supervisor."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str],
        *,
        gateway_url: str,
        memory_url: str,
        redis_url: str,
        key_prefix: str,
        policy: RestartPolicy,
    ) -> None:
        self.data_dir = data_dir
        self.env = dict(env)
        self.gateway_url = gateway_url
        self.memory_url = memory_url
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.policy = policy
        self.procs: dict[str, Child] = {}
        self.model: str | None = None
        self.service_token_file: Path | None = None
        """Where the generated service token is kept; None when MEMQ_SERVICE_TOKEN was set."""
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def workers(self) -> list[Child]:
        return [c for n, c in self.procs.items() if n.startswith("worker")]

    def spawn(
        self, name: str, args: Sequence[str], extra_env: Mapping[str, str] | None = None
    ) -> Child:
        child = Child(name, args, {**self.env, **(extra_env or {})}, self.log_dir / f"{name}.log")
        self.procs[name] = child
        child.start()
        return child

    def start_redis(self, port: int) -> Child:
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        child = self.spawn("redis", redis_args(port, redis_dir))
        wait_redis(child, port)
        return child

    def start_memory(self) -> Child:
        return self.spawn("memory", [sys.executable, "-m", "memory_service"])

    def start_worker(
        self, name: str = "worker", extra_env: Mapping[str, str] | None = None
    ) -> Child:
        return self.spawn(
            name, [sys.executable, "-m", "worker", f"--hostname={name}@%h"], extra_env
        )

    def start_gateway(self) -> Child:
        return self.spawn("gateway", [sys.executable, "-m", "gateway"])

    def check_alive(self) -> None:
        """Raise `LaunchError` when the stack cannot come up: while it starts, when any child
        has exited (with its log); once supervised, only when the supervisor gave up (a dead
        child is then one being restarted)."""
        if self.failure is not None:
            raise LaunchError(self.failure)
        if self._supervisor is None:
            for child in self.procs.values():
                check_alive(child)

    def wait_http(self, base_url: str, paths: Sequence[str], timeout: float) -> None:
        """Poll until `base_url + path` answers 200; a 404 means the service predates that
        endpoint, and the next path is tried."""
        deadline = time.monotonic() + timeout
        remaining = list(paths)
        while True:
            self.check_alive()
            try:
                status = httpx.get(base_url + remaining[0], timeout=2.0).status_code
                if status == 200:
                    return
                if status == 404 and len(remaining) > 1:
                    remaining.pop(0)
                    continue
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise LaunchError(f"{base_url}{remaining[0]} not ready after {timeout:.0f}s")
            time.sleep(0.2)

    def wait_model(self, timeout: float) -> str:
        """Wait until one of this stack's workers has loaded its model (it heartbeats once
        it is ready: a model record left by an earlier run does not count); return the
        model's name."""
        store = self.job_store()
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.check_alive()
                with contextlib.suppress(redis.ConnectionError):
                    ours = {f":{w.pid}:" for w in self.workers if w.pid is not None}
                    live = store.leases.live_workers(within_s=60)
                    info = store.model_info()
                    if info is not None and any(p in w for w in live for p in ours):
                        self.model = info.name
                        return info.name
                if time.monotonic() > deadline:
                    raise LaunchError(f"no worker published its model after {timeout:.0f}s")
                time.sleep(0.3)
        finally:
            store.r.close()

    def settings(self) -> CommonSettings:
        """What the stack's children share: its Redis, key prefix, queues and gateway URL."""
        shared = {"redis_url": self.redis_url, "key_prefix": self.key_prefix}
        if "MEMQ_QUEUE" in self.env:
            shared["queue"] = self.env["MEMQ_QUEUE"]
        return CommonSettings.model_validate({**shared, "gateway_url": self.gateway_url})

    def job_store(self) -> JobStore:
        """A job store on the stack's Redis, as its gateway and workers hold one: a job it
        ends fires its webhook and writes its batch line (`memq.broker.terminal_hooks`).
        The caller closes it (`store.r.close()`)."""
        settings = self.settings()
        return job_store(settings, producer_app(settings))

    # supervision -------------------------------------------------------------------------
    def supervise(self, poll_s: float = 0.1) -> None:
        """Start restarting children that die (until `stop()` or giving up)."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, args=(poll_s,), name="memq-supervisor", daemon=True
            )
            self._supervisor.start()

    def _supervise(self, poll_s: float) -> None:
        while not self._stopping.wait(poll_s):
            for child in list(self.procs.values()):
                reason = child.supervise(self.policy, time.monotonic())
                if reason is not None:
                    log.error("%s", reason)
                    self.failure = reason
                    self._stop_children()
                    self._done.set()
                    return

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until the stack is stopped or the supervisor gave up (returns why), or until
        `timeout` passes (returns None)."""
        self._done.wait(timeout)
        return self.failure

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self) -> None:
        """Stop every child, front to back. Final: nothing is restarted afterwards."""
        self._stopping.set()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join()
        self._stop_children()
        self._done.set()

    def _stop_children(self) -> None:
        def rank(name: str) -> tuple[int, str]:
            i = next((i for i, p in enumerate(STOP_ORDER) if name.startswith(p)), len(STOP_ORDER))
            return i, name

        for name in sorted(self.procs, key=rank):
            self.procs[name].stop()


def start_stack(
    data_dir: Path,
    *,
    settings: LauncherSettings | None = None,
    env: Mapping[str, str] | None = None,
    redis_url: str | None = None,
    gateway_port: int | None = None,
    memory_port: int | None = None,
    redis_port: int | None = None,
    workers: int = 1,
    model_timeout: float = 900.0,
) -> Stack:
    """Start every component, wait until each is ready, then supervise them.

    Ports left out are free ones; `redis_url=None` starts an embedded Redis; `env` is added
    to every child's environment (it wins over the settings). On failure everything that
    started is stopped and `LaunchError` says which part failed, with its log.
    """
    settings = settings or LauncherSettings()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    gateway_port = gateway_port or free_port()
    memory_port = memory_port or free_port()
    embedded_redis_port = None
    if redis_url is None:
        embedded_redis_port = redis_port or free_port()
        redis_url = f"redis://127.0.0.1:{embedded_redis_port}/0"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    memory_url = f"http://127.0.0.1:{memory_port}"
    child_env = {**os.environ, **(env or {})}
    child_env.update(
        MEMQ_DATA_DIR=str(data_dir),
        MEMQ_REDIS_URL=redis_url,
        MEMQ_MEMORY_URL=memory_url,
        MEMQ_MEMORY_PORT=str(memory_port),
        MEMQ_GATEWAY_PORT=str(gateway_port),
        PYTHONUNBUFFERED="1",
    )
    if "MEMQ_GATEWAY_URL" not in child_env:
        explicit = "gateway_url" in settings.model_fields_set
        child_env["MEMQ_GATEWAY_URL"] = settings.gateway_url if explicit else gateway_url
    child_env.setdefault("MEMQ_KEY_PREFIX", settings.key_prefix)
    configured = settings.service_token.get_secret_value() if settings.service_token else None
    token, token_file = resolve_service_token(
        data_dir, (env or {}).get("MEMQ_SERVICE_TOKEN", configured)
    )
    child_env["MEMQ_SERVICE_TOKEN"] = token

    stack = Stack(
        data_dir,
        child_env,
        gateway_url=gateway_url,
        memory_url=memory_url,
        redis_url=redis_url,
        key_prefix=child_env["MEMQ_KEY_PREFIX"],
        policy=RestartPolicy.from_settings(settings),
    )
    stack.service_token_file = token_file
    try:
        if embedded_redis_port is not None:
            stack.start_redis(embedded_redis_port)
        stack.start_memory()
        for i in range(workers):
            stack.start_worker(f"worker{i + 1}" if workers > 1 else "worker")
        stack.start_gateway()
        stack.wait_http(memory_url, ("/readyz", "/healthz"), timeout=180)
        stack.wait_http(gateway_url, ("/livez", "/healthz"), timeout=60)
        stack.wait_model(timeout=model_timeout)
    except BaseException:
        stack.stop()
        raise
    stack.supervise()
    return stack


@contextlib.contextmanager
def running_stack(data_dir: Path, **kwargs: Any) -> Iterator[Stack]:
    stack = start_stack(data_dir, **kwargs)
    try:
        yield stack
    finally:
        stack.stop()
