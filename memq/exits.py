"""How a child process ended, in words, for log lines and error messages.

Shared by the launcher (`memq.ops`, which supervises the stack's processes) and the worker's
engine process (`worker/engine/process.py`); it lives here, apart from both, because the
worker must not import the ops package."""

from __future__ import annotations

import signal


def describe_exit(returncode: int) -> str:
    """`exit code 3`, or `killed by SIGKILL` for a negative (POSIX signal) return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
