"""The batched engine in a process of its own (`MEMQ_ENGINE_PROCESS=1`).

In the worker process the decode loop shares one GIL and the cores with Celery's task
threads (retrieval over HTTP, JSON, Redis commits, progress publishing). Here a child
process, started with multiprocessing's *spawn* (a fresh interpreter: no inherited locks,
threads or torch state), loads the model the settings name and runs a `BatchedEngine`;
`ProcessEngine.generate` sends it the request over a pipe and blocks the calling task
thread until the answer comes back.

What crosses the pipe (pickled tuples, in order per direction):

    parent → child   ("submit", id, input_ids, params as a dict, stream)
                     ("cancel", id)                      the caller's is_cancelled() said so
                     ("shutdown",)
    child → parent   ("ready", model name, context window)   once, the model loaded
                     ("failed", message)                    instead, when loading failed
                     ("token", id, n, partial text)   after each token, only when `stream`
                     ("done", id, token_ids, text, finish_reason, first_token_at)
                     ("error", id, kind, message)     kind: invalid | unavailable | failed

In the parent one reader thread dispatches what the child sends (it calls the callers'
`on_token` and wakes them); each waiting caller polls its own `is_cancelled()`.

A child that dies (SIGKILL, the OOM killer, a crashed scheduler) fails every pending
`generate` with `EngineUnavailable` (the task requeues the job, `MEMQ_ENGINE_RETRIES`) and
is started again at once, in the background; a `generate` that comes meanwhile waits for
the new one, and one that finds no child (its start failed) starts one itself. The child's
life follows its parent's: it ignores SIGINT and SIGTERM (a warm shutdown lets the running
jobs finish) and exits when the engine is closed, when the pipe reaches EOF (the parent
died) or when its parent pid changes.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

from memq.contracts import GenerationParams
from memq.errors import EngineUnavailable
from memq.exits import describe_exit
from memq.logs import configure_logging
from worker.config import WorkerSettings
from worker.engine.base import (
    Engine,
    GenerationOutput,
    GenerationRequest,
    TokenCallback,
    check_fits,
    request_cancelled,
)
from worker.engine.batched import EngineClosed
from worker.model_loader import load_worker_model

log = logging.getLogger("memq.worker.engine")

CANCEL_POLL_S = 0.05
"""How often a waiting caller asks its `is_cancelled()` (the engine itself asks per token)."""
STOP_TIMEOUT_S = 5.0
"""How long a stopping (or dead) child gets to exit before it is killed."""
PARENT_CHECK_S = 1.0
"""How often an idle child checks that its parent is still alive."""


# ------------------------------------------------------------------------------ parent side


@dataclass(eq=False)
class _Call:
    on_token: TokenCallback | None
    submitted_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    output: GenerationOutput | None = None
    error: BaseException | None = None
    callback_failed: bool = False

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class _Child:
    """One engine process and the parent's end of its pipe."""

    def __init__(
        self, process: BaseProcess, conn: Connection, on_death: Callable[[], None]
    ) -> None:
        self.process = process
        self.conn = conn
        self.pid = process.pid or 0
        self.context_window = 0
        self.stopping = False
        self._on_death = on_death
        self._calls: dict[int, _Call] = {}
        self._dead = False
        self._lock = threading.Lock()  # _calls and _dead
        self._send_lock = threading.Lock()
        self._reap_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="memq-engine-reader", daemon=True)

    @classmethod
    def start(cls, settings: WorkerSettings, on_death: Callable[[], None]) -> _Child:
        """Spawn a child and wait until it has loaded the model; EngineUnavailable if it
        could not. `on_death` is called (from the reader thread) if it dies unasked."""
        ctx = multiprocessing.get_context("spawn")
        conn, child_conn = ctx.Pipe()
        process = ctx.Process(target=serve, args=(child_conn, settings), name="memq-engine")
        process.start()
        child_conn.close()  # only the child holds its end now: its death reads as EOF here
        child = cls(process, conn, on_death)
        try:
            child._wait_ready()
        except EngineUnavailable:
            child._reap(STOP_TIMEOUT_S)  # it is exiting already
            conn.close()
            raise
        except BaseException:
            child._reap(timeout=0)
            conn.close()
            raise
        child._reader.start()
        return child

    def _wait_ready(self) -> None:
        try:
            message = self.conn.recv()
        except (EOFError, OSError) as exc:
            code = self._reap(STOP_TIMEOUT_S)
            raise EngineUnavailable(
                f"the engine process (pid {self.pid}) ended while loading the model "
                f"({describe_exit(code)}); see the worker's log"
            ) from exc
        if message[0] != "ready":
            raise EngineUnavailable(f"the engine process could not load the model: {message[1]}")
        _, name, self.context_window = message
        log.warning("engine process ready: pid=%d model=%s", self.pid, name)

    @property
    def dead(self) -> bool:
        return self._dead

    def pending(self) -> int:
        with self._lock:
            return len(self._calls)

    def submit(self, call_id: int, request: GenerationRequest, call: _Call) -> None:
        with self._lock:
            if self._dead:
                raise EngineUnavailable("the engine process stopped")
            self._calls[call_id] = call
        params = request.params.model_dump()
        stream = request.on_token is not None
        # A send to a dead child fails here, and the reader fails the call on the pipe's EOF.
        self._send(("submit", call_id, request.input_ids, params, stream))

    def cancel(self, call_id: int) -> None:
        self._send(("cancel", call_id))

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except OSError:
            pass

    def stop(self) -> None:
        """Ask the child to exit; kill it if it has not within STOP_TIMEOUT_S."""
        self.stopping = True
        self._send(("shutdown",))
        self._reap(STOP_TIMEOUT_S)
        if threading.current_thread() is not self._reader:
            self._reader.join()
        self.conn.close()

    def _reap(self, timeout: float) -> int:
        """Wait up to `timeout` for the child to exit, then kill it; its exit code."""
        with self._reap_lock:  # never two joins of one process at once
            self.process.join(timeout)
            if self.process.is_alive():
                if timeout:
                    log.warning(
                        "engine process %d did not exit within %.0fs; killing it",
                        self.pid,
                        timeout,
                    )
                self.process.kill()
                self.process.join()
            code = self.process.exitcode
            assert code is not None  # joined
            return code

    # ---- the reader thread

    def _read(self) -> None:
        try:
            while True:
                self._dispatch(self.conn.recv())
        except (EOFError, OSError):
            pass  # the child exited (or was killed)
        except BaseException:
            log.exception("engine process reader failed")
        finally:
            self._died()

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, call_id = message[0], message[1]
        if kind == "token":
            call = self._calls.get(call_id)
            if call is not None and call.on_token is not None:
                self._notify(call, message[2], message[3])
            return
        with self._lock:
            found = self._calls.pop(call_id, None)
        if found is None:
            return
        if kind == "done":
            _, _, token_ids, text, finish_reason, first_token_at = message
            end = time.monotonic()
            # time.monotonic is one system-wide clock (CLOCK_MONOTONIC), the child's included.
            first = min(max(first_token_at, found.submitted_at), end)
            found.output = GenerationOutput(
                token_ids=token_ids,
                text=text,
                finish_reason=finish_reason,
                time_to_first_token_s=first - found.submitted_at,
                generation_s=end - found.submitted_at,
                submitted_at=found.submitted_at,
            )
            found.done.set()
        elif kind == "error":
            found.fail(self._error(message[2], message[3]))

    def _error(self, kind: str, message: str) -> BaseException:
        if kind == "invalid":
            return ValueError(message)
        if kind == "unavailable":
            if self.stopping:
                return EngineClosed(message)
            return EngineUnavailable(message)
        return RuntimeError(message)

    @staticmethod
    def _notify(call: _Call, n: int, text: str) -> None:
        assert call.on_token is not None
        try:
            call.on_token(n, text)
        except Exception:
            if not call.callback_failed:  # log once per request, not once per token
                log.exception("on_token callback raised; generation continues")
            call.callback_failed = True

    def _died(self) -> None:
        with self._lock:
            self._dead = True
            stranded = list(self._calls.values())
            self._calls.clear()
        if self.stopping:
            for call in stranded:
                call.fail(EngineClosed("the engine process was closed"))
            return
        code = self._reap(STOP_TIMEOUT_S)
        reason = f"the engine process (pid {self.pid}) died ({describe_exit(code)})"
        log.error("%s with %d request(s) in flight; starting a new one", reason, len(stranded))
        for call in stranded:  # one exception per caller: each thread raises its own
            call.fail(EngineUnavailable(reason))
        self._on_death()


