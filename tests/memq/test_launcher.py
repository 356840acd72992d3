"""memq.ops (the launcher) and `memq up`: the restart policy, supervision of real (trivial)
processes, the per-data-dir service token, how `memq up` reads its settings, and `memq up`
itself (smoke run, restart then give up, SIGTERM, a part that cannot start)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq import cli
from memq.cli import up as up_command
from memq.ops.launcher import Stack, resolve_service_token
from memq.ops.process import Child, LaunchError, RestartPolicy, free_port
from memq.settings import SERVICE_TOKEN_FILE, LauncherSettings

FAST = RestartPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, window_s=60.0, max_fast_crashes=3)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


# -- the policy -----------------------------------------------------------------------------
def test_backoff_doubles_with_each_fast_crash_up_to_the_cap_then_gives_up() -> None:
    policy = RestartPolicy(backoff_initial_s=0.5, backoff_max_s=3.0, max_fast_crashes=5)
    assert [policy.backoff(n) for n in range(7)] == [0.5, 0.5, 1.0, 2.0, 3.0, None, None]


@pytest.mark.parametrize(
    ("previous", "ran_s", "expected"),
    [(0, 0.0, 1), (3, 59.9, 4), (3, 60.0, 0), (4, 3600.0, 0)],
)
def test_only_a_crash_within_the_window_of_its_start_counts_as_fast(
    previous: int, ran_s: float, expected: int
) -> None:
    assert RestartPolicy(window_s=60.0).fast_crashes_after(previous, ran_s) == expected


def test_a_long_run_resets_the_backoff_and_the_give_up_count() -> None:
    policy = RestartPolicy(backoff_initial_s=1.0, backoff_max_s=60.0, window_s=10.0)
    fast = 0
    delays = []
    for ran_s in (1.0, 1.0, 1.0, 11.0, 1.0):
        fast = policy.fast_crashes_after(fast, ran_s)
        delays.append(policy.backoff(fast))
    assert delays == [1.0, 2.0, 4.0, 1.0, 1.0]


def test_policy_comes_from_launcher_settings() -> None:
    settings = LauncherSettings(
        restart_backoff_initial_s=0.1,
        restart_backoff_max_s=2.0,
        restart_window_s=5.0,
        restart_max_fast_crashes=3,
    )
    assert RestartPolicy.from_settings(settings) == RestartPolicy(0.1, 2.0, 5.0, 3)


# -- supervision of real processes ------------------------------------------------------------
def _stack(tmp_path: Path, policy: RestartPolicy = FAST) -> Stack:
    return Stack(
        tmp_path,
        dict(os.environ),
        gateway_url="",
        memory_url="",
        redis_url="",
        key_prefix="memq",
        policy=policy,
    )


def _wait_for_line(child: Child, line: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in child.tail().splitlines():
        assert child.alive(), f"{child.name} died: {child.tail()}"
        assert time.monotonic() < deadline, f"{child.name} never printed {line!r}"
        time.sleep(0.02)


def test_a_killed_child_is_restarted_with_a_new_process(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    child = stack.spawn("worker", SLEEPER)
    stack.supervise(poll_s=0.01)
    try:
        first_pid = child.pid
        child.kill()
        child.wait_started(2, timeout=30)
        assert child.alive()
        assert child.pid != first_pid
        assert child.crashes == 1
    finally:
        stack.stop()
    assert not child.alive()
    assert stack.failure is None


def test_a_child_that_keeps_crashing_makes_the_supervisor_give_up_and_stop_everything(
    tmp_path: Path,
) -> None:
    stack = _stack(tmp_path)
    crasher = stack.spawn(
        "worker", [sys.executable, "-c", "print('cannot load the model'); raise SystemExit(3)"]
    )
    bystander = stack.spawn("memory", SLEEPER)
    stack.supervise(poll_s=0.01)
    try:
        reason = stack.wait(timeout=60)
    finally:
        stack.stop()
    assert reason is not None, "the supervisor never gave up"
    assert "worker crashed 3 time(s) in a row" in reason
    assert "exit code 3" in reason
    assert "cannot load the model" in reason  # the tail of its log
    assert crasher.starts == 3
    assert not bystander.alive()
    assert stack.done


def test_a_deliberately_stopped_child_is_left_down_until_started_again(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    child = stack.spawn("memory", SLEEPER)
    try:
        child.stop()
        assert child.supervise(FAST, now=time.monotonic() + 3600) is None
        assert (child.starts, child.crashes, child.alive()) == (1, 0, False)
        child.start()
        assert child.alive()
        assert child.starts == 2
    finally:
        stack.stop()


def test_nothing_is_restarted_after_the_stack_stopped(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    children = [stack.spawn(name, SLEEPER) for name in ("redis", "memory", "worker")]
    stack.supervise(poll_s=0.01)
    stack.stop()
    for child in children:
        assert child.supervise(FAST, now=time.monotonic() + 3600) is None
        assert not child.alive()
        assert child.starts == 1


def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_child_that_exits_while_the_stack_starts_fails_the_start_with_its_log(
    tmp_path: Path,
) -> None:
    stack = _stack(tmp_path)
    child = stack.spawn("worker", [sys.executable, "-c", "print('bad MEMQ_MODEL'); exit(1)"])
    _until(lambda: child.returncode is not None, "the child to exit")
    with pytest.raises(LaunchError, match=r"(?s)worker exited while starting.*bad MEMQ_MODEL"):
        stack.check_alive()


def test_once_supervised_a_dead_child_fails_the_stack_only_when_the_supervisor_gives_up(
    tmp_path: Path,
) -> None:
    patient = _stack(tmp_path / "patient", RestartPolicy(backoff_initial_s=3600.0))
    child = patient.spawn("worker", SLEEPER)
    patient.supervise(poll_s=0.01)
    try:
        child.kill()
        _until(lambda: child.crashes == 1, "the supervisor to notice the crash")
        patient.check_alive()  # down, waiting for its restart: not a failure
    finally:
        patient.stop()

    strict = _stack(tmp_path / "strict", RestartPolicy(max_fast_crashes=1))
    strict.spawn("worker", SLEEPER).kill()
    strict.supervise(poll_s=0.01)
    assert strict.wait(timeout=30) is not None
    with pytest.raises(LaunchError, match="worker crashed 1 time"):
        strict.check_alive()


def test_stop_goes_front_to_back_gateway_workers_memory_redis(tmp_path: Path) -> None:
    order = tmp_path / "order"
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    with open(sys.argv[1], 'a') as f: f.write(sys.argv[2] + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    stack = _stack(tmp_path)
    for name in ("redis", "worker2", "memory", "gateway", "worker1"):
        _wait_for_line(stack.spawn(name, [sys.executable, "-c", script, str(order), name]), "ready")
    stack.supervise(poll_s=0.01)
    stack.stop()
    assert order.read_text().split() == ["gateway", "worker1", "worker2", "memory", "redis"]


# -- the service token -------------------------------------------------------------------------
def test_a_service_token_is_generated_once_per_data_dir_readable_only_by_its_owner(
    tmp_path: Path,
) -> None:
    token, path = resolve_service_token(tmp_path, None)
    assert path == tmp_path / SERVICE_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert resolve_service_token(tmp_path, "  ") == (token, path)  # blank means unset
    assert resolve_service_token(tmp_path / "other", None)[0] != token


def test_a_configured_service_token_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    assert resolve_service_token(tmp_path, "from-the-env") == ("from-the-env", None)
    assert not (tmp_path / SERVICE_TOKEN_FILE).exists()


def test_a_token_file_others_could_read_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / SERVICE_TOKEN_FILE
    path.write_text("kept\n")
    path.chmod(0o644)
    assert resolve_service_token(tmp_path, None) == ("kept", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_empty_token_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / SERVICE_TOKEN_FILE).write_text("\n")
    with pytest.raises(LaunchError, match="delete it"):
        resolve_service_token(tmp_path, None)


# -- `memq up` reads LauncherSettings ----------------------------------------------------------
@pytest.fixture
def captured_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[object, ...]]:
    """`memq up` with the stack itself replaced: records what it would start with."""
    calls: list[tuple[object, ...]] = []

    def fake_up(settings: LauncherSettings, *, demo: bool, smoke: bool) -> int:
        calls.append((settings, demo, smoke))
        return 0

    monkeypatch.setattr(up_command, "_up", fake_up)
    monkeypatch.setattr(up_command, "configure_logging", lambda *_: None)
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MEMQ_"):
            monkeypatch.delenv(name)
    return calls


def test_memq_up_reads_env_and_dotenv_and_options_override_them(
    captured_up: list[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("MEMQ_WORKERS=3\nMEMQ_GATEWAY_PORT=9100\n")
    monkeypatch.setenv("MEMQ_MEMORY_PORT", "9200")
    monkeypatch.setenv("MEMQ_RESTART_MAX_FAST_CRASHES", "2")
    result = CliRunner().invoke(cli.app, ["up", "--gateway-port", "9300", "--smoke"])
    assert result.exit_code == 0, result.output
    [(settings, demo, smoke)] = captured_up
    assert isinstance(settings, LauncherSettings)
    assert (settings.workers, settings.gateway_port, settings.memory_port) == (3, 9300, 9200)
    assert settings.restart_max_fast_crashes == 2
    assert settings.redis_url_explicit is False  # so `memq up` starts its embedded Redis
    assert (demo, smoke) == (True, True)  # the smoke run is the demo, checked


def test_memq_up_refuses_a_bad_setting_before_starting_anything(
    captured_up: list[tuple[object, ...]],
) -> None:
    result = CliRunner().invoke(cli.app, ["up", "--workers", "0"])
    assert result.exit_code == 2
    assert "workers" in result.output
    assert captured_up == []


# -- `memq up` as a user runs it (real processes) ----------------------------------------------
class MemqUp:
    """`python -m memq.cli up ...` in the background, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "memq.cli", "up", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 300.0) -> re.Match[str]:
        """The first output line matching `pattern` (waiting for it up to `timeout`)."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next((m for line in self.lines if (m := regex.search(line))), None)

        with self._changed:
            if not self._changed.wait_for(
                lambda: found() or self.popen.poll() is not None, timeout
            ):
                raise TimeoutError(f"no line matching {pattern!r}; output:\n{self.output}")
            match = found()
        assert match is not None, f"memq up exited without {pattern!r}; output:\n{self.output}"
        return match

    def wait_exit(self, timeout: float = 300.0) -> int:
        code = self.popen.wait(timeout)
        self._reader.join(timeout)
        return code

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def memq_up(
    tmp_path: Path, tiny_model_dir: Path, embedding_cache_dir: Path
) -> Iterator[Callable[..., MemqUp]]:
    """Runs `memq up` on free ports in a fresh data dir with the tiny GPT-2."""
    started: list[MemqUp] = []
    ports = {name: str(free_port()) for name in ("GATEWAY", "MEMORY", "EMBEDDED_REDIS")}

    def run(*args: str, **env: str) -> MemqUp:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
        full_env.update(
            {f"MEMQ_{name}_PORT": port for name, port in ports.items()},
            MEMQ_DATA_DIR=str(tmp_path / "data"),
            MEMQ_MODEL=str(tiny_model_dir),
            MEMQ_MODEL_CACHE_DIR=str(embedding_cache_dir),
        )
        full_env.update(env)
        up = MemqUp(list(args), full_env)
        started.append(up)
        return up

    yield run
    for up in started:
        up.close()
    for port in ports.values():  # everything it started is gone: every port is free again
        with socket.socket() as s:
            # Reuse allows a closed connection's TIME_WAIT, never a listener still running.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(port)))
            s.listen()


@pytest.mark.e2e
def test_memq_up_smoke_runs_the_demo_job_with_a_used_memory_and_exits_zero(
    memq_up: Callable[..., MemqUp], tmp_path: Path
) -> None:
    up = memq_up("--smoke")
    assert up.wait_exit() == 0, up.output
    assert "smoke run passed" in up.output
    assert '"status": "succeeded"' in up.output
    assert '"used": true' in up.output
    assert '"namespace": "user:demo"' in up.output  # the banner asks where the demo stored
    token_file = tmp_path / "data" / SERVICE_TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


@pytest.mark.e2e
def test_memq_up_restarts_a_killed_worker_then_gives_up_and_exits_non_zero(
    memq_up: Callable[..., MemqUp],
) -> None:
    up = memq_up(MEMQ_RESTART_MAX_FAST_CRASHES="2", MEMQ_RESTART_BACKOFF_INITIAL_S="0.1")
    first = int(up.wait_for(r"workers\s+worker \(pid (\d+)\)").group(1))
    up.wait_for("Ctrl-C stops everything")

    os.kill(first, signal.SIGKILL)
    second = int(up.wait_for(r"worker restarted \(pid (\d+)").group(1))
    assert second != first
    os.kill(second, signal.SIGKILL)

    assert up.wait_exit() == 1, up.output
    assert "memq gave up" in up.output
    assert "worker crashed 2 time(s) in a row" in up.output
    assert "killed by SIGKILL" in up.output


@pytest.mark.e2e
def test_memq_up_stops_every_part_on_sigterm_and_exits_zero(
    memq_up: Callable[..., MemqUp],
) -> None:
    up = memq_up()
    worker = int(up.wait_for(r"workers\s+worker \(pid (\d+)\)").group(1))
    up.wait_for("Ctrl-C stops everything")

    up.popen.send_signal(signal.SIGTERM)

    assert up.wait_exit() == 0, up.output
    assert "stopping memq" in up.output
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


@pytest.mark.e2e
def test_memq_up_that_cannot_start_a_part_exits_non_zero_with_its_log(
    memq_up: Callable[..., MemqUp], tmp_path: Path
) -> None:
    up = memq_up(MEMQ_MODEL=str(tmp_path / "no-such-model"))
    assert up.wait_exit() == 1, up.output
    assert "memq could not start: worker exited while starting" in up.output
    assert "no-such-model" in up.output  # from the tail of the worker's log
