"""One child process of the stack, supervised: started from a command line, logging to a
file, restarted by `RestartPolicy` when it crashes (the policy is drawn in
`memq.ops.launcher`'s docstring). `Child.start` is the one place memq spawns a long-lived
process, and `free_port` the one place it picks a port."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from memq.errors import MemqError
from memq.exits import describe_exit
from memq.settings import LauncherSettings

log = logging.getLogger("memq.launcher")


class LaunchError(MemqError):
    """A part of the stack did not start, or kept crashing until the supervisor gave up."""

    code = "launch_failed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a crashed child, and when to give up (memq.ops.launcher draws it)."""

    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    window_s: float = 60.0
    max_fast_crashes: int = 5

    @classmethod
    def from_settings(cls, settings: LauncherSettings) -> RestartPolicy:
        return cls(
            backoff_initial_s=settings.restart_backoff_initial_s,
            backoff_max_s=settings.restart_backoff_max_s,
            window_s=settings.restart_window_s,
            max_fast_crashes=settings.restart_max_fast_crashes,
        )

    def fast_crashes_after(self, previous: int, ran_s: float) -> int:
        """The count of fast crashes in a row once a child that ran `ran_s` crashed."""
        return previous + 1 if ran_s < self.window_s else 0

    def backoff(self, fast_crashes: int) -> float | None:
        """Seconds to wait before restarting, or None: give up."""
        if fast_crashes >= self.max_fast_crashes:
            return None
        return float(
            min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(fast_crashes - 1, 0))
        )


class Child:
    """One process of the stack, (re)started from the same command line, logging to a file.

    Runs in its own session, so a terminal's Ctrl-C reaches only the launcher (which stops
    the children in order) and a signal to the child reaches its own subprocesses too.
    """

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.starts = 0
        self.crashes = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._wanted = False
        self._started_at = 0.0
        self._fast_crashes = 0
        self._restart_at: float | None = None
        self._changed = threading.Condition(threading.RLock())

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        with self._changed:
            if self.alive():
                return
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as out:
                self._popen = subprocess.Popen(
                    self.args,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wanted = True
            self._restart_at = None
            self._started_at = time.monotonic()
            self.starts += 1
            self._changed.notify_all()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop it for good: SIGTERM, SIGKILL after `timeout`. Not restarted until `start()`."""
        with self._changed:
            self._wanted = False
            self._restart_at = None
            popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        _signal_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs: SIGKILL", self.name, timeout)
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait(10)

    def kill(self) -> None:
        """SIGKILL it, as a crash would: a supervised child is restarted."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        _signal_group(popen.pid, signal.SIGKILL)
        popen.wait(10)

    def wait_started(self, starts: int, timeout: float) -> None:
        """Block until the child has been started `starts` times in all (the first counts)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.starts >= starts, timeout):
                raise TimeoutError(
                    f"{self.name} started {self.starts} times, not {starts}, within {timeout:.0f}s"
                )

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def supervise(self, policy: RestartPolicy, now: float) -> str | None:
        """One supervision step: notice a crash, restart once its backoff has elapsed.

        Returns why supervision must give up, else None.
        """
        with self._changed:
            popen = self._popen
            if not self._wanted or popen is None or popen.poll() is None:
                return None
            if self._restart_at is not None:
                if now >= self._restart_at:
                    self.start()
                    log.warning(
                        "%s restarted (pid %s, start #%d)", self.name, self.pid, self.starts
                    )
                return None
            # Whatever the dead leader left behind in its group (e.g. a pip subprocess).
            _signal_group(popen.pid, signal.SIGKILL)
            ran_s = now - self._started_at
            self.crashes += 1
            self._fast_crashes = policy.fast_crashes_after(self._fast_crashes, ran_s)
            delay = policy.backoff(self._fast_crashes)
            how = describe_exit(popen.returncode)
            if delay is None:
                return (
                    f"{self.name} crashed {self._fast_crashes} time(s) in a row, each within "
                    f"{policy.window_s:g}s of its start (last: {how}); giving up. "
                    f"Last lines of {self.log_path}:\n{self.tail()}"
                )
            log.warning(
                "%s (pid %d) died after %.1fs: %s; restarting in %.1fs. Last lines of %s:\n%s",
                self.name,
                popen.pid,
                ran_s,
                how,
                delay,
                self.log_path,
                self.tail(),
            )
            self._restart_at = now + delay
            return None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def check_alive(child: Child) -> None:
    code = child.returncode
    if code is not None:
        raise LaunchError(
            f"{child.name} exited while starting ({describe_exit(code)}); "
            f"last lines of {child.log_path}:\n{child.tail()}"
        )