class ProcessEngine:
    """The batched engine in a child process; see the module docstring."""

    name = "batched-process"

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._ids = itertools.count()
        self._lock = threading.Lock()  # starting and stopping children
        self._closed = False
        self._child: _Child | None = _Child.start(settings, self._restart_soon)
        self.context_window = self._child.context_window
        # A worker that exits without closing its engine must not wait on its child forever
        # (multiprocessing joins live children at exit).
        atexit.register(self.close)

    def generate(self, request: GenerationRequest) -> GenerationOutput:
        check_fits(request, self.context_window)
        child = self._running_child()
        call_id = next(self._ids)
        call = _Call(request.on_token)
        child.submit(call_id, request, call)
        asks = request.is_cancelled is not None
        cancel_sent = False
        while not call.done.wait(CANCEL_POLL_S if asks and not cancel_sent else None):
            if not cancel_sent and request_cancelled(request):
                child.cancel(call_id)
                cancel_sent = True
        if call.error is not None:
            raise call.error
        assert call.output is not None
        return call.output

    def close(self) -> None:
        atexit.unregister(self.close)
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            child.stop()

    def stats(self) -> dict[str, Any]:
        """A snapshot for logs and tests: the child's pid and the calls waiting on it."""
        child = self._child
        if child is None:
            return {"pid": None, "pending": 0}
        return {"pid": child.pid, "pending": child.pending()}

    def _running_child(self) -> _Child:
        """The live child; a new one when the last died (waiting for its model to load)."""
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine was closed")
            if self._child is None or self._child.dead:
                self._child = None
                self._child = _Child.start(self.settings, self._restart_soon)
            return self._child

    def _restart_soon(self) -> None:
        """Start a new child in the background, so requeued jobs find it loaded."""

        def restart() -> None:
            try:
                self._running_child()
            except EngineClosed:
                pass
            except Exception as exc:
                log.error("engine process did not start again (%s); the next job tries", exc)

        threading.Thread(target=restart, name="memq-engine-restart", daemon=True).start()


# ------------------------------------------------------------------------------- child side


def serve(conn: Connection, settings: WorkerSettings) -> None:
    """The engine process: load the model, say `ready`, serve until told to stop or until
    the parent is gone."""
    # The parent decides when this process stops (a warm shutdown finishes running jobs).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(settings, "worker-engine")
    parent = os.getppid()
    try:
        from transformers.utils.logging import disable_progress_bar

        from worker.engine import build_engine

        # tqdm's lock is a multiprocessing semaphore that the fast exit below would leak
        # (and the worker's own load already printed the bar).
        disable_progress_bar()  # type: ignore[no-untyped-call]
        lm = load_worker_model(settings)
        engine = build_engine(settings, lm, in_process=True)
    except Exception as exc:
        log.exception("engine process: cannot load the model")
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        _exit(1)
    conn.send(("ready", lm.name, lm.context_window))
    _Server(conn, engine).serve(parent)
    _exit(0)


def _exit(code: int) -> NoReturn:
    """Exit without the interpreter's finalization: with torch loaded it takes seconds, and
    nothing here needs it (the logs are flushed first)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Server:
    """The child's end: one thread per request waits on the engine and answers."""

    def __init__(self, conn: Connection, engine: Engine) -> None:
        self.conn = conn
        self.engine = engine
        self._send_lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}
        self._stopping = False

    def serve(self, parent: int) -> None:
        try:
            while True:
                if not self.conn.poll(PARENT_CHECK_S):
                    if os.getppid() != parent:
                        log.warning("engine process: the worker (pid %d) is gone; exiting", parent)
                        return
                    continue
                message = self.conn.recv()
                if message[0] == "submit":
                    self._submit(*message[1:])
                elif message[0] == "cancel":
                    flag = self._cancels.get(message[1])
                    if flag is not None:
                        flag.set()
                elif message[0] == "shutdown":
                    return
        except (EOFError, OSError):
            log.warning("engine process: the worker closed the pipe; exiting")
        finally:
            self._stopping = True
            self.engine.close()

    def _submit(
        self, call_id: int, input_ids: list[int], params: dict[str, Any], stream: bool
    ) -> None:
        cancelled = threading.Event()
        self._cancels[call_id] = cancelled

        def on_token(n: int, text: str) -> None:
            self._send(("token", call_id, n, text))

        request = GenerationRequest(
            input_ids=input_ids,
            params=GenerationParams.model_validate(params),
            on_token=on_token if stream else None,
            is_cancelled=cancelled.is_set,
        )
        threading.Thread(
            target=self._run, args=(call_id, request), name="memq-engine-call", daemon=True
        ).start()

    def _run(self, call_id: int, request: GenerationRequest) -> None:
        try:
            out = self.engine.generate(request)
        except ValueError as exc:
            self._send(("error", call_id, "invalid", str(exc)))
        except EngineClosed as exc:
            if not self._stopping:
                self._exit_for_restart()
            self._send(("error", call_id, "unavailable", str(exc)))
        except Exception as exc:
            self._send(("error", call_id, "failed", f"{type(exc).__name__}: {exc}"))
        else:
            first_token_at = out.submitted_at + out.time_to_first_token_s
            message = ("done", call_id, out.token_ids, out.text, out.finish_reason, first_token_at)
            self._send(message)
        finally:
            self._cancels.pop(call_id, None)

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except OSError:
            pass  # the parent is gone; serve() sees the EOF and exits

    def _exit_for_restart(self) -> None:
        """The scheduler died (logged where it crashed): exit, so the parent fails every
        pending call as retryable and starts a fresh process."""
        log.critical("engine process: the batched engine stopped; exiting for a restart")
        with self._send_lock:  # never cut a message in half
            os._exit(1)
